"""Fused spiking neuron sequences: pure functions of a time-major input ``[T, B, N]``.

Each function runs the whole sequence as ONE autograd node with a hand-written backward (BPTT):
numba kernels on the CPU (snn/_kernels.py), a loop over T in torch ops on other devices. Backward
keeps one [T, B, N] tensor, the input current (feed-forward neurons on the CPU: the kernel replays
the forward) or the pre-reset membrane ``h``, and recomputes spikes, resets and adaptation.

Neuron model, per step t (state after step t-1: membrane v, adaptation a, spikes s)::

    theta_t = threshold + alpha * a_{t-1}               adaptive neurons only (else threshold)
    h_t     = beta * v_{t-1} + x_t [+ s_{t-1} @ W.T]     recurrent neurons only
    s_t     = heaviside(h_t - theta_t)                   (h_t > theta_t)
    v_t     = h_t - theta_t * s_t      reset="subtract"
            = h_t * (1 - s_t)          reset="zero"
    a_t     = rho * a_{t-1} + (1 - rho) * s_t

The state before step 0 is ``state`` (a :class:`NeuronState`; zeros when None) and every function
returns the state after the last step, so that a sequence run in chunks, each starting from the
state the previous one returned, gives the spikes of one pass (as Norse's neurons)::

    spikes, state = lif_sequence(x[:100], beta)
    more, state = lif_sequence(x[100:], beta, state=state)

The spike's gradient is replaced by a surrogate ``sg'(h - theta)`` with slope ``k``
(see :data:`SURROGATES`); gradients flow through the reset and the adaptation as well, and through
both states: backpropagating through two chained calls is backpropagating through one.
Parameters (beta, threshold, rho, alpha) are scalars or per-neuron tensors of shape ``[N]``,
differentiable when they require grad.
"""
import math
from typing import NamedTuple

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


class NeuronState(NamedTuple):
    """State of a layer of spiking neurons between two steps, each a [B, N] tensor.

    Attributes
    ----------
    v : torch.Tensor
        Membrane after the reset.
    a : torch.Tensor
        Adaptation (stays at its initial value for non-adaptive neurons).
    s : torch.Tensor
        Spikes (0/1) of the last step: the recurrent input ``s @ W.T`` of the next step, which the
        CPU kernels compute as the sum of the weights of the neurons with ``s != 0``.

    Examples
    --------
    >>> x = torch.full((4, 1, 1), 0.6)
    >>> first, state = lif_sequence(x[:1], beta=1.0)
    >>> round(state.v.item(), 4)
    0.6
    >>> rest, state = lif_sequence(x[1:], beta=1.0, state=state)
    >>> torch.cat([first, rest]).flatten().tolist()
    [0.0, 1.0, 0.0, 1.0]
    """

    v: torch.Tensor
    a: torch.Tensor
    s: torch.Tensor


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
def _torch_forward(x, w, beta, theta, alpha, rho, omr, adaptive, zero_reset, v, a, s_prev):
    s, h = torch.empty_like(x), torch.empty_like(x)
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
    return s, h, v, a


def _torch_backward(h, gs, gho, w, beta, theta, alpha, rho, omr, adaptive, zero_reset, surrogate, k,
                    v0, a0, s0, gv, ga):
    # replay theta_t, a_{t-1} and s_t from h and a_{-1}, as the kernels do
    ths, aps, ss = torch.empty_like(h), torch.empty_like(h), torch.empty_like(h)
    a = a0
    for t, ht in enumerate(h.unbind(0)):
        ths[t] = theta + alpha * a if adaptive else theta
        aps[t] = a
        ss[t] = (ht > ths[t]).to(h.dtype)
        if adaptive:
            a = rho * a + omr * ss[t]
    gr = torch.zeros_like(v0)
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
        else:
            vp = v0
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
        s_prev = torch.cat([s0[None], ss[:-1]])  # the spikes each step's recurrent input came from
        gw = gx.reshape(-1, n).t() @ s_prev.reshape(-1, n)
    return gx, gw, gpar, gv, ga, gr


def _sequence_forward(x, weight, beta, theta, alpha, rho, omr, adaptive, zero_reset, membrane, v0, a0, s0):
    """``(s, h, v, a, replay)``: spikes, the membrane (a [1, B, N] scratch when neither asked for nor
    needed by backward), the final membrane and adaptation [B, N] and whether backward replays the
    forward from ``x``. The initial state v0, a0, s0 is [B, N] or None (zeros); s0 is read by
    recurrent neurons only, and for non-adaptive ones ``a`` stays as it was."""
    # fresh buffers: the kernels overwrite them with the final state (one allocation each, as
    # streaming one step per call makes this cost count)
    v, a = (x.new_zeros(x.shape[1:]) if t is None else t.clone() for t in (v0, a0))
    if weight is not None and s0 is None:
        s0 = x.new_zeros(x.shape[1:])
    if not _use_numba(x):
        return (*_torch_forward(x, weight, beta, theta, alpha, rho, omr, adaptive, zero_reset, v, a, s0), False)
    replay = weight is None
    s = torch.empty_like(x)
    h = torch.empty_like(x) if membrane or not replay else x.new_empty(1, *x.shape[1:])
    b = _np(beta)  # non-adaptive inference passes beta for alpha, rho and 1 - rho: convert it once
    args = (b, _np(theta), *(b if p is beta else _np(p) for p in (alpha, rho, omr)), adaptive, zero_reset,
            s.numpy(), h.numpy(), v.numpy(), a.numpy())
    if replay:
        K.ff_forward(_np(x), *args, K.block_size(*x.shape[1:], numba.get_num_threads()))
    else:
        K.rec_forward(_np(x), _np(weight.t()), *args, _np(s0))
    return s, h, v, a, replay


def _zeros_if_none(state, x):
    """The initial state's tensors, zeros [B, N] where None (no state given)."""
    return [x.new_zeros(x.shape[1:]) if t is None else t for t in state]


class _NeuronSequence(torch.autograd.Function):
    """One autograd node for the whole sequence. Saved for backward: the input x on the CPU
    without recurrence (the kernel replays the forward), else the membrane h; and the initial
    state, None when none was given (zeros)."""

    @staticmethod
    def forward(ctx, x, weight, beta, theta, alpha, rho, v0, a0, s0, adaptive, zero_reset, surrogate, k,
                membrane):
        omr = 1 - rho
        s, h, v, a, replay = _sequence_forward(x, weight, beta, theta, alpha, rho, omr, adaptive, zero_reset,
                                               membrane, v0, a0, s0)
        ctx.save_for_backward(x if replay else h, weight, beta, theta, alpha, rho, omr, v0, a0, s0)
        ctx.cfg = replay, adaptive, zero_reset, surrogate, k
        ctx.set_materialize_grads(False)
        if not adaptive:
            ctx.mark_non_differentiable(a)  # zeros, never updated
        return s, (h if membrane else None), v, a

    @staticmethod
    def backward(ctx, gs, gho, gv, ga):
        xh, weight, beta, theta, alpha, rho, omr, *state = ctx.saved_tensors
        replay, adaptive, zero_reset, surrogate, k = ctx.cfg
        v0, a0, s0 = _zeros_if_none(state, xh)
        if gs is None:  # only the membrane output or the final state is used
            gs = xh.new_zeros(()).expand_as(xh)
        # gradients of the final state start the backward carries (in and out: kernels overwrite them)
        gv, ga = (torch.zeros_like(v0) if g is None else g.contiguous().clone() for g in (gv, ga))
        gw = gs0 = None
        want_gs0 = weight is not None and ctx.needs_input_grad[8]
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
                K.ff_backward(_np(xh), _np(v0), _np(a0), gs_np, gho_np, has_gho, *args, gv.numpy(), ga.numpy(),
                              K.block_size(B, N, numba.get_num_threads()))
            else:
                # one chunk of rows (and partial dL/dW.T) per thread, at least two rows each
                gwt = torch.zeros(max(1, min(B // 2, numba.get_num_threads())), N, N, dtype=xh.dtype)
                gs0 = torch.empty_like(v0) if want_gs0 else v0[:0]
                K.rec_backward(_np(xh), _np(v0), _np(a0), _np(s0), gs_np, gho_np, has_gho, _np(weight), *args,
                               gwt.numpy(), gv.numpy(), ga.numpy(), gs0.numpy(), want_gs0)
                gw = gwt.sum(0).t()
            gpar = gpar.sum(0).to(xh.dtype)
        else:
            gx, gw, gpar, gv, ga, gs0 = _torch_backward(xh, gs, gho, weight, beta, theta, alpha, rho, omr, adaptive,
                                                        zero_reset, surrogate, k, v0, a0, s0, gv, ga)
        return (gx, gw, gpar[0], gpar[1], gpar[2], gpar[3], gv if state[0] is not None else None,
                ga if adaptive and state[1] is not None else None, gs0 if want_gs0 else None,
                None, None, None, None, None)


def _param(value, x, n, name):
    if torch.is_tensor(value) and value.shape == (n,) and value.dtype == x.dtype and value.device == x.device \
            and value.is_contiguous():
        return value
    p = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    if p.dim() > 1 or p.numel() not in (1, n):
        raise ValueError(f"{name} must be a scalar or have shape [{n}], got shape {tuple(p.shape)}")
    return p.expand(n).contiguous()


def _state(state, x):
    """The initial (v, a, s), each [B, N] in the dtype of x or None (zeros)."""
    if state is None:
        return None, None, None
    if len(state) != 3:
        raise ValueError("state must be a NeuronState (v, a, s)")
    shape = x.shape[1:]
    for name, t in zip(NeuronState._fields, state):
        if tuple(t.shape) != tuple(shape):
            raise ValueError(f"state.{name} must have shape {list(shape)}, got {tuple(t.shape)}")
    return tuple(t.to(x.dtype) for t in state)


def _check_sequence(x, weight, reset, surrogate, slope):
    """The surrogate's slope, the neuron count and the recurrent weight in x's dtype, after checking the arguments
    every sequence function shares."""
    if x.dim() != 3:
        raise ValueError(f"x must have shape [T, B, N], got {tuple(x.shape)}")
    if reset not in RESETS:
        raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
    _, k = _surrogate(surrogate, slope)
    n = x.shape[-1]
    if weight is not None and tuple(weight.shape) != (n, n):
        raise ValueError(f"recurrent weight must have shape [{n}, {n}], got {tuple(weight.shape)}")
    weight = None if weight is None else weight.to(x.dtype)
    return k, n, weight


def _sequence(x, weight, beta, threshold, rho, alpha, adaptive, reset, surrogate, slope,
              return_membrane, state=None):
    k, n, weight = _check_sequence(x, weight, reset, surrogate, slope)
    beta, threshold = _param(beta, x, n, "beta"), _param(threshold, x, n, "threshold")
    alpha, rho = (_param(alpha, x, n, "alpha"), _param(rho, x, n, "rho")) if adaptive else (None, None)
    zero_reset = reset == "zero"
    v0, a0, s0 = _state(state, x)
    # the kernels read s0 only with recurrence and a0 only with adaptation: others pass through as given
    init = (v0, a0 if adaptive else None, s0 if weight is not None else None)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                       for t in (x, weight, beta, threshold, alpha, rho, *init)):
        if not adaptive:
            alpha = rho = x.new_zeros(n)
        s, h, v, a = _NeuronSequence.apply(x, weight, beta, threshold, alpha, rho, *init, adaptive, zero_reset,
                                           surrogate, k, return_membrane)
    else:  # inference: no autograd node, whose bookkeeping costs more than a small layer's kernel
        # (without adaptation the kernels never read alpha, rho and 1 - rho: beta stands in for them)
        alpha, rho, omr = (alpha, rho, 1 - rho) if adaptive else (beta, beta, beta)
        s, h, v, a, _ = _sequence_forward(x, weight, beta, threshold, alpha, rho, omr, adaptive, zero_reset,
                                          return_membrane, *init)
    if not adaptive and a0 is not None:
        a = a0  # unchanged: the identity, also for autograd
    last = s[-1] if len(x) else (x.new_zeros(x.shape[1:]) if s0 is None else s0)
    state = NeuronState(v, a, last)
    return (s, h, state) if return_membrane else (s, state)


def lif_sequence(x, beta=0.9, threshold=1.0, reset="subtract", surrogate="atan", slope=None,
                 return_membrane=False, state=None):
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
    state : NeuronState, optional
        State before the first step (e.g. the one a previous call returned); zeros when None.
        Differentiable.

    Returns
    -------
    spikes : torch.Tensor
        0/1 in the dtype of ``x``, [T, B, N].
    membrane : torch.Tensor
        Only with ``return_membrane``.
    state : NeuronState
        State after the last step (differentiable).

    Examples
    --------
    >>> spikes, state = lif_sequence(torch.full((4, 1, 1), 0.6), beta=1.0)
    >>> spikes.flatten().tolist(), round(state.v.item(), 4)
    ([0.0, 1.0, 0.0, 1.0], 0.4)
    """
    return _sequence(x, None, beta, threshold, None, None, False, reset, surrogate, slope,
                     return_membrane, state)


def alif_sequence(x, beta=0.9, rho=0.995, alpha=1.8, threshold=1.0, reset="subtract",
                  surrogate="atan", slope=None, return_membrane=False, state=None):
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
    reset, surrogate, slope, return_membrane, state
        As in :func:`lif_sequence`.

    Returns
    -------
    spikes : torch.Tensor
        0/1 in the dtype of ``x``, [T, B, N].
    membrane : torch.Tensor
        Only with ``return_membrane``.
    state : NeuronState
        State after the last step.
    """
    return _sequence(x, None, beta, threshold, rho, alpha, True, reset, surrogate, slope,
                     return_membrane, state)


def rlif_sequence(x, weight, beta=0.9, threshold=1.0, reset="subtract", surrogate="atan",
                  slope=None, return_membrane=False, state=None):
    """Recurrent LIF neurons: input current plus the weighted spikes of the previous step.

    Parameters
    ----------
    x : torch.Tensor
        Input current [T, B, N].
    weight : torch.Tensor
        Recurrent weights [N, N]: neuron m receives ``weight[m, k]`` one step after a spike of
        neuron k (differentiable).
    beta, threshold, reset, surrogate, slope, return_membrane, state
        As in :func:`lif_sequence`.

    Returns
    -------
    spikes : torch.Tensor
        0/1 in the dtype of ``x``, [T, B, N].
    membrane : torch.Tensor
        Only with ``return_membrane``.
    state : NeuronState
        State after the last step.
    """
    return _sequence(x, weight, beta, threshold, None, None, False, reset, surrogate, slope,
                     return_membrane, state)


def ralif_sequence(x, weight, beta=0.9, rho=0.995, alpha=1.8, threshold=1.0, reset="subtract",
                   surrogate="atan", slope=None, return_membrane=False, state=None):
    """Recurrent adaptive LIF neurons.

    Parameters
    ----------
    x : torch.Tensor
        Input current [T, B, N].
    weight : torch.Tensor
        Recurrent weights [N, N], as in :func:`rlif_sequence`.
    beta, rho, alpha, threshold, reset, surrogate, slope, return_membrane, state
        As in :func:`alif_sequence`.

    Returns
    -------
    spikes : torch.Tensor
        0/1 in the dtype of ``x``, [T, B, N].
    membrane : torch.Tensor
        Only with ``return_membrane``.
    state : NeuronState
        State after the last step.
    """
    return _sequence(x, weight, beta, threshold, rho, alpha, True, reset, surrogate, slope,
                     return_membrane, state)


def _li_forward(x, beta, u0):
    if _use_numba(x):
        u = torch.empty_like(x)
        K.li_forward(_np(x), _np(beta), _np(u0), u.numpy())
        return u
    u, u_t = torch.empty_like(x), u0
    for t, xt in enumerate(x.unbind(0)):
        u_t = beta * u_t + xt
        u[t] = u_t
    return u


class _LISequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, beta, u0):
        u = _li_forward(x, beta, x.new_zeros(x.shape[1:]) if u0 is None else u0)
        ctx.save_for_backward(u, beta, u0)
        return u

    @staticmethod
    def backward(ctx, gu):
        u, beta, u0 = ctx.saved_tensors
        given = u0 is not None
        u0 = u0 if given else u.new_zeros(u.shape[1:])
        if _use_numba(u):
            gx, gu0 = torch.empty_like(u), torch.empty_like(u0)
            gbeta = torch.empty(u.shape[1], u.shape[2], dtype=torch.float64)
            K.li_backward(_np(u), _np(u0), _np(gu), _np(beta), gx.numpy(), gbeta.numpy(), gu0.numpy())
            return gx, gbeta.sum(0).to(u.dtype), gu0 if given else None
        gx, g = torch.empty_like(u), torch.zeros_like(u0)
        gbeta = torch.zeros_like(beta)
        for t in range(u.shape[0] - 1, -1, -1):
            g = gu[t] + beta * g
            gx[t] = g
            gbeta += (g * (u[t - 1] if t > 0 else u0)).sum(0)
        return gx, gbeta, beta * g if given else None


def li_sequence(x, beta=0.9, state=None):
    """Non-spiking leaky integrator ``u_t = beta * u_{t-1} + x_t``.

    Parameters
    ----------
    x : torch.Tensor
        Input current [T, B, N].
    beta : float or torch.Tensor
        Decay per step, scalar or [N].
    state : torch.Tensor, optional
        ``u_{-1}`` [B, N], e.g. the last membrane of a previous call; zeros when None. Differentiable.

    Returns
    -------
    u : torch.Tensor
        Membrane [T, B, N].
    state : torch.Tensor
        The last membrane [B, N], to pass on to the next call.

    Examples
    --------
    >>> x = torch.tensor([1.0, 0.0, 2.0]).reshape(3, 1, 1)
    >>> u, last = li_sequence(x[:2], 0.5)
    >>> li_sequence(x[2:], 0.5, state=last)[0].item()
    2.25
    """
    if x.dim() != 3:
        raise ValueError(f"x must have shape [T, B, N], got {tuple(x.shape)}")
    beta = _param(beta, x, x.shape[-1], "beta")
    if state is not None:
        if tuple(state.shape) != tuple(x.shape[1:]):
            raise ValueError(f"state must have shape {list(x.shape[1:])}, got {tuple(state.shape)}")
        state = state.to(x.dtype)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, beta, state)):
        u = _LISequence.apply(x, beta, state)
    else:  # inference: no autograd node, as in _sequence
        u = _li_forward(x, beta, x.new_zeros(x.shape[1:]) if state is None else state)
    return u, (u[-1] if len(x) else (x.new_zeros(x.shape[1:]) if state is None else state))


# -- SE-adLIF (Baronig et al., Nat. Commun. 2025) ------------------------------------------------------------
def _se_torch_forward(x, w_rec, alpha, oma, beta, omb, ca, cb, theta, zero_reset, u, w, s_prev):
    """The torch path of the SE-adLIF forward: (s, h, c, u, w), c the current x [+ s_{t-1} @ W.T]; the same
    float operations in the same order as _kernels._se_forward_row."""
    s, h = torch.empty_like(x), torch.empty_like(x)
    c = torch.empty_like(x) if w_rec is not None else x
    for t, xt in enumerate(x.unbind(0)):
        ct = xt if w_rec is None else xt + s_prev @ w_rec.t()
        ht = alpha * u + oma * (ct - w)
        s_prev = (ht > theta).to(x.dtype)
        u = ht * (1 - s_prev) if zero_reset else ht - theta * s_prev
        w = beta * w + omb * (ca * u + cb * s_prev)
        s[t], h[t] = s_prev, ht
        if w_rec is not None:
            c[t] = ct
    return s, h, c, u, w


def _se_torch_backward(c, gs, gho, w_rec, alpha, oma, beta, omb, ca, cb, theta, zero_reset, surrogate, k,
                       u0, w0, s0, gu, gw):
    """The torch path of the SE-adLIF backward (see _kernels): replays from the current c."""
    hs, ups, wps = torch.empty_like(c), torch.empty_like(c), torch.empty_like(c)
    u, w = u0, w0
    for t, ct in enumerate(c.unbind(0)):
        ups[t], wps[t] = u, w
        ht = alpha * u + oma * (ct - w)
        st = (ht > theta).to(c.dtype)
        u = ht * (1 - st) if zero_reset else ht - theta * st
        w = beta * w + omb * (ca * u + cb * st)
        hs[t] = ht
    ss = (hs > theta).to(c.dtype)
    gr = torch.zeros_like(u0)
    gx = torch.empty_like(c)
    gpar = torch.zeros(5, c.shape[-1], dtype=c.dtype, device=c.device)
    for t in range(c.shape[0] - 1, -1, -1):
        ht, st = hs[t], ss[t]
        ut = ht * (1 - st) if zero_reset else ht - theta * st
        g_u = gu + omb * ca * gw
        gd = (gs[t] + gr + omb * cb * gw) * surrogate_grad(ht - theta, surrogate, k)
        gh = gd + (g_u * (1 - st) if zero_reset else g_u)
        if gho is not None:
            gh = gh + gho[t]
        gc = oma * gh
        gx[t] = gc
        gpar[0] += (gh * (ups[t] - (c[t] - wps[t]))).sum(0)
        gpar[1] += (gw * (wps[t] - (ca * ut + cb * st))).sum(0)
        gpar[2] += (gw * omb * ut).sum(0)
        gpar[3] += (gw * omb * st).sum(0)
        gpar[4] += (-gd if zero_reset else -gd - g_u * st).sum(0)
        gu = alpha * gh
        gw = beta * gw - gc
        if w_rec is not None:
            gr = gc @ w_rec
    gwr = None
    if w_rec is not None:
        n = c.shape[-1]
        s_prev = torch.cat([s0[None], ss[:-1]])
        gwr = gx.reshape(-1, n).t() @ s_prev.reshape(-1, n)
    return gx, gwr, gpar, gu, gw, gr


def _se_forward(x, weight, params, zero_reset, keep, u0, w0, s0):
    """``(s, h, c, u, w)``: spikes, membrane before reset, the current (x without recurrence; a [1, B, N]
    scratch when not ``keep``), final u, w. ``params``: alpha, 1 - alpha, beta, 1 - beta, a, b, threshold."""
    u, w = (x.new_zeros(x.shape[1:]) if t is None else t.clone() for t in (u0, w0))
    if weight is not None and s0 is None:
        s0 = x.new_zeros(x.shape[1:])
    if not _use_numba(x):
        return _se_torch_forward(x, weight, *params, zero_reset, u, w, s0)
    s = torch.empty_like(x)
    h = torch.empty_like(x) if keep else x.new_empty(1, *x.shape[1:])
    p = [_np(q) for q in params]
    if weight is None:
        K.se_ff_forward(_np(x), *p, zero_reset, s.numpy(), h.numpy(), u.numpy(), w.numpy(),
                        K.block_size(*x.shape[1:], numba.get_num_threads()))
        return s, h, x, u, w
    c = torch.empty_like(x) if keep else x.new_empty(1, *x.shape[1:])
    K.se_rec_forward(_np(x), _np(weight.t()), *p, zero_reset, s.numpy(), h.numpy(), c.numpy(), u.numpy(),
                     w.numpy(), _np(s0))
    return s, h, c, u, w


class _SEAdLIFSequence(torch.autograd.Function):
    """One autograd node for a SE-adLIF sequence. Saved: the current c (the input x without recurrence),
    from which backward replays the forward, and the initial state (None: zeros)."""

    @staticmethod
    def forward(ctx, x, weight, alpha, beta, ca, cb, theta, u0, w0, s0, zero_reset, surrogate, k, membrane):
        params = (alpha, 1 - alpha, beta, 1 - beta, ca, cb, theta)
        s, h, c, u, w = _se_forward(x, weight, params, zero_reset, True, u0, w0, s0)
        ctx.save_for_backward(c, weight, *params, u0, w0, s0)
        ctx.cfg = zero_reset, surrogate, k
        ctx.set_materialize_grads(False)
        return s, (h if membrane else None), u, w

    @staticmethod
    def backward(ctx, gs, gho, gu, gw):
        c, weight, *rest = ctx.saved_tensors
        params, state = rest[:7], rest[7:]
        zero_reset, surrogate, k = ctx.cfg
        u0, w0, s0 = _zeros_if_none(state, c)
        if gs is None:
            gs = c.new_zeros(()).expand_as(c)
        gu, gw = (torch.zeros_like(u0) if g is None else g.contiguous().clone() for g in (gu, gw))
        gwr = gs0 = None
        want_gs0 = weight is not None and ctx.needs_input_grad[9]
        if _use_numba(c):
            T, B, N = c.shape
            gx = torch.empty_like(c)
            gpar = torch.empty(B, 5, N, dtype=torch.float64)
            has_gho = gho is not None
            gho_np = _np(gho) if has_gho else _np(c[:0])
            args = ([_np(q) for q in params], zero_reset, SURROGATES[surrogate][0], k)
            if weight is None:
                K.se_ff_backward(_np(c), _np(u0), _np(w0), gs.detach().numpy(), gho_np, has_gho, *args[0], *args[1:],
                                 gx.numpy(), gpar.numpy(), gu.numpy(), gw.numpy(),
                                 K.block_size(B, N, numba.get_num_threads()))
            else:
                gwt = torch.zeros(max(1, min(B // 2, numba.get_num_threads())), N, N, dtype=c.dtype)
                gs0 = torch.empty_like(u0) if want_gs0 else u0[:0]
                K.se_rec_backward(_np(c), _np(u0), _np(w0), _np(s0), gs.detach().numpy(), gho_np, has_gho,
                                  _np(weight), *args[0], *args[1:], gx.numpy(), gpar.numpy(), gwt.numpy(), gu.numpy(),
                                  gw.numpy(), gs0.numpy(), want_gs0)
                gwr = gwt.sum(0).t()
            gpar = gpar.sum(0).to(c.dtype)
        else:
            gx, gwr, gpar, gu, gw, gs0 = _se_torch_backward(c, gs, gho, weight, *params, zero_reset, surrogate, k,
                                                            u0, w0, s0, gu, gw)
        return (gx, gwr, *gpar.unbind(0), gu if state[0] is not None else None,
                gw if state[1] is not None else None, gs0 if want_gs0 else None, None, None, None, None)


def seadlif_sequence(x, weight=None, alpha=0.8, beta=0.98, a=60.0, b=120.0, threshold=1.0, reset="zero",
                     surrogate="atan", slope=None, return_membrane=False, state=None):
    """SE-adLIF neurons: adaptive LIF with the symplectic-Euler discretisation (Baronig et al., "Advancing
    spatio-temporal processing through adaptation in spiking neural networks", Nat. Commun. 16, 2025).

    Per step t, from the state after step t-1 (membrane u, adaptation current w, spikes s)::

        h_t = alpha * u_{t-1} + (1 - alpha) * (x_t [+ s_{t-1} @ W.T] - w_{t-1})
        s_t = heaviside(h_t - threshold)
        u_t = h_t * (1 - s_t)   reset="zero" (the paper's)   or   h_t - threshold * s_t   reset="subtract"
        w_t = beta * w_{t-1} + (1 - beta) * (a * u_t + b * s_t)

    The adaptation update reads the new, reset membrane ``u_t`` (symplectic Euler; forward Euler would read
    ``u_{t-1}``). As in the paper, the reset is outside the gradient (a stop-gradient on ``s_t`` in
    ``u_t``); the spike's gradient is the surrogate ``sg'(h - threshold)`` and reaches ``w`` through ``b s_t``.

    Parameters
    ----------
    x : torch.Tensor
        Input current [T, B, N].
    weight : torch.Tensor, optional
        Recurrent weights [N, N] as in :func:`rlif_sequence`; None: feed-forward.
    alpha, beta : float or torch.Tensor
        Decays per step of the membrane and of the adaptation current, scalar or [N].
    a, b : float or torch.Tensor
        Sub-threshold coupling (membrane -> adaptation) and spike-triggered adaptation, scalar or [N]
        (the paper's ``q a`` and ``q b``).
    threshold : float or torch.Tensor
        Firing threshold, scalar or [N].
    reset, surrogate, slope, return_membrane
        As in :func:`lif_sequence`.
    state : NeuronState, optional
        ``(u, w, s)`` before the first step (``NeuronState.a`` holds ``w``); zeros when None.

    Returns
    -------
    spikes : torch.Tensor
        0/1 in the dtype of ``x``, [T, B, N].
    membrane : torch.Tensor
        ``h`` [T, B, N], only with ``return_membrane``.
    state : NeuronState
        ``(u, w, s)`` after the last step.

    Examples
    --------
    >>> x = torch.full((6, 1, 1), 3.0)
    >>> seadlif_sequence(x, alpha=0.5, beta=0.5, a=0.0, b=0.0)[0].flatten().tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    >>> spikes, state = seadlif_sequence(x, alpha=0.5, beta=0.5, a=0.0, b=2.0)  # each spike raises w
    >>> spikes.flatten().tolist(), state.a.item()
    ([1.0, 0.0, 1.0, 0.0, 1.0, 0.0], 0.65625)
    """
    k, n, weight = _check_sequence(x, weight, reset, surrogate, slope)
    alpha, beta, a, b, threshold = (_param(p, x, n, name) for p, name in
                                    ((alpha, "alpha"), (beta, "beta"), (a, "a"), (b, "b"), (threshold, "threshold")))
    zero_reset = reset == "zero"
    u0, w0, s0 = _state(state, x)
    init = (u0, w0, s0 if weight is not None else None)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                       for t in (x, weight, alpha, beta, a, b, threshold, *init)):
        s, h, u, w = _SEAdLIFSequence.apply(x, weight, alpha, beta, a, b, threshold, *init, zero_reset, surrogate, k,
                                            return_membrane)
    else:  # inference: no autograd node, as in _sequence
        params = (alpha, 1 - alpha, beta, 1 - beta, a, b, threshold)
        s, h, _, u, w = _se_forward(x, weight, params, zero_reset, return_membrane, *init)
    last = s[-1] if len(x) else (x.new_zeros(x.shape[1:]) if s0 is None else s0)
    state = NeuronState(u, w, last)
    return (s, h, state) if return_membrane else (s, state)
