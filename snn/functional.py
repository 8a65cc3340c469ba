"""Fused spiking neuron sequences: pure functions of a time-major input ``[T, B, N]``.

Each function runs the whole sequence as ONE autograd node with a hand-written backward (BPTT):
numba kernels on the CPU (snn/_kernels.py), a loop over T in torch ops on other devices. Backward
keeps one [T, B, N] tensor, the input current (feed-forward neurons on the CPU: the kernel replays
the forward) or the pre-reset membrane ``h``, and recomputes spikes, resets and adaptation.

Neuron model, per step t (state after step t-1: membrane v, adaptation a, spikes s; all start at 0)::

    theta_t = threshold + alpha * a_{t-1}               adaptive neurons only (else threshold)
    h_t     = beta * v_{t-1} + x_t [+ s_{t-1} @ W.T]     recurrent neurons only
    s_t     = heaviside(h_t - theta_t)                   (h_t > theta_t)
    v_t     = h_t - theta_t * s_t      reset="subtract"
            = h_t * (1 - s_t)          reset="zero"
    a_t     = rho * a_{t-1} + (1 - rho) * s_t

The spike's gradient is replaced by a surrogate ``sg'(h - theta)`` with slope ``k``
(see :data:`SURROGATES`); gradients flow through the reset and the adaptation as well.
Parameters (beta, threshold, rho, alpha) are scalars or per-neuron tensors of shape ``[N]``,
differentiable when they require grad.
"""
import math

import numba
import torch

from . import _kernels as K

#: name -> (kernel code, default slope k, surrogate derivative sg'(u)).
SURROGATES = {
    "fast_sigmoid": (K.FAST_SIGMOID, 25.0, "1 / (1 + k|u|)^2"),
    "atan": (K.ATAN, 2.0, "(k / 2) / (1 + (pi k u / 2)^2)"),
    "triangle": (K.TRIANGLE, 1.0, "k max(0, 1 - k|u|)"),
}
RESETS = ("subtract", "zero")


def surrogate_grad(u, surrogate="atan", slope=None):
    """Surrogate derivative ``sg'(u)`` of the spike, elementwise (torch).

    Parameters
    ----------
    u : torch.Tensor
        Membrane minus threshold.
    surrogate : {"fast_sigmoid", "atan", "triangle"}
        Shape of the derivative, see :data:`SURROGATES`.
    slope : float, optional
        Sharpness ``k``; the surrogate's default when None.

    Returns
    -------
    torch.Tensor
        ``sg'(u)``, same shape and dtype as ``u``.
    """
    kind, k = _surrogate(surrogate, slope)
    if kind == K.FAST_SIGMOID:
        return 1.0 / (1.0 + k * u.abs()) ** 2
    if kind == K.ATAN:
        return 0.5 * k / (1.0 + (0.5 * math.pi * k * u) ** 2)
    return k * (1.0 - k * u.abs()).clamp(min=0.0)


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, surrogate, slope):
        ctx.save_for_backward(u)
        ctx.surrogate = surrogate, slope
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx, g):
        (u,) = ctx.saved_tensors
        return g * surrogate_grad(u, *ctx.surrogate), None, None


def spike(u, surrogate="atan", slope=None):
    """Heaviside step ``u > 0`` whose gradient is the surrogate ``sg'(u)``.

    The building block for writing other neurons step by step with autograd.

    Parameters
    ----------
    u : torch.Tensor
        Membrane minus threshold.
    surrogate, slope
        See :func:`surrogate_grad`.

    Returns
    -------
    torch.Tensor
        Spikes as 0/1 in the dtype of ``u``.
    """
    _surrogate(surrogate, slope)
    return _Spike.apply(u, surrogate, slope)


def _surrogate(name, slope):
    if name not in SURROGATES:
        raise ValueError(f"surrogate must be one of {sorted(SURROGATES)}, got {name!r}")
    kind, default, _ = SURROGATES[name]
    return kind, float(default if slope is None else slope)


def _use_numba(x):
    """numba kernels for CPU float32/float64; torch ops otherwise (CUDA, half precision)."""
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


def _np(t):
    return t.detach().contiguous().numpy()


# -- torch path (any device): same float operations in the same order as the kernels -------------
def _torch_forward(x, w, beta, theta, alpha, rho, omr, adaptive, zero_reset):
    s, h = torch.empty_like(x), torch.empty_like(x)
    v = torch.zeros_like(x[0])
    a, s_prev = torch.zeros_like(v), torch.zeros_like(v)
    for t, xt in enumerate(x.unbind(0)):
        th = theta + alpha * a if adaptive else theta
        ht = beta * v + xt
        if w is not None:
            ht = ht + s_prev @ w.t()
        s_prev = (ht > th).to(x.dtype)
        v = ht * (1 - s_prev) if zero_reset else ht - th * s_prev
        if adaptive:
            a = rho * a + omr * s_prev
        s[t], h[t] = s_prev, ht
    return s, h


def _torch_backward(h, gs, gho, w, beta, theta, alpha, rho, omr, adaptive, zero_reset, surrogate, k):
    # replay theta_t, a_{t-1} and s_t from h, as the kernels do
    ths, aps, ss = torch.empty_like(h), torch.empty_like(h), torch.empty_like(h)
    a = torch.zeros_like(h[0])
    for t, ht in enumerate(h.unbind(0)):
        ths[t] = theta + alpha * a if adaptive else theta
        aps[t] = a
        ss[t] = (ht > ths[t]).to(h.dtype)
        if adaptive:
            a = rho * a + omr * ss[t]
    gv, ga, gr = (torch.zeros_like(h[0]) for _ in range(3))
    gx = torch.empty_like(h)
    gpar = torch.zeros(4, h.shape[-1], dtype=h.dtype, device=h.device)
    for t in range(h.shape[0] - 1, -1, -1):
        ht, th, s, ap = h[t], ths[t], ss[t], aps[t]
        G = gs[t] + gr - (ht if zero_reset else th) * gv
        if adaptive:
            G = G + omr * ga
        gd = G * surrogate_grad(ht - th, surrogate, k)
        gh = gd + (gv * (1 - s) if zero_reset else gv)
        if gho is not None:
            gh = gh + gho[t]
        gth = -gd if zero_reset else -gd - gv * s
        gx[t] = gh
        if t > 0:
            vp = h[t - 1] * (1 - ss[t - 1]) if zero_reset else h[t - 1] - ths[t - 1] * ss[t - 1]
            gpar[0] += (gh * vp).sum(0)
        gpar[1] += gth.sum(0)
        if adaptive:
            gpar[2] += (gth * ap).sum(0)
            gpar[3] += (ga * (ap - s)).sum(0)
            ga = rho * ga + alpha * gth
        gv = beta * gh
        if w is not None:
            gr = gh @ w
    gw = None
    if w is not None:
        n = h.shape[-1]
        gw = gx[1:].reshape(-1, n).t() @ ss[:-1].reshape(-1, n)
    return gx, gw, gpar


def _sequence_forward(x, weight, beta, theta, alpha, rho, omr, adaptive, zero_reset, membrane):
    """``(s, h, replay)``: spikes, the membrane (a [1, B, N] scratch when neither asked for nor
    needed by backward) and whether backward replays the forward from ``x``."""
    if not _use_numba(x):
        return (*_torch_forward(x, weight, beta, theta, alpha, rho, omr, adaptive, zero_reset), False)
    replay = weight is None
    s = torch.empty_like(x)
    h = torch.empty_like(x) if membrane or not replay else x.new_empty(1, *x.shape[1:])
    b = _np(beta)  # non-adaptive inference passes beta for alpha, rho and 1 - rho: convert it once
    args = (b, _np(theta), *(b if p is beta else _np(p) for p in (alpha, rho, omr)), adaptive, zero_reset,
            s.numpy(), h.numpy())
    if replay:
        K.ff_forward(_np(x), *args, K.block_size(*x.shape[1:], numba.get_num_threads()))
    else:
        K.rec_forward(_np(x), _np(weight.t()), *args)
    return s, h, replay


class _NeuronSequence(torch.autograd.Function):
    """One autograd node for the whole sequence. Saved for backward: the input x on the CPU
    without recurrence (the kernel replays the forward), else the membrane h."""

    @staticmethod
    def forward(ctx, x, weight, beta, theta, alpha, rho, adaptive, zero_reset, surrogate, k,
                membrane):
        omr = 1 - rho
        s, h, replay = _sequence_forward(x, weight, beta, theta, alpha, rho, omr, adaptive, zero_reset, membrane)
        ctx.save_for_backward(x if replay else h, weight, beta, theta, alpha, rho, omr)
        ctx.cfg = replay, adaptive, zero_reset, surrogate, k
        ctx.set_materialize_grads(False)
        return s, (h if membrane else None)

    @staticmethod
    def backward(ctx, gs, gho):
        xh, weight, beta, theta, alpha, rho, omr = ctx.saved_tensors
        replay, adaptive, zero_reset, surrogate, k = ctx.cfg
        if gs is None:  # only the membrane output is used
            gs = xh.new_zeros(()).expand_as(xh)
        gw = None
        if _use_numba(xh):
            gx = torch.empty_like(xh)
            T, B, N = xh.shape
            gpar = torch.empty(B, 4, N, dtype=torch.float64)
            has_gho = gho is not None
            gho_np = _np(gho) if has_gho else _np(xh[:0])
            args = (_np(beta), _np(theta), _np(alpha), _np(rho), _np(omr), adaptive, zero_reset,
                    SURROGATES[surrogate][0], k, gx.numpy(), gpar.numpy())
            # gs as it comes: the kernels read it row by row, so a broadcast (e.g. of loss =
            # spikes.sum()) needs no [T, B, N] copy
            gs_np = gs.detach().numpy()
            if replay:
                K.ff_backward(_np(xh), gs_np, gho_np, has_gho, *args,
                              K.block_size(B, N, numba.get_num_threads()))
            else:
                # one chunk of rows (and partial dL/dW.T) per thread, at least two rows each
                gwt = torch.zeros(max(1, min(B // 2, numba.get_num_threads())), N, N, dtype=xh.dtype)
                K.rec_backward(_np(xh), gs_np, gho_np, has_gho, _np(weight), *args, gwt.numpy())
                gw = gwt.sum(0).t()
            gpar = gpar.sum(0).to(xh.dtype)
        else:
            gx, gw, gpar = _torch_backward(xh, gs, gho, weight, beta, theta, alpha, rho, omr, adaptive,
                                           zero_reset, surrogate, k)
        return gx, gw, gpar[0], gpar[1], gpar[2], gpar[3], None, None, None, None, None


def _param(value, x, n, name):
    if torch.is_tensor(value) and value.shape == (n,) and value.dtype == x.dtype and value.device == x.device \
            and value.is_contiguous():
        return value
    p = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    if p.dim() > 1 or p.numel() not in (1, n):
        raise ValueError(f"{name} must be a scalar or have shape [{n}], got shape {tuple(p.shape)}")
    return p.expand(n).contiguous()


def _sequence(x, weight, beta, threshold, rho, alpha, adaptive, reset, surrogate, slope,
              return_membrane):
    if x.dim() != 3:
        raise ValueError(f"x must have shape [T, B, N], got {tuple(x.shape)}")
    if reset not in RESETS:
        raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
    _, k = _surrogate(surrogate, slope)
    n = x.shape[-1]
    if weight is not None and tuple(weight.shape) != (n, n):
        raise ValueError(f"recurrent weight must have shape [{n}, {n}], got {tuple(weight.shape)}")
    weight = None if weight is None else weight.to(x.dtype)
    beta, threshold = _param(beta, x, n, "beta"), _param(threshold, x, n, "threshold")
    alpha, rho = (_param(alpha, x, n, "alpha"), _param(rho, x, n, "rho")) if adaptive else (None, None)
    zero_reset = reset == "zero"
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, beta, threshold, alpha, rho)):
        if not adaptive:
            alpha = rho = x.new_zeros(n)
        s, h = _NeuronSequence.apply(x, weight, beta, threshold, alpha, rho, adaptive, zero_reset, surrogate, k,
                                     return_membrane)
    else:  # inference: no autograd node, whose bookkeeping costs more than a small layer's kernel
        # (without adaptation the kernels never read alpha, rho and 1 - rho: beta stands in for them)
        alpha, rho, omr = (alpha, rho, 1 - rho) if adaptive else (beta, beta, beta)
        s, h, _ = _sequence_forward(x, weight, beta, threshold, alpha, rho, omr, adaptive, zero_reset, return_membrane)
    return (s, h) if return_membrane else s


def lif_sequence(x, beta=0.9, threshold=1.0, reset="subtract", surrogate="atan", slope=None,
                 return_membrane=False):
    """Leaky integrate-and-fire neurons over a sequence.

    Parameters
    ----------
    x : torch.Tensor
        Input current [T, B, N].
    beta : float or torch.Tensor
        Membrane decay per step, scalar or [N].
    threshold : float or torch.Tensor
        Firing threshold, scalar or [N].
    reset : {"subtract", "zero"}
        At a spike, subtract the threshold from the membrane or set it to 0.
    surrogate : {"fast_sigmoid", "atan", "triangle"}
        Surrogate gradient of the spike, see :data:`SURROGATES`.
    slope : float, optional
        Surrogate sharpness ``k``; the surrogate's default (25, 2, 1) when None.
    return_membrane : bool
        Also return the membrane before reset ``h`` [T, B, N] (differentiable).

    Returns
    -------
    spikes : torch.Tensor
        0/1 in the dtype of ``x``, [T, B, N].
    membrane : torch.Tensor
        Only with ``return_membrane``.

    Examples
    --------
    >>> lif_sequence(torch.full((4, 1, 1), 0.6), beta=1.0).flatten().tolist()
    [0.0, 1.0, 0.0, 1.0]
    """
    return _sequence(x, None, beta, threshold, None, None, False, reset, surrogate, slope,
                     return_membrane)


def alif_sequence(x, beta=0.9, rho=0.995, alpha=1.8, threshold=1.0, reset="subtract",
                  surrogate="atan", slope=None, return_membrane=False):
    """Adaptive LIF neurons: the threshold rises after each spike and decays back.

    Parameters
    ----------
    x : torch.Tensor
        Input current [T, B, N].
    beta : float or torch.Tensor
        Membrane decay per step, scalar or [N].
    rho : float or torch.Tensor
        Adaptation decay per step, scalar or [N].
    alpha : float or torch.Tensor
        Threshold increase per unit of adaptation ``a``, scalar or [N]; ``a`` rises by ``1 - rho``
        per spike.
    threshold : float or torch.Tensor
        Baseline threshold, scalar or [N].
    reset, surrogate, slope, return_membrane
        As in :func:`lif_sequence`.

    Returns
    -------
    spikes : torch.Tensor
        0/1 in the dtype of ``x``, [T, B, N].
    membrane : torch.Tensor
        Only with ``return_membrane``.
    """
    return _sequence(x, None, beta, threshold, rho, alpha, True, reset, surrogate, slope,
                     return_membrane)


def rlif_sequence(x, weight, beta=0.9, threshold=1.0, reset="subtract", surrogate="atan",
                  slope=None, return_membrane=False):
    """Recurrent LIF neurons: input current plus the weighted spikes of the previous step.

    Parameters
    ----------
    x : torch.Tensor
        Input current [T, B, N].
    weight : torch.Tensor
        Recurrent weights [N, N]: neuron m receives ``weight[m, k]`` one step after a spike of
        neuron k (differentiable).
    beta, threshold, reset, surrogate, slope, return_membrane
        As in :func:`lif_sequence`.

    Returns
    -------
    spikes : torch.Tensor
        0/1 in the dtype of ``x``, [T, B, N].
    membrane : torch.Tensor
        Only with ``return_membrane``.
    """
    return _sequence(x, weight, beta, threshold, None, None, False, reset, surrogate, slope,
                     return_membrane)


def ralif_sequence(x, weight, beta=0.9, rho=0.995, alpha=1.8, threshold=1.0, reset="subtract",
                   surrogate="atan", slope=None, return_membrane=False):
    """Recurrent adaptive LIF neurons.

    Parameters
    ----------
    x : torch.Tensor
        Input current [T, B, N].
    weight : torch.Tensor
        Recurrent weights [N, N], as in :func:`rlif_sequence`.
    beta, rho, alpha, threshold, reset, surrogate, slope, return_membrane
        As in :func:`alif_sequence`.

    Returns
    -------
    spikes : torch.Tensor
        0/1 in the dtype of ``x``, [T, B, N].
    membrane : torch.Tensor
        Only with ``return_membrane``.
    """
    return _sequence(x, weight, beta, threshold, rho, alpha, True, reset, surrogate, slope,
                     return_membrane)


def _li_forward(x, beta):
    if _use_numba(x):
        u = torch.empty_like(x)
        K.li_forward(_np(x), _np(beta), u.numpy())
        return u
    u, u_t = torch.empty_like(x), torch.zeros_like(x[0])
    for t, xt in enumerate(x.unbind(0)):
        u_t = beta * u_t + xt
        u[t] = u_t
    return u


class _LISequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, beta):
        u = _li_forward(x, beta)
        ctx.save_for_backward(u, beta)
        return u

    @staticmethod
    def backward(ctx, gu):
        u, beta = ctx.saved_tensors
        if _use_numba(u):
            gx = torch.empty_like(u)
            gbeta = torch.empty(u.shape[1], u.shape[2], dtype=torch.float64)
            K.li_backward(_np(u), _np(gu), _np(beta), gx.numpy(), gbeta.numpy())
            return gx, gbeta.sum(0).to(u.dtype)
        gx, g = torch.empty_like(u), torch.zeros_like(u[0])
        gbeta = torch.zeros_like(beta)
        for t in range(u.shape[0] - 1, -1, -1):
            g = gu[t] + beta * g
            gx[t] = g
            if t > 0:
                gbeta += (g * u[t - 1]).sum(0)
        return gx, gbeta


def li_sequence(x, beta=0.9):
    """Non-spiking leaky integrator ``u_t = beta * u_{t-1} + x_t`` (u starts at 0).

    Parameters
    ----------
    x : torch.Tensor
        Input current [T, B, N].
    beta : float or torch.Tensor
        Decay per step, scalar or [N].

    Returns
    -------
    torch.Tensor
        Membrane ``u`` [T, B, N].
    """
    if x.dim() != 3:
        raise ValueError(f"x must have shape [T, B, N], got {tuple(x.shape)}")
    beta = _param(beta, x, x.shape[-1], "beta")
    if torch.is_grad_enabled() and (x.requires_grad or beta.requires_grad):
        return _LISequence.apply(x, beta)
    return _li_forward(x, beta)  # inference: no autograd node, as in _sequence
