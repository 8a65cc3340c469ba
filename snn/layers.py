"""Spiking layers: thin modules over snn.functional, taking and returning time-major [T, B, N]."""
import math

import torch
from torch import nn

from . import functional as F


class _Neurons(nn.Module):
    """Per-neuron parameters and the forward shared by LIF, ALIF, RLIF and RALIF."""

    adaptive = False
    recurrent = False

    def __init__(self, n, beta=0.9, rho=0.995, alpha=1.8, threshold=1.0, learn_beta=False,
                 learn_threshold=False, reset="subtract", surrogate="atan", slope=None):
        super().__init__()
        if reset not in F.RESETS:
            raise ValueError(f"reset must be one of {F.RESETS}, got {reset!r}")
        F._surrogate(surrogate, slope)
        self.n, self.reset, self.surrogate, self.slope = n, reset, surrogate, slope
        self._add("beta", beta, learn_beta)
        self._add("threshold", threshold, learn_threshold)
        if self.adaptive:
            self._add("rho", rho, learn_beta)
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
        return f"{self.n}, reset={self.reset!r}, surrogate={self.surrogate!r}, slope={self.slope}"

    def forward(self, x, repeat=1, return_membrane=False):
        """Spikes [T, B, N] for input current x [T, B, N] (and the membrane before reset, if asked).

        ``repeat`` > 1 shares each neuron's parameters among ``repeat`` consecutive inputs
        (N = n * repeat), as for the positions of a convolution map.
        """
        def p(t, decay=False):
            t = t.clamp(0.0, 1.0) if decay and t.requires_grad else t  # learnt decays stay in [0, 1]
            return t.repeat_interleave(repeat) if repeat > 1 else t

        adaptive = self.adaptive
        return F._sequence(x, self.weight if self.recurrent else None, p(self.beta, True),
                           p(self.threshold), p(self.rho, True) if adaptive else None,
                           p(self.alpha) if adaptive else None, adaptive, self.reset,
                           self.surrogate, self.slope, return_membrane)


class LIF(_Neurons):
    """Leaky integrate-and-fire neurons (:func:`snn.functional.lif_sequence`).

    Parameters
    ----------
    n : int
        Number of neurons.
    beta : float or torch.Tensor
        Membrane decay per step (``exp(-dt / tau_mem)``), scalar or [n].
    learn_beta : bool
        Learn the decay per neuron (kept in [0, 1]).
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
    >>> LIF(3)(torch.ones(5, 2, 3)).shape
    torch.Size([5, 2, 3])
    """

    def __init__(self, n, beta=0.9, learn_beta=False, threshold=1.0, learn_threshold=False,
                 reset="subtract", surrogate="atan", slope=None):
        super().__init__(n, beta=beta, threshold=threshold, learn_beta=learn_beta,
                         learn_threshold=learn_threshold, reset=reset, surrogate=surrogate,
                         slope=slope)


class ALIF(_Neurons):
    """Adaptive LIF neurons (:func:`snn.functional.alif_sequence`): the threshold rises after each
    spike and decays back.

    Parameters
    ----------
    n : int
        Number of neurons.
    beta : float or torch.Tensor
        Membrane decay per step (``exp(-dt / tau_mem)``), scalar or [n].
    rho : float or torch.Tensor
        Adaptation decay per step (``exp(-dt / tau_adapt)``), scalar or [n].
    alpha : float or torch.Tensor
        Threshold increase per unit of adaptation, scalar or [n].
    learn_beta : bool
        Learn both decays (beta and rho) per neuron (kept in [0, 1]).
    threshold : float or torch.Tensor
        Baseline threshold, scalar or [n].
    learn_threshold : bool
        Learn the baseline threshold and alpha per neuron.
    reset, surrogate, slope
        As in :class:`LIF`.
    """

    adaptive = True

    def __init__(self, n, beta=0.9, rho=0.995, alpha=1.8, learn_beta=False, threshold=1.0,
                 learn_threshold=False, reset="subtract", surrogate="atan", slope=None):
        super().__init__(n, beta=beta, rho=rho, alpha=alpha, threshold=threshold,
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
    beta : float or torch.Tensor
        Decay per step, scalar or [n].
    learn_beta : bool
        Learn the decay per unit (kept in [0, 1]).

    Notes
    -----
    Input: current [T, B, n]; output: membrane [T, B, n].
    """

    def __init__(self, n, beta=0.9, learn_beta=False):
        super().__init__()
        self.n = n
        value = torch.as_tensor(beta, dtype=torch.get_default_dtype()).expand(n).clone()
        if learn_beta:
            self.beta = nn.Parameter(value)
        else:
            self.register_buffer("beta", value)

    def forward(self, x):
        beta = self.beta.clamp(0.0, 1.0) if self.beta.requires_grad else self.beta
        return F.li_sequence(x, beta)


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
        beta, threshold, reset, surrogate, slope, learn_beta, learn_threshold (and rho, alpha when
        adaptive): parameters are shared by the positions of a map (one value per out map).

    Notes
    -----
    Input: [T, B, in_maps, L]; output: spikes [T, B, out_maps, L_out] with
    ``L_out = (L + 2 padding - kernel_size) // stride + 1``.
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
        """Synapses driven by one input spike at each position: tensor [length] (edges drive fewer)."""
        (k,), (s,), (p,) = self.conv.kernel_size, self.conv.stride, self.conv.padding
        starts = torch.arange(self.output_length(length))[:, None] * s - p  # window of each output
        pos = torch.arange(length)[None, :]
        windows = ((pos >= starts) & (pos < starts + k)).sum(0)
        return windows.to(torch.get_default_dtype()) * self.conv.out_channels

    def forward(self, x):
        T, B, C, L = x.shape
        y = self.conv(x.reshape(T * B, C, L))
        out_len = y.shape[-1]
        s = self.neurons(y.reshape(T, B, -1), repeat=out_len)
        return s.reshape(T, B, -1, out_len)
