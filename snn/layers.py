"""Spiking layers: thin modules over snn.functional, taking and returning time-major [T, B, N].

Time is in milliseconds: a layer is built with the bin width ``dt`` of its input and time constants
``tau``, and decays by ``exp(-dt / tau)`` per bin (snn.functional's per-step ``beta``, ``rho``).
"""
import math

import torch
from torch import nn

from . import functional as F

#: Default time constants in ms: membrane, adaptation and readout integrator (20, 200 and 20 bins of 10 ms).
TAU_MEM, TAU_ADAPT, TAU_OUT = 200.0, 2000.0, 200.0


def decay(dt, tau):
    """Decay per time bin, ``exp(-dt / tau)``, of a time constant ``tau`` at bins of ``dt`` (same unit, ms).

    Parameters
    ----------
    dt : float
        Bin width, > 0.
    tau : float or torch.Tensor
        Time constant(s), > 0 (``inf``: no decay).

    Returns
    -------
    float or torch.Tensor
        A float for a scalar ``tau``, else a float64 tensor of its shape.

    Examples
    --------
    >>> decay(10.0, 200.0) == math.exp(-1 / 20)
    True
    """
    if not dt > 0:
        raise ValueError(f"dt must be > 0 (ms), got {dt!r}")
    t = torch.as_tensor(tau, dtype=torch.float64)
    if not bool((t > 0).all()):
        raise ValueError(f"time constants must be > 0 (ms), got {tau!r}")
    # a scalar through math.exp: the same rounding as the per-bin decays models were trained with
    return math.exp(-dt / float(t)) if t.dim() == 0 else torch.exp(-dt / t)


class _Neurons(nn.Module):
    """Per-neuron parameters and the forward shared by LIF, ALIF, RLIF and RALIF."""

    adaptive = False
    recurrent = False

    def __init__(self, n, *, dt, tau_mem=TAU_MEM, tau_adapt=TAU_ADAPT, alpha=1.8, threshold=1.0,
                 learn_beta=False, learn_threshold=False, reset="subtract", surrogate="atan", slope=None):
        super().__init__()
        if reset not in F.RESETS:
            raise ValueError(f"reset must be one of {F.RESETS}, got {reset!r}")
        F._surrogate(surrogate, slope)
        self.n, self.dt, self.reset, self.surrogate, self.slope = n, dt, reset, surrogate, slope
        self._add("beta", decay(dt, tau_mem), learn_beta)
        self._add("threshold", threshold, learn_threshold)
        if self.adaptive:
            self._add("rho", decay(dt, tau_adapt), learn_beta)
            self._add("alpha", alpha, learn_threshold)
        if self.recurrent:
            bound = 1.0 / math.sqrt(n)  # nn.Linear's default scale for a fan-in of n
            self.weight = nn.Parameter(torch.empty(n, n).uniform_(-bound, bound))

    def _add(self, name, value, learn):
        value = torch.as_tensor(value, dtype=torch.get_default_dtype()).expand(self.n).clone()
        if learn:
            setattr(self, name, nn.Parameter(value))
        else:
            self.register_buffer(name, value)

    def extra_repr(self):
        return f"{self.n}, dt={self.dt}, reset={self.reset!r}, surrogate={self.surrogate!r}, slope={self.slope}"

    def forward(self, x, state=None, repeat=1, return_membrane=False):
        """Spikes [T, B, N] for input current x [T, B, N] (and the membrane before reset, if asked),
        and the state after the last step (:class:`snn.functional.NeuronState`).

        ``state`` is the state before the first step (zeros when None), e.g. the one the previous
        call returned. ``repeat`` > 1 shares each neuron's parameters among ``repeat`` consecutive
        inputs (N = n * repeat), as for the positions of a convolution map.
        """
        def p(t, is_decay=False):
            t = t.clamp(0.0, 1.0) if is_decay and t.requires_grad else t  # learnt decays stay in [0, 1]
            return t.repeat_interleave(repeat) if repeat > 1 else t

        adaptive = self.adaptive
        return F._sequence(x, self.weight if self.recurrent else None, p(self.beta, True),
                           p(self.threshold), p(self.rho, True) if adaptive else None,
                           p(self.alpha) if adaptive else None, adaptive, self.reset,
                           self.surrogate, self.slope, return_membrane, state)


class LIF(_Neurons):
    """Leaky integrate-and-fire neurons (:func:`snn.functional.lif_sequence`).

    Parameters
    ----------
    n : int
        Number of neurons.
    dt : float
        Time bin of the input in ms.
    tau_mem : float or torch.Tensor
        Membrane time constant in ms, scalar or [n]: the membrane decays by ``beta = exp(-dt / tau_mem)``
        per bin.
    learn_beta : bool
        Learn the decay per bin ``beta`` per neuron (kept in [0, 1]).
    threshold : float or torch.Tensor
        Firing threshold, scalar or [n].
    learn_threshold : bool
        Learn the threshold per neuron.
    reset : {"subtract", "zero"}
        At a spike, subtract the threshold from the membrane or set it to 0.
    surrogate : {"fast_sigmoid", "atan", "triangle"}
        Surrogate gradient of the spike (:data:`snn.functional.SURROGATES`).
    slope : float, optional
        Surrogate sharpness; the surrogate's default when None.

    Examples
    --------
    >>> lif = LIF(3, dt=1.0, tau_mem=10.0)
    >>> spikes, state = lif(torch.ones(5, 2, 3))
    >>> more, state = lif(torch.ones(4, 2, 3), state)  # continues where the first call stopped
    >>> spikes.shape, state.v.shape
    (torch.Size([5, 2, 3]), torch.Size([2, 3]))
    """

    def __init__(self, n, *, dt, tau_mem=TAU_MEM, learn_beta=False, threshold=1.0, learn_threshold=False,
                 reset="subtract", surrogate="atan", slope=None):
        super().__init__(n, dt=dt, tau_mem=tau_mem, threshold=threshold, learn_beta=learn_beta,
                         learn_threshold=learn_threshold, reset=reset, surrogate=surrogate,
                         slope=slope)


class ALIF(_Neurons):
    """Adaptive LIF neurons (:func:`snn.functional.alif_sequence`): the threshold rises after each
    spike and decays back.

    Parameters
    ----------
    n : int
        Number of neurons.
    dt, tau_mem
        As in :class:`LIF`.
    tau_adapt : float or torch.Tensor
        Adaptation time constant in ms, scalar or [n] (decay per bin ``rho = exp(-dt / tau_adapt)``).
    alpha : float or torch.Tensor
        Threshold increase per unit of adaptation, scalar or [n].
    learn_beta : bool
        Learn both decays per bin (beta and rho) per neuron (kept in [0, 1]).
    threshold : float or torch.Tensor
        Baseline threshold, scalar or [n].
    learn_threshold : bool
        Learn the baseline threshold and alpha per neuron.
    reset, surrogate, slope
        As in :class:`LIF`.
    """

    adaptive = True

    def __init__(self, n, *, dt, tau_mem=TAU_MEM, tau_adapt=TAU_ADAPT, alpha=1.8, learn_beta=False,
                 threshold=1.0, learn_threshold=False, reset="subtract", surrogate="atan", slope=None):
        super().__init__(n, dt=dt, tau_mem=tau_mem, tau_adapt=tau_adapt, alpha=alpha, threshold=threshold,
                         learn_beta=learn_beta, learn_threshold=learn_threshold, reset=reset,
                         surrogate=surrogate, slope=slope)


class RLIF(LIF):
    """Recurrent LIF neurons (:func:`snn.functional.rlif_sequence`): the input current plus the
    weighted spikes of the previous step. Parameters as in :class:`LIF`.

    Attributes
    ----------
    weight : torch.nn.Parameter
        Recurrent weights [n, n] (uniform in +-1/sqrt(n), as nn.Linear).
    """

    recurrent = True


class RALIF(ALIF):
    """Recurrent adaptive LIF neurons (:func:`snn.functional.ralif_sequence`). Parameters as in
    :class:`ALIF`, recurrent ``weight`` as in :class:`RLIF`."""

    recurrent = True


class LI(nn.Module):
    """Non-spiking leaky integrator ``u_t = beta * u_{t-1} + x_t``, e.g. as a readout.

    Parameters
    ----------
    n : int
        Number of units.
    dt : float
        Time bin of the input in ms.
    tau_mem : float or torch.Tensor
        Time constant in ms, scalar or [n]: ``beta = exp(-dt / tau_mem)``.
    learn_beta : bool
        Learn the decay per bin per unit (kept in [0, 1]).

    Notes
    -----
    ``forward(x, state=None)``: current x [T, B, n] and the membrane before the first step [B, n]
    (zeros when None) -> membrane [T, B, n] and its last step [B, n] (the next call's state).
    """

    def __init__(self, n, *, dt, tau_mem=TAU_OUT, learn_beta=False):
        super().__init__()
        self.n, self.dt = n, dt
        value = torch.as_tensor(decay(dt, tau_mem), dtype=torch.get_default_dtype()).expand(n).clone()
        if learn_beta:
            self.beta = nn.Parameter(value)
        else:
            self.register_buffer("beta", value)

    def forward(self, x, state=None):
        beta = self.beta.clamp(0.0, 1.0) if self.beta.requires_grad else self.beta
        return F.li_sequence(x, beta, state)


class DelayedLinear(nn.Module):
    """Fully connected synapses, each with a weight and a learnt transmission delay (DCLS-Delays).

    Synapse ``(j, i)`` carries presynaptic channel ``i`` to postsynaptic neuron ``j`` with weight ``w_ji``
    and a real delay ``d_ji`` in [0, ``max_delay_ms``]. The layer is a causal convolution over time whose
    kernel has one smoothed tap per synapse (Hammouamri, Khalfaoui-Hassani & Masquelier, "Learning delays in
    spiking neural networks using dilated convolutions with learnable spacings", ICLR 2024):

    ``y[t, j] = b_j + sum_i w_ji sum_k g_ji(k) x[t - k, i]``, taps ``k = 0 .. taps - 1``,

    where ``g_ji`` is a Gaussian of width ``sigma`` (in bins) centred on the delay in bins and normalised over
    the taps (a softmax of ``-(k - d)^2 / (2 sigma^2)``), so the delay is learnt by gradient descent while
    ``sigma`` > 0. ``sigma = 0`` is its limit: every delay rounded to the nearest bin, an exact shift.
    Training anneals ``sigma`` from about half the maximum delay down to a fraction of a bin
    (:meth:`snn.models.DelaySNN.schedule`).

    The convolution is one batched operation over the whole sequence (``conv1d``), never a loop over time.

    Parameters
    ----------
    n_in, n_out : int
        Presynaptic channels and postsynaptic neurons.
    dt : float
        Time bin of the input in ms.
    max_delay_ms : float
        Longest delay in ms, >= 0; ``taps = floor(max_delay_ms / dt) + 1`` kernel bins (delays of 0 up to
        ``(taps - 1) * dt`` ms).
    sigma_ms : float, optional
        Initial width of the Gaussian in ms (default half the longest delay), >= 0.
    bias : bool
        Add a learnt bias per neuron.

    Attributes
    ----------
    weight : torch.nn.Parameter
        [n_out, n_in], uniform in +-1/sqrt(n_in) as ``nn.Linear``.
    position : torch.nn.Parameter
        [n_out, n_in]: the delay in bins is ``clamp((taps - 1) / 2 + RATE * position, 0, taps - 1)``. Centred,
        so weight decay pulls delays to the middle of their range rather than to 0; scaled by :attr:`RATE` so
        that one optimiser moves delays :attr:`RATE` times faster (in bins) than weights, as DCLS-Delays
        trains its positions with a learning rate 100 times the weights'. Initial delays are uniform over
        the range.
    sigma : torch.Tensor
        Buffer (saved with the weights): the Gaussian's width in bins; :meth:`set_sigma` changes it.

    Notes
    -----
    ``forward(x, state=None)``: input [T, B, n_in] -> current [T, B, n_out], and the state: the last
    ``taps - 1`` input frames [taps - 1, B, n_in] (zeros before the first call), with which the next call
    continues exactly (chunked == whole).

    Examples
    --------
    >>> layer = DelayedLinear(2, 1, dt=10.0, max_delay_ms=50.0, bias=False)
    >>> layer.taps
    6
    >>> _ = torch.nn.init.ones_(layer.weight)
    >>> layer.set_delays_ms(torch.tensor([[20.0, 40.0]]))
    >>> layer.set_sigma(0.0)  # exact shifts
    >>> x = torch.zeros(8, 1, 2)
    >>> x[0, 0, 0] = x[1, 0, 1] = 1.0  # channel 0 at 0 ms, channel 1 at 10 ms
    >>> y, state = layer(x)
    >>> y[:, 0, 0].tolist()  # arrive at 0 + 20 and 10 + 40 ms
    [0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    >>> state.shape  # the last taps - 1 input frames
    torch.Size([5, 1, 2])
    """

    #: Bins of delay per unit of :attr:`position` (DCLS-Delays' positions learn at 100 x the weights' rate).
    RATE = 100.0

    def __init__(self, n_in, n_out, *, dt, max_delay_ms=250.0, sigma_ms=None, bias=True):
        super().__init__()
        if not dt > 0:
            raise ValueError(f"dt must be > 0 (ms), got {dt!r}")
        if not (isinstance(max_delay_ms, (int, float)) and math.isfinite(max_delay_ms) and max_delay_ms >= 0):
            raise ValueError(f"max_delay_ms must be a finite number >= 0, got {max_delay_ms!r}")
        self.n_in, self.n_out, self.dt, self.max_delay_ms = n_in, n_out, dt, max_delay_ms
        self.taps = int(math.floor(max_delay_ms / dt + 1e-9)) + 1
        bound = 1.0 / math.sqrt(n_in)  # nn.Linear's default scale
        self.weight = nn.Parameter(torch.empty(n_out, n_in).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_out).uniform_(-bound, bound)) if bias else None
        half = (self.taps - 1) / 2
        self.position = nn.Parameter(torch.empty(n_out, n_in).uniform_(-half / self.RATE, half / self.RATE))
        self.register_buffer("sigma", torch.zeros(()))
        self.set_sigma(max_delay_ms / 2 if sigma_ms is None else sigma_ms)

    def extra_repr(self):
        return (f"{self.n_in}, {self.n_out}, dt={self.dt}, max_delay_ms={self.max_delay_ms}, taps={self.taps}, "
                f"sigma={float(self.sigma):.3g} bins, bias={self.bias is not None}")

    # -- delays and sigma --------------------------------------------------------------------------
    def delay_bins(self):
        """The delays in bins [n_out, n_in] (real, differentiable, clamped to [0, taps - 1])."""
        return ((self.taps - 1) / 2 + self.RATE * self.position).clamp(0.0, self.taps - 1)

    @property
    def delays_ms(self):
        """The delays in ms [n_out, n_in] (detached)."""
        return self.delay_bins().detach() * self.dt

    @torch.no_grad()
    def set_delays_ms(self, delays):
        """Set the delays (ms, [n_out, n_in] or a scalar), clipped to [0, (taps - 1) dt]."""
        d = torch.as_tensor(delays, dtype=self.position.dtype, device=self.position.device) / self.dt
        self.position.copy_(((d.clamp(0.0, self.taps - 1) - (self.taps - 1) / 2) / self.RATE).expand_as(self.position))

    @torch.no_grad()
    def set_sigma(self, sigma_ms):
        """Set the Gaussian's width, given in ms (>= 0; 0: every delay rounded to the nearest bin)."""
        s = float(sigma_ms)
        if not (math.isfinite(s) and s >= 0):
            raise ValueError(f"sigma must be a finite number >= 0 (ms), got {sigma_ms!r}")
        self.sigma.fill_(s / self.dt)

    @torch.no_grad()
    def clamp_(self):
        """Bring every position back into the delay range (the clamp in :meth:`delay_bins` has no gradient
        outside it, where a delay could stay stuck)."""
        lim = (self.taps - 1) / 2 / self.RATE
        self.position.clamp_(-lim, lim)

    @torch.no_grad()
    def round_delays(self):
        """Round every delay to a whole bin and set ``sigma`` to 0: exact integer delays, e.g. for inference
        once trained."""
        self.set_delays_ms(self.delay_bins().round() * self.dt)
        self.sigma.zero_()

    def kernel(self):
        """The interpolation weights ``g`` [n_out, n_in, taps] (each row sums to 1; tap k = delay of k bins)."""
        d = self.delay_bins()
        k = torch.arange(self.taps, dtype=d.dtype, device=d.device)
        sigma = float(self.sigma)
        if sigma > 0:
            return torch.softmax(-0.5 * ((k - d[..., None]) / sigma) ** 2, -1)
        return (k == d.detach().round()[..., None]).to(d.dtype)

    # -- forward -----------------------------------------------------------------------------------
    def forward(self, x, state=None):
        if x.dim() != 3 or x.shape[-1] != self.n_in:
            raise ValueError(f"x must have shape [T, B, {self.n_in}], got {tuple(x.shape)}")
        T, B, _ = x.shape
        back = self.taps - 1
        if state is None:
            state = x.new_zeros(back, B, self.n_in)
        elif tuple(state.shape) != (back, B, self.n_in):
            raise ValueError(f"state must have shape [{back}, {B}, {self.n_in}], got {tuple(state.shape)}")
        frames = torch.cat([state.to(x.dtype), x]) if back else x
        w = (self.weight[..., None] * self.kernel()).to(x.dtype).flip(-1)  # conv1d correlates: tap k at t - k
        y = torch.nn.functional.conv1d(frames.permute(1, 2, 0), w, None if self.bias is None else self.bias.to(x.dtype))
        return y.permute(2, 0, 1), frames[frames.shape[0] - back:]


def conv_fan_out(conv, length):
    """Synapses of ``conv`` (an ``nn.Conv1d``) driven by one input spike of each map at each of ``length``
    positions: tensor [in_maps * length] (map-major).

    Only synapses present count: the taps whose weight is nonzero (a pruned channel drives none), and windows
    that reach the position (edges drive fewer).
    """
    (k,), (s,), (p,) = conv.kernel_size, conv.stride, conv.padding
    present = conv.weight.detach().ne(0).sum(0).to(torch.get_default_dtype())  # [in_maps, k]: output maps per tap
    fan = present.new_zeros(present.shape[0], length)
    for q in range((length + 2 * p - k) // s + 1):
        for tap in range(k):
            pos = q * s - p + tap
            if 0 <= pos < length:
                fan[:, pos] += present[:, tap]
    return fan.reshape(-1)


class SpikingConv1d(nn.Module):
    """Conv1d along the channel axis at every time step, followed by (A)LIF neurons.

    Parameters
    ----------
    in_maps, out_maps : int
        Feature maps in and out.
    kernel_size, stride : int
        Of the convolution along the channel axis.
    padding : int, optional
        Zero padding on both sides; ``kernel_size // 2`` when None.
    adaptive : bool
        ALIF instead of LIF neurons.
    **neuron
        dt (required), tau_mem, threshold, reset, surrogate, slope, learn_beta, learn_threshold (and
        tau_adapt, alpha when adaptive): parameters are shared by the positions of a map (one value per out map).

    Notes
    -----
    ``forward(x, state=None)``: input [T, B, in_maps, L] -> spikes [T, B, out_maps, L_out] with
    ``L_out = (L + 2 padding - kernel_size) // stride + 1``, and the neurons' state (see
    :class:`LIF`).
    """

    def __init__(self, in_maps, out_maps, kernel_size, stride=1, padding=None, adaptive=False,
                 **neuron):
        super().__init__()
        padding = kernel_size // 2 if padding is None else padding
        self.conv = nn.Conv1d(in_maps, out_maps, kernel_size, stride=stride, padding=padding)
        self.neurons = (ALIF if adaptive else LIF)(out_maps, **neuron)

    def output_length(self, length):
        """L_out for an input of ``length`` channel positions."""
        (k,), (s,), (p,) = self.conv.kernel_size, self.conv.stride, self.conv.padding
        return (length + 2 * p - k) // s + 1

    def fan_out(self, length):
        """Synapses driven by one input spike of each map at each position: see :func:`conv_fan_out`."""
        return conv_fan_out(self.conv, length)

    def forward(self, x, state=None):
        T, B, C, L = x.shape
        y = self.conv(x.reshape(T * B, C, L))
        out_len = y.shape[-1]
        s, state = self.neurons(y.reshape(T, B, -1), state, repeat=out_len)
        return s.reshape(T, B, -1, out_len), state


class CBAM1d(nn.Module):
    """Convolutional block attention over feature maps [B, C, L] (C channels, L frequency bins).

    Channel attention ``M_c = sigmoid(MLP(avg_L f) + MLP(max_L f))`` (shared MLP C -> C/r -> C), then
    frequency ("spatial") attention ``M_s = sigmoid(conv_k([mean_C f'; max_C f']))`` on
    ``f' = M_c * f``; the output is ``M_s * f'`` (Woo et al. 2018, along one axis).

    Parameters
    ----------
    channels : int
    mode : {"cbam", "channel", "spatial"}
        Both gates, or one of them (for ablation).
    reduction : int
        MLP bottleneck ratio r.
    kernel_size : int
        Of the frequency-attention convolution (odd).
    """

    def __init__(self, channels, mode="cbam", reduction=4, kernel_size=7):
        super().__init__()
        if mode not in ("cbam", "channel", "spatial"):
            raise ValueError(f"mode must be 'cbam', 'channel' or 'spatial', got {mode!r}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.mode = mode
        self.mlp = None
        if mode in ("cbam", "channel"):
            mid = max(1, channels // reduction)
            self.mlp = nn.Sequential(nn.Linear(channels, mid), nn.ReLU(), nn.Linear(mid, channels))
        self.conv = nn.Conv1d(2, 1, kernel_size, padding=kernel_size // 2) if mode in ("cbam", "spatial") else None

    def gates(self, f):
        """The two attention maps for ``f`` [B, C, L]: per channel [B, C, 1] and per bin [B, 1, L], each in [0, 1]
        (all ones for a gate the mode leaves out); the frequency map is computed after the channel gate."""
        mc = ms = None
        if self.mlp is not None:
            mc = torch.sigmoid(self.mlp(f.mean(2)) + self.mlp(f.amax(2)))[:, :, None]
            f = f * mc
        if self.conv is not None:
            ms = torch.sigmoid(self.conv(torch.stack([f.mean(1), f.amax(1)], 1)))
        ones = f.new_ones(())
        return (mc if mc is not None else ones.expand(f.shape[0], f.shape[1], 1),
                ms if ms is not None else ones.expand(f.shape[0], 1, f.shape[2]))

    def forward(self, f):
        mc, ms = self.gates(f)
        return f * mc * ms


class SpikingConvLSTM1d(nn.Module):
    """Spiking ConvLSTM along the frequency axis, optionally with attention on its forget gate (SCBAM).

    At every time step ``[i, f, o, g] = conv_x(x_t) + conv_h(h_{t-1})``; ``i, f, o`` pass a sigmoid and ``g`` a
    tanh, the attention reshapes the forget gate (what history is kept), ``c_t = A(f) * c_{t-1} + i * g``, and the
    output spikes are ``h_t = H(o * tanh(c_t) - threshold)`` with a surrogate gradient (Xu et al. 2023, SRNN-SCBAM).

    Parameters
    ----------
    in_maps, maps : int
        Feature maps of the input and of the state.
    kernel_size, stride : int
        Of the input convolution along frequency; the recurrent one keeps the length (kernel 3).
    attention : {"none", "channel", "spatial", "cbam", "temporal"}
        ``cbam``/``channel``/``spatial``: :class:`CBAM1d` on the forget gate. ``temporal``: the TA-SNN style
        comparator, a causal gate per time step (from the input frame's mean and max over the last
        ``temporal_window`` steps) scaling the input drive.
    reduction, attention_kernel : int
        Of :class:`CBAM1d`.
    threshold : float
    surrogate, slope
        See :func:`snn.functional.spike`.

    Notes
    -----
    Input spikes [T, B, in_maps, L]; output spikes [T, B, maps, L_out] with L_out as a strided ``nn.Conv1d``.
    The state between calls is ``(h, c)``, each [B, maps, L_out], and with temporal attention also the
    input statistics (mean, max) of the last ``temporal_window - 1`` steps [B, 2, window - 1].
    """

    ATTENTION = ("none", "channel", "spatial", "cbam", "temporal")
    #: Multiplies per state element and step of the cell update on non-spiking values: ``f * c``, ``i * g`` and
    #: ``o * tanh(c)`` (the gates' sigmoids and tanh are not counted).
    STATE_UPDATES = 3

    def __init__(self, in_maps, maps, kernel_size=5, stride=2, attention="cbam", reduction=4, attention_kernel=7,
                 temporal_window=5, threshold=0.1, surrogate="atan", slope=None):
        super().__init__()
        if attention not in self.ATTENTION:
            raise ValueError(f"attention must be one of {self.ATTENTION}, got {attention!r}")
        F._surrogate(surrogate, slope)
        self.maps, self.attention = maps, attention
        self.threshold, self.surrogate, self.slope = threshold, surrogate, slope
        self.conv_x = nn.Conv1d(in_maps, 4 * maps, kernel_size, stride=stride, padding=kernel_size // 2)
        self.conv_h = nn.Conv1d(maps, 4 * maps, 3, padding=1, bias=False)
        with torch.no_grad():  # forget-gate bias 1: remember by default at the start of training
            self.conv_x.bias[maps:2 * maps] += 1.0
        self.cbam = CBAM1d(maps, attention, reduction, attention_kernel) if attention in ("cbam", "channel", "spatial") else None
        self.temporal = nn.Conv1d(2, 1, temporal_window) if attention == "temporal" else None

    def output_length(self, length):
        (k,), (s,), (p,) = self.conv_x.kernel_size, self.conv_x.stride, self.conv_x.padding
        return (length + 2 * p - k) // s + 1

    def attention_macs(self, length):
        """Multiply-accumulates per time step of the attention, on non-spiking values, for a state of ``length``
        frequency bins (the gate drives ``conv_x`` and ``conv_h`` are spike-driven: SynOps).

        CBAM: the channel MLP on the forget gate's mean and its max (weights present, twice), ``f * M_c``, the
        frequency convolution (its connections present) and ``* M_s``; temporal: its gate's convolution over the
        input statistics and the product with the ``4 * maps`` gate drives. The means, maxima and sigmoids are
        not counted.

        Examples
        --------
        >>> cell = SpikingConvLSTM1d(6, 8, attention="channel", reduction=4)
        >>> cell.attention_macs(10) == 2 * (8 * 2 + 2 * 8) + 8 * 10
        True
        """
        macs, cells = 0, self.maps * length
        if self.cbam is not None:
            if self.cbam.mlp is not None:
                macs += 2 * sum(int(m.weight.count_nonzero()) for m in self.cbam.mlp if isinstance(m, nn.Linear)) + cells
            if self.cbam.conv is not None:
                macs += int(conv_fan_out(self.cbam.conv, length).sum()) + cells
        if self.temporal is not None:
            macs += int(self.temporal.weight.count_nonzero()) + 4 * cells
        return macs

    def forward(self, x, state=None, return_attention=False):
        """Spikes [T, B, maps, L_out] for input [T, B, in_maps, L] and the state after the last step, starting
        from ``state`` (zeros when None); with ``return_attention``, ``(spikes, maps, state)`` where ``maps`` are
        the forget-gate attention maps, per channel [T, B, maps, 1] and per bin [T, B, 1, L_out] (None without
        CBAM)."""
        T, B, C, L = x.shape
        drive = self.conv_x(x.reshape(T * B, C, L))
        drive = drive.reshape(T, B, *drive.shape[1:])
        if state is None:
            h = drive.new_zeros(B, self.maps, drive.shape[-1])
            state = (h, torch.zeros_like(h))
        h, c = state[:2]
        if self.temporal is not None:  # causal: step t sees steps t - window + 1 .. t
            stats = torch.stack([x.mean((2, 3)), x.amax((2, 3))], -1).permute(1, 2, 0)  # [B, 2, T]
            back = self.temporal.kernel_size[0] - 1
            stats = torch.cat([state[2] if len(state) > 2 else stats.new_zeros(B, 2, back), stats], 2)
            drive = drive * torch.sigmoid(self.temporal(stats)).permute(2, 0, 1)[:, :, :, None]
            history = (stats[:, :, stats.shape[2] - back:],)
        else:
            history = ()
        out, maps_c, maps_s = [], [], []
        for t in range(T):
            i, f, o, g = (drive[t] + self.conv_h(h)).chunk(4, 1)
            f = torch.sigmoid(f)
            if self.cbam is not None:
                mc, ms = self.cbam.gates(f)
                f = f * mc * ms
                if return_attention:
                    maps_c.append(mc)
                    maps_s.append(ms)
            c = f * c + torch.sigmoid(i) * torch.tanh(g)
            h = F.spike(torch.sigmoid(o) * torch.tanh(c) - self.threshold, self.surrogate, self.slope)
            out.append(h)
        s, state = torch.stack(out), (h, c, *history)
        if not return_attention:
            return s, state
        return s, ((torch.stack(maps_c), torch.stack(maps_s)) if maps_c else (None, None)), state


#: SE-adLIF ranges in ms: the paper's (Baronig et al. 2025, SHD) tau_u in [5, 25] and tau_w in [60, 300] steps of
#: its 4 ms bins; at 10 ms bins they give decays alpha in [0.61, 0.90] and beta in [0.96, 0.99] per bin.
SE_TAU_U, SE_TAU_W = (20.0, 100.0), (240.0, 1200.0)


class SEAdLIF(nn.Module):
    """SE-adLIF neurons: adaptive LIF with the symplectic-Euler discretisation (Baronig et al., "Advancing
    spatio-temporal processing through adaptation in spiking neural networks", Nat. Commun. 16, 2025),
    :func:`snn.functional.seadlif_sequence`::

        h_t = alpha u_{t-1} + (1 - alpha) (x_t [+ W s_{t-1}] - w_{t-1})
        s_t = heaviside(h_t - threshold),   u_t = h_t (1 - s_t)   (reset to 0)
        w_t = beta w_{t-1} + (1 - beta) q (a u_t + b s_t)

    with ``alpha = exp(-dt / tau_u)``, ``beta = exp(-dt / tau_w)`` and ``a``, ``b`` learnt per neuron, drawn
    uniformly in their ranges at construction and clamped to them in every forward (decays to those of the
    tau ranges).

    Parameters
    ----------
    n : int
        Number of neurons.
    dt : float
        Time bin of the input in ms.
    tau_u, tau_w : tuple of float
        Ranges (min, max) in ms of the membrane and adaptation time constants (default :data:`SE_TAU_U`,
        :data:`SE_TAU_W`: the paper's ranges in steps of 4 ms). Equal bounds fix the time constant.
    a, b : tuple of float
        Ranges of the sub-threshold coupling and of the spike-triggered adaptation (the paper's [0, 1] and
        [0, 2]); ``a < 0`` would make the neuron amplify rather than resist sub-threshold input.
    q : float
        Scale of ``a`` and ``b`` (the paper's reparametrisation; 120 on SHD).
    threshold : float
        Firing threshold (fixed).
    learn : bool
        Learn alpha, beta, a and b per neuron (else buffers).
    recurrent : bool
        Add the recurrent input ``W s_{t-1}`` (``weight`` [n, n], orthogonal at construction as in the paper).
    reset : {"zero", "subtract"}
        The paper's reset to 0, or subtracting the threshold.
    surrogate, slope
        Surrogate gradient of the spike (:data:`snn.functional.SURROGATES`).

    Notes
    -----
    ``forward(x, state=None, return_membrane=False)``: current x [T, B, n] -> spikes [T, B, n] (and the membrane
    before reset) and the state after the last step, a :class:`snn.functional.NeuronState` ``(u, w, s)``.

    Examples
    --------
    >>> torch.manual_seed(0) and None
    >>> layer = SEAdLIF(4, dt=10.0, recurrent=True)
    >>> bool((layer.decays()[0] >= math.exp(-10 / 20)).all() and (layer.decays()[0] <= math.exp(-10 / 100)).all())
    True
    >>> x = torch.rand(50, 2, 4) * 3
    >>> spikes, state = layer(x)
    >>> first, st = layer(x[:20])
    >>> rest, st = layer(x[20:], st)  # continues where the first call stopped
    >>> torch.equal(torch.cat([first, rest]), spikes)
    True
    """

    #: Multiplies per neuron and step of its own state: alpha u, (1 - alpha) (c - w), beta w, a u and
    #: (1 - beta) (a u + b s) (b s is driven by a spike: an add).
    STATE_UPDATES = 5

    def __init__(self, n, *, dt, tau_u=SE_TAU_U, tau_w=SE_TAU_W, a=(0.0, 1.0), b=(0.0, 2.0), q=120.0, threshold=1.0,
                 learn=True, recurrent=False, reset="zero", surrogate="atan", slope=None):
        super().__init__()
        if reset not in F.RESETS:
            raise ValueError(f"reset must be one of {F.RESETS}, got {reset!r}")
        F._surrogate(surrogate, slope)
        for name, (lo, hi) in (("tau_u", tau_u), ("tau_w", tau_w), ("a", a), ("b", b)):
            if not lo <= hi:
                raise ValueError(f"{name} must be a range (min, max), got {(lo, hi)!r}")
        decay(dt, tau_u[0]), decay(dt, tau_w[0])  # validates dt and the time constants
        self.n, self.dt, self.q, self.threshold = n, dt, float(q), float(threshold)
        self.tau_u, self.tau_w, self.a_range, self.b_range = tuple(tau_u), tuple(tau_w), tuple(a), tuple(b)
        self.reset, self.surrogate, self.slope, self.recurrent = reset, surrogate, slope, recurrent
        dtype = torch.get_default_dtype()

        def uniform(lo, hi):
            return torch.empty(n, dtype=torch.float64).uniform_(lo, hi)

        values = {"alpha": torch.exp(-dt / uniform(*tau_u)), "beta": torch.exp(-dt / uniform(*tau_w)),
                  "a": uniform(*a), "b": uniform(*b)}
        for name, value in values.items():
            if learn:
                setattr(self, name, nn.Parameter(value.to(dtype)))
            else:
                self.register_buffer(name, value.to(dtype))
        if recurrent:
            self.weight = nn.Parameter(nn.init.orthogonal_(torch.empty(n, n)))

    def extra_repr(self):
        return (f"{self.n}, dt={self.dt}, tau_u={self.tau_u}, tau_w={self.tau_w}, a={self.a_range}, b={self.b_range}, "
                f"q={self.q}, recurrent={self.recurrent}, reset={self.reset!r}, surrogate={self.surrogate!r}")

    def decays(self):
        """(alpha, beta) per neuron, clamped to the decays of the tau ranges."""
        return (self.alpha.clamp(decay(self.dt, self.tau_u[0]), decay(self.dt, self.tau_u[1])),
                self.beta.clamp(decay(self.dt, self.tau_w[0]), decay(self.dt, self.tau_w[1])))

    def couplings(self):
        """(q a, q b) per neuron, a and b clamped to their ranges."""
        return self.q * self.a.clamp(*self.a_range), self.q * self.b.clamp(*self.b_range)

    def forward(self, x, state=None, return_membrane=False):
        return F.seadlif_sequence(x, self.weight if self.recurrent else None, *self.decays(), *self.couplings(),
                                  self.threshold, self.reset, self.surrogate, self.slope, return_membrane, state)
