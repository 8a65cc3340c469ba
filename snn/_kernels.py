"""Private numba kernels of the fused spiking layers (CPU). Public entry points: snn/functional.py.

One step of a (recurrent, adaptive) LIF neuron, state (v, a) after step t-1, spikes s:

    theta_t = theta0 + alpha * a_{t-1}                      (adaptive; else theta0)
    h_t     = beta * v_{t-1} + x_t [+ (W s_{t-1})]          membrane before reset
    s_t     = h_t > theta_t
    v_t     = h_t - theta_t s_t  (subtract)  or  h_t (1 - s_t)  (zero)
    a_t     = rho * a_{t-1} + (1 - rho) s_t

The state (v, a, s) before step 0 is an input and the state after the last step an output, so that a
sequence can run in chunks: kernels take [B, N] buffers holding the initial v, a (forward) or the
incoming gradients of the final v, a (backward) and overwrite them with the final state (forward) or
the gradients of the initial state (backward).

Forward kernels write s and h. Backward recomputes s, v, theta and a bit-exactly, from the saved h
(recurrent) or by replaying the forward from the input x (feed-forward), because the kernels repeat
the forward's float operations in the same order (numba does not contract a * b + c into an FMA
without fastmath). ``omr`` is ``1 - rho`` computed by torch, so that it rounds as in the torch path.

Backward carries dL/dv_t, dL/da_t and (recurrent) dL/ds_t from the future; per step:

    G       = dL/ds_t + (1 - rho) dL/da_t - (theta_t | h_t) dL/dv_t      (total spike gradient)
    dL/dh_t = G sg'(h_t - theta_t) + dL/dv_t (1 | 1 - s_t) [+ dL/dh_t from the membrane output]
    dL/dtheta_t = -G sg'(h_t - theta_t) - (s_t dL/dv_t | 0)

Per-neuron parameter gradients are summed over time per batch row into ``gpar[b, k, n]`` (float64),
k = beta, theta0, alpha, rho; the caller sums over rows.
"""
import math

import numba as nb
import numpy as np

FAST_SIGMOID, ATAN, TRIANGLE = 0, 1, 2


@nb.njit(cache=True, inline="always", error_model="numpy")
def _dspike(u, kind, k):
    """Surrogate derivative sg'(u) of the spike at u = h - theta (formulas: functional.SURROGATES)."""
    if kind == FAST_SIGMOID:
        q = 1.0 + k * abs(u)
        return 1.0 / (q * q)
    if kind == ATAN:
        q = 0.5 * math.pi * k * u
        return 0.5 * k / (1.0 + q * q)
    return k * max(0.0, 1.0 - k * abs(u))


def block_size(B, N, threads):
    """Neurons per parallel job of the feed-forward kernels: long rows (each row loop pays for its
    slices and overlap checks: 256 neurons run 1.5x faster than 64), but about four jobs per thread."""
    return min(N, max(64, -(-B * N // (4 * threads)) // 64 * 64))


# Inner loops index 1-D row slices from 0: with an offset index (x[t, b, n0 + i]) LLVM cannot rule
# out numba's negative-index wraparound and does not vectorise (measured 4x slower).


@nb.njit(cache=True, inline="always", error_model="numpy")
def _forward_row(xr, rr, recurrent, hr, sr, v, a, be, te, al, rh, om, adaptive, zero_reset):
    """One step for one row of neurons: reads input xr (and recurrent input rr), updates state
    v, a, writes h and s rows. Loads and stores are unconditional, see _backward_row."""
    for i in range(xr.shape[0]):
        a_i, r_i = a[i], rr[i]
        th = te[i] + al[i] * a_i if adaptive else te[i]
        ht = be[i] * v[i] + xr[i]
        if recurrent:
            ht = ht + r_i
        sp = ht > th
        hr[i] = ht
        sr[i] = 1.0 if sp else 0.0
        v[i] = (0.0 if zero_reset else ht - th) if sp else ht
        a[i] = (rh[i] * a_i + om[i] if sp else rh[i] * a_i) if adaptive else a_i


@nb.njit(cache=True, parallel=True, error_model="numpy")
def ff_forward(x, beta, theta, alpha, rho, omr, adaptive, zero_reset, s, h, vs, avs, block):
    """LIF/ALIF over x[T, B, N]; writes spikes s [T, B, N] and the pre-reset membrane h, either
    [T, B, N] or, when not wanted, a [1, B, N] scratch overwritten at every step. ``vs``, ``avs``
    [B, N]: the initial membrane and adaptation, overwritten with the final ones.

    Parallel jobs are blocks of ``block`` neurons of one batch row (see :func:`block_size`).
    """
    T, B, N = x.shape
    keep_h = h.shape[0] == T
    nblk = (N + block - 1) // block
    for job in nb.prange(B * nblk):
        b = job // nblk
        n0 = (job % nblk) * block
        n1 = min(n0 + block, N)
        # local copies: fresh arrays LLVM knows alias nothing else, as before the state was an input
        v = vs[b, n0:n1].copy()
        a = avs[b, n0:n1].copy()
        be, te, al, rh, om = beta[n0:n1], theta[n0:n1], alpha[n0:n1], rho[n0:n1], omr[n0:n1]
        for t in range(T):
            xr = x[t, b, n0:n1]
            _forward_row(xr, xr, False, h[t if keep_h else 0, b, n0:n1], s[t, b, n0:n1], v, a, be,
                         te, al, rh, om, adaptive, zero_reset)
        vs[b, n0:n1] = v
        avs[b, n0:n1] = a


@nb.njit(cache=True, error_model="numpy")
def _adaptation_history(h, b, a0, theta, alpha, rho, omr):
    """a_{t-1} for every step t of row b, replayed from the saved membrane h and a_{-1} = a0[b]."""
    T, _, N = h.shape
    hist = np.empty((T, N), h.dtype)
    a = a0[b].copy()
    for t in range(T):
        hr, hi = h[t, b], hist[t]
        for i in range(N):
            hi[i] = a[i]
            sp = hr[i] > theta[i] + alpha[i] * a[i]
            a[i] = rho[i] * a[i] + omr[i] if sp else rho[i] * a[i]
    return hist


@nb.njit(cache=True, inline="always", error_model="numpy")
def _backward_row(first, hr, hp, v0r, gsr, ghor, has_gho, apr, app, be, te, al, rh, om, adaptive,
                  zero_reset, kind, k, gv, ga, gxr, acc):
    """Backward of one step for one row: h row hr (hp: previous step, unused when ``first``; then
    v_{t-1} is the initial membrane row v0r), spike gradient gsr, membrane-output gradient ghor,
    a_{t-1} row apr (app: a_{t-2}). Writes gxr, updates the carries gv, ga and the parameter sums
    acc[4, w].

    Every load and store is unconditional (callers pass stand-in rows, non-adaptive neurons have
    alpha = rho = 0 so that a, ga and their sums stay 0): a memory access behind a runtime flag
    keeps LLVM from vectorising the loop (measured 3.5x slower).
    """
    for i in range(hr.shape[0]):
        ap, app_i, hpi, ght, v0i = apr[i], app[i], hp[i], ghor[i], v0r[i]
        te_i, al_i, rh_i, om_i, ga_i, g_v, ht = te[i], al[i], rh[i], om[i], ga[i], gv[i], hr[i]
        if not adaptive:
            ap = 0.0
        th = te_i + al_i * ap if adaptive else te_i
        sp = ht > th
        thp = te_i + al_i * app_i if adaptive else te_i
        vp = (0.0 if zero_reset else hpi - thp) if hpi > thp else hpi
        if first:
            vp = v0i
        G = gsr[i] - (ht if zero_reset else th) * g_v
        if adaptive:
            G += om_i * ga_i
        gd = G * _dspike(ht - th, kind, k)
        gh = gd + (0.0 if (zero_reset and sp) else g_v)
        if has_gho:
            gh += ght
        gth = -gd - (g_v if (sp and not zero_reset) else 0.0)
        gxr[i] = gh
        acc[0, i] += gh * vp
        acc[1, i] += gth
        acc[2, i] += gth * ap
        acc[3, i] += ga_i * (ap - (1.0 if sp else 0.0))
        ga[i] = rh_i * ga_i + al_i * gth
        gv[i] = be[i] * gh


@nb.njit(cache=True, parallel=True, error_model="numpy")
def ff_backward(x, v0, a0, gs, gho, has_gho, beta, theta, alpha, rho, omr, adaptive, zero_reset,
                kind, k, gx, gpar, gvs, gas, block):
    """BPTT of ff_forward from its input x and initial state v0, a0 [B, N]: writes gx[T, B, N] and
    gpar[B, 4, N]; ``gvs``, ``gas`` [B, N] hold dL/dv, dL/da of the final state and are overwritten
    with those of the initial state.

    Each job first replays its block's forward into a [T, block] scratch (h, and a for adaptive
    neurons): cheap, and it spares the forward a [T, B, N] membrane that backward would re-read.
    The spike gradient gs may have any strides.
    """
    T, B, N = x.shape
    nblk = (N + block - 1) // block
    for job in nb.prange(B * nblk):
        b = job // nblk
        n0 = (job % nblk) * block
        n1 = min(n0 + block, N)
        w = n1 - n0
        be, te, al, rh, om = beta[n0:n1], theta[n0:n1], alpha[n0:n1], rho[n0:n1], omr[n0:n1]
        hs = np.empty((T, w), x.dtype)
        ah = np.zeros((T if adaptive else 1, w), x.dtype)  # a_{t-1} per step; zeros: stand-in
        v0r = v0[b, n0:n1]
        v = v0r.copy()
        a = a0[b, n0:n1].copy()
        spikes = np.empty(w, x.dtype)
        for t in range(T):
            if adaptive:
                ah[t] = a
            xr = x[t, b, n0:n1]
            _forward_row(xr, xr, False, hs[t], spikes, v, a, be, te, al, rh, om, adaptive,
                         zero_reset)
        gv = gvs[b, n0:n1].copy()
        ga = gas[b, n0:n1].copy()
        g_s = np.empty(w, x.dtype)
        acc = np.zeros((4, w))
        for t in range(T - 1, -1, -1):
            g_s[:] = gs[t, b, n0:n1]  # gs may be strided (a broadcast loss gradient): copy the row
            tp = max(t - 1, 0)
            _backward_row(t == 0, hs[t], hs[tp], v0r, g_s, gho[t, b, n0:n1] if has_gho else g_s,
                          has_gho, ah[t] if adaptive else ah[0], ah[tp] if adaptive else ah[0], be, te,
                          al, rh, om, adaptive, zero_reset, kind, k, gv, ga, gx[t, b, n0:n1], acc)
        gpar[b, :, n0:n1] = acc
        gvs[b, n0:n1] = gv
        gas[b, n0:n1] = ga


@nb.njit(cache=True, error_model="numpy")
def _sum_rows(wt, spikes, idx, out):
    """out = sum of the rows wt[m] with spikes[m] != 0 (the recurrent input W s, s sparse)."""
    k = 0
    for m in range(spikes.shape[0]):  # branch-free compaction of the spiking indices
        idx[k] = m
        k += spikes[m] != 0.0
    out[:] = 0.0
    k4 = k - k % 4
    for q in range(0, k4, 4):  # four rows per pass over out, as in _vecmat
        r0, r1, r2, r3 = wt[idx[q]], wt[idx[q + 1]], wt[idx[q + 2]], wt[idx[q + 3]]
        for n in range(out.shape[0]):
            out[n] += (r0[n] + r1[n]) + (r2[n] + r3[n])
    for q in range(k4, k):
        row = wt[idx[q]]
        for n in range(out.shape[0]):
            out[n] += row[n]


@nb.njit(cache=True, parallel=True, error_model="numpy")
def rec_forward(x, wt, beta, theta, alpha, rho, omr, adaptive, zero_reset, s, h, vs, avs, s0):
    """Recurrent LIF/ALIF: like ff_forward plus W s_{t-1}, with ``wt = W.T`` contiguous and the
    spikes before step 0 in s0 [B, N].

    Rows of the batch are independent, so the parallel loop runs over them.
    """
    T, B, N = x.shape
    for b in nb.prange(B):
        v = vs[b].copy()
        a = avs[b].copy()
        rec = np.zeros(N, x.dtype)
        idx = np.empty(N, np.int64)
        for t in range(T):
            _sum_rows(wt, s[t - 1, b] if t > 0 else s0[b], idx, rec)
            _forward_row(x[t, b], rec, True, h[t, b], s[t, b], v, a, beta, theta, alpha, rho, omr,
                         adaptive, zero_reset)
        vs[b] = v
        avs[b] = a


@nb.njit(cache=True, fastmath={"contract"}, error_model="numpy")
def _vecmat(g, w, out):
    """out = g @ w for g[R, M], w[M, N]. Two rows of g and four of w per pass over out: w is loaded
    once for two rows, and out once per four FMAs (measured 3.5x faster than one row, one FMA)."""
    R, M = g.shape
    N = w.shape[1]
    out[:] = 0.0
    m4 = M - M % 4
    for r in range(0, R - 1, 2):
        o, p = out[r], out[r + 1]
        for m in range(0, m4, 4):
            a0, a1, a2, a3 = g[r, m], g[r, m + 1], g[r, m + 2], g[r, m + 3]
            c0, c1, c2, c3 = g[r + 1, m], g[r + 1, m + 1], g[r + 1, m + 2], g[r + 1, m + 3]
            w0, w1, w2, w3 = w[m], w[m + 1], w[m + 2], w[m + 3]
            for n in range(N):
                o[n] += a0 * w0[n] + a1 * w1[n] + a2 * w2[n] + a3 * w3[n]
                p[n] += c0 * w0[n] + c1 * w1[n] + c2 * w2[n] + c3 * w3[n]
        for m in range(m4, M):
            a0, c0, w0 = g[r, m], g[r + 1, m], w[m]
            for n in range(N):
                o[n] += a0 * w0[n]
                p[n] += c0 * w0[n]
    if R % 2:
        o = out[R - 1]
        for m in range(M):
            a0, w0 = g[R - 1, m], w[m]
            for n in range(N):
                o[n] += a0 * w0[n]


@nb.njit(cache=True, parallel=True, error_model="numpy")
def rec_backward(h, v0, a0, s0, gs, gho, has_gho, w, beta, theta, alpha, rho, omr, adaptive,
                 zero_reset, kind, k, gx, gpar, gwt, gvs, gas, gs0, want_gs0):
    """BPTT of rec_forward from the saved h and the initial state v0, a0, s0 [B, N]: writes gx, gpar
    and ``gwt[c]``, the part of dL/dW.T from row chunk c. The spike gradient gs may have any strides.
    ``gvs``, ``gas`` [B, N]: as in ff_backward; with ``want_gs0``, gs0 [B, N] gets dL/ds0.

    The spike gradient from step t+1 is dL/dh_{t+1} @ W, dense; the rows of a chunk step back in
    time together so that this is a matrix product. dL/dW.T gets the row dL/dh_{t+1} once per spike
    of step t.
    """
    T, B, N = h.shape
    nchunk = gwt.shape[0]
    for c in nb.prange(nchunk):
        b0, b1 = c * B // nchunk, (c + 1) * B // nchunk
        R = b1 - b0
        g_wt = gwt[c]
        ah = np.zeros((R, T if adaptive else 1, N), h.dtype)
        if adaptive:
            for r in range(R):
                ah[r] = _adaptation_history(h, b0 + r, a0, theta, alpha, rho, omr)
        gv = gvs[b0:b1].copy()
        ga = gas[b0:b1].copy()
        gsum = np.zeros((R, N), h.dtype)  # dL/ds_t: from outside plus through W at step t+1
        acc = np.zeros((R, 4, N))
        for t in range(T - 1, -1, -1):
            for r in range(R):
                gsum[r] += gs[t, b0 + r]
                b, tp = b0 + r, max(t - 1, 0)
                # rows as slices [t, b, 0:N]: h[t, b] makes this loop 1.4x slower (measured)
                _backward_row(t == 0, h[t, b, 0:N], h[tp, b, 0:N], v0[b, 0:N], gsum[r],
                              gho[t, b, 0:N] if has_gho else gsum[r], has_gho,
                              ah[r, t] if adaptive else ah[r, 0], ah[r, tp] if adaptive else ah[r, 0],
                              beta, theta, alpha, rho, omr, adaptive, zero_reset, kind, k, gv[r],
                              ga[r], gx[t, b, 0:N], acc[r])
            gh = gx[t, b0:b1]
            if t > 0 or want_gs0:
                _vecmat(gh, w, gsum)
            tp = max(t - 1, 0)
            for r in range(R):
                hp, ap, sp0 = h[tp, b0 + r], ah[r, tp if adaptive else 0], s0[b0 + r]
                for m in range(N):
                    thp = theta[m] + alpha[m] * ap[m] if adaptive else theta[m]
                    # neuron m spiked at step t-1 (before step 0: in the initial state)
                    if (hp[m] > thp) if t > 0 else (sp0[m] != 0.0):
                        row = g_wt[m]
                        for n in range(N):
                            row[n] += gh[r, n]
        gpar[b0:b1] = acc
        gvs[b0:b1] = gv
        gas[b0:b1] = ga
        if want_gs0:
            gs0[b0:b1] = gsum


@nb.njit(cache=True, parallel=True, error_model="numpy")
def li_forward(x, beta, u0, u):
    """Leaky integrator u_t = beta u_{t-1} + x_t over x[T, B, N], from u_{-1} = u0 [B, N]."""
    T, B, N = x.shape
    for b in nb.prange(B):
        ur = u0[b]
        for t in range(T):
            up, ur, xr = ur, u[t, b], x[t, b]
            for n in range(N):
                ur[n] = beta[n] * up[n] + xr[n]


@nb.njit(cache=True, parallel=True, error_model="numpy")
def li_backward(u, u0, gu, beta, gx, gbeta, gu0):
    """BPTT of li_forward: gx[T, B, N], per-row gbeta[B, N] and dL/du0 in gu0 [B, N]."""
    T, B, N = u.shape
    for b in nb.prange(B):
        g = np.zeros(N, u.dtype)
        acc = np.zeros(N)
        for t in range(T - 1, -1, -1):
            gur, gxr, up = gu[t, b], gx[t, b], u[t - 1, b] if t > 0 else u0[b]
            for n in range(N):
                g[n] = gur[n] + beta[n] * g[n]
                gxr[n] = g[n]
                acc[n] += g[n] * up[n]
        gbeta[b] = acc
        for n in range(N):
            gu0[b, n] = beta[n] * g[n]


# -- SE-adLIF: adaptive LIF, symplectic-Euler discretisation (Baronig et al., Nat. Commun. 2025) ----------------
#
# One step, state (u, w, s) after step t-1, current c_t = x_t [+ W s_{t-1}]:
#
#     h_t = alpha u_{t-1} + (1 - alpha) (c_t - w_{t-1})          membrane before reset
#     s_t = h_t > theta
#     u_t = h_t (1 - s_t)  (zero)  or  h_t - theta s_t  (subtract)   s_t under a stop-gradient here
#     w_t = beta w_{t-1} + (1 - beta) (a u_t + b s_t)              symplectic: the NEW u_t
#
# Backward replays h, u, w bit-exactly from the current c (the input x without recurrence; with it the
# forward writes c) and the initial state; ``oma``, ``omb`` are 1 - alpha, 1 - beta computed by torch.
# Carries dL/du_t, dL/dw_t (and, recurrent, dL/ds_t through W at t+1); per step:
#
#     gu      = dL/du_t + (1 - beta) a dL/dw_t                    (total membrane-after-reset gradient)
#     G       = dL/ds_t + (1 - beta) b dL/dw_t                    (total spike gradient: no reset path)
#     dL/dh_t = G sg'(h_t - theta) + gu (1 - s_t | 1) [+ dL/dh_t from the membrane output]
#     dL/dc_t = (1 - alpha) dL/dh_t,  dL/du_{t-1} = alpha dL/dh_t,  dL/dw_{t-1} = beta dL/dw_t - dL/dc_t
#
# Per-neuron parameter sums gpar[b, k, n] (float64), k = alpha, beta, a, b, theta.

@nb.njit(cache=True, inline="always", error_model="numpy")
def _se_forward_row(cr, hr, sr, u, w, al, oma, be, omb, ca, cb, th, zero_reset):
    """One SE-adLIF step for one row: current cr -> h and s rows; updates u, w in place."""
    for i in range(cr.shape[0]):
        ht = al[i] * u[i] + oma[i] * (cr[i] - w[i])
        sp = ht > th[i]
        hr[i] = ht
        sr[i] = 1.0 if sp else 0.0
        # ht - ht: an exact 0 in the dtype of h (a 0.0 literal would make ut, and w's update, float64)
        ut = (ht - ht if zero_reset else ht - th[i]) if sp else ht
        u[i] = ut
        w[i] = be[i] * w[i] + omb[i] * (ca[i] * ut + cb[i] if sp else ca[i] * ut)


@nb.njit(cache=True, inline="always", error_model="numpy")
def _se_replay(c, b, n0, n1, u0, w0, al, oma, be, omb, ca, cb, th, zero_reset, hs, ups, wps):
    """Replay the forward of neurons n0:n1 of row b from the current c and u0, w0: h_t into hs[t],
    u_{t-1}, w_{t-1} into ups[t], wps[t] ([T, n1 - n0] scratch)."""
    u = u0[b, n0:n1].copy()
    w = w0[b, n0:n1].copy()
    spikes = np.empty(n1 - n0, c.dtype)
    for t in range(c.shape[0]):
        ups[t] = u
        wps[t] = w
        _se_forward_row(c[t, b, n0:n1], hs[t], spikes, u, w, al, oma, be, omb, ca, cb, th, zero_reset)


@nb.njit(cache=True, inline="always", error_model="numpy")
def _se_backward_row(cr, hr, up, wp, gsr, ghor, has_gho, al, oma, be, omb, ca, cb, th, zero_reset, kind, k,
                     gu, gw, gcr, acc):
    """Backward of one SE-adLIF step for one row: writes dL/dc_t into gcr, updates the carries gu, gw
    and the parameter sums acc[5, w]."""
    for i in range(hr.shape[0]):
        ht, th_i, gw_i, omb_i = hr[i], th[i], gw[i], omb[i]
        sp = ht > th_i
        ut = (ht - ht if zero_reset else ht - th_i) if sp else ht
        g_u = gu[i] + omb_i * ca[i] * gw_i
        G = gsr[i] + omb_i * cb[i] * gw_i
        gd = G * _dspike(ht - th_i, kind, k)
        gh = gd + (0.0 if (zero_reset and sp) else g_u)
        if has_gho:
            gh += ghor[i]
        gc = oma[i] * gh
        gcr[i] = gc
        acc[0, i] += gh * (up[i] - (cr[i] - wp[i]))
        acc[1, i] += gw_i * (wp[i] - (ca[i] * ut + cb[i] if sp else ca[i] * ut))
        acc[2, i] += gw_i * omb_i * ut
        acc[3, i] += gw_i * omb_i if sp else 0.0
        acc[4, i] += -gd - (g_u if (sp and not zero_reset) else 0.0)
        gu[i] = al[i] * gh
        gw[i] = be[i] * gw_i - gc


@nb.njit(cache=True, parallel=True, error_model="numpy")
def se_ff_forward(x, alpha, oma, beta, omb, ca, cb, theta, zero_reset, s, h, us, ws, block):
    """SE-adLIF over x[T, B, N]: spikes s and pre-reset membrane h ([T, B, N], or a [1, B, N] scratch);
    ``us``, ``ws`` [B, N]: the initial u, w, overwritten with the final ones. Jobs as in ff_forward."""
    T, B, N = x.shape
    keep_h = h.shape[0] == T
    nblk = (N + block - 1) // block
    for job in nb.prange(B * nblk):
        b = job // nblk
        n0 = (job % nblk) * block
        n1 = min(n0 + block, N)
        u = us[b, n0:n1].copy()
        w = ws[b, n0:n1].copy()
        al, oa, be, ob = alpha[n0:n1], oma[n0:n1], beta[n0:n1], omb[n0:n1]
        a_, b_, te = ca[n0:n1], cb[n0:n1], theta[n0:n1]
        for t in range(T):
            _se_forward_row(x[t, b, n0:n1], h[t if keep_h else 0, b, n0:n1], s[t, b, n0:n1], u, w, al, oa, be,
                            ob, a_, b_, te, zero_reset)
        us[b, n0:n1] = u
        ws[b, n0:n1] = w


@nb.njit(cache=True, parallel=True, error_model="numpy")
def se_ff_backward(x, u0, w0, gs, gho, has_gho, alpha, oma, beta, omb, ca, cb, theta, zero_reset, kind, k,
                   gx, gpar, gus, gws, block):
    """BPTT of se_ff_forward from x and the initial u0, w0 [B, N]: writes gx [T, B, N] and gpar [B, 5, N];
    ``gus``, ``gws`` [B, N] hold dL/du, dL/dw of the final state and get those of the initial state."""
    T, B, N = x.shape
    nblk = (N + block - 1) // block
    for job in nb.prange(B * nblk):
        b = job // nblk
        n0 = (job % nblk) * block
        n1 = min(n0 + block, N)
        m = n1 - n0
        al, oa, be, ob = alpha[n0:n1], oma[n0:n1], beta[n0:n1], omb[n0:n1]
        a_, b_, te = ca[n0:n1], cb[n0:n1], theta[n0:n1]
        hs = np.empty((T, m), x.dtype)
        ups = np.empty((T, m), x.dtype)
        wps = np.empty((T, m), x.dtype)
        _se_replay(x, b, n0, n1, u0, w0, al, oa, be, ob, a_, b_, te, zero_reset, hs, ups, wps)
        gu = gus[b, n0:n1].copy()
        gw = gws[b, n0:n1].copy()
        g_s = np.empty(m, x.dtype)
        acc = np.zeros((5, m))
        for t in range(T - 1, -1, -1):
            g_s[:] = gs[t, b, n0:n1]  # gs may be strided: copy the row
            _se_backward_row(x[t, b, n0:n1], hs[t], ups[t], wps[t], g_s, gho[t, b, n0:n1] if has_gho else g_s,
                             has_gho, al, oa, be, ob, a_, b_, te, zero_reset, kind, k, gu, gw, gx[t, b, n0:n1], acc)
        gpar[b, :, n0:n1] = acc
        gus[b, n0:n1] = gu
        gws[b, n0:n1] = gw


@nb.njit(cache=True, parallel=True, error_model="numpy")
def se_rec_forward(x, wt, alpha, oma, beta, omb, ca, cb, theta, zero_reset, s, h, c, us, ws, s0):
    """Recurrent SE-adLIF: current c_t = x_t + W s_{t-1} (``wt = W.T`` contiguous, s0 [B, N] the spikes
    before step 0), written into c ([T, B, N] for backward, or a [1, B, N] scratch); else as
    se_ff_forward. Parallel over batch rows."""
    T, B, N = x.shape
    keep_h, keep_c = h.shape[0] == T, c.shape[0] == T
    for b in nb.prange(B):
        u = us[b].copy()
        w = ws[b].copy()
        rec = np.zeros(N, x.dtype)
        idx = np.empty(N, np.int64)
        for t in range(T):
            _sum_rows(wt, s[t - 1, b] if t > 0 else s0[b], idx, rec)
            cr, xr = c[t if keep_c else 0, b], x[t, b]
            for n in range(N):
                cr[n] = xr[n] + rec[n]
            _se_forward_row(cr, h[t if keep_h else 0, b], s[t, b], u, w, alpha, oma, beta, omb, ca, cb, theta,
                            zero_reset)
        us[b] = u
        ws[b] = w


@nb.njit(cache=True, parallel=True, error_model="numpy")
def se_rec_backward(c, u0, w0, s0, gs, gho, has_gho, wmat, alpha, oma, beta, omb, ca, cb, theta, zero_reset,
                    kind, k, gx, gpar, gwt, gus, gws, gs0, want_gs0):
    """BPTT of se_rec_forward from its current c and the initial u0, w0, s0 [B, N]: gx = dL/dc (= dL/dx),
    gpar, and ``gwt[j]`` the part of dL/dW.T from row chunk j; gus, gws as in se_ff_backward; with
    ``want_gs0`` dL/ds0 into gs0. Chunks of rows step back in time together (see rec_backward)."""
    T, B, N = c.shape
    nchunk = gwt.shape[0]
    for j in nb.prange(nchunk):
        b0, b1 = j * B // nchunk, (j + 1) * B // nchunk
        R = b1 - b0
        g_wt = gwt[j]
        hs = np.empty((R, T, N), c.dtype)
        ups = np.empty((R, T, N), c.dtype)
        wps = np.empty((R, T, N), c.dtype)
        for r in range(R):
            _se_replay(c, b0 + r, 0, N, u0, w0, alpha, oma, beta, omb, ca, cb, theta, zero_reset, hs[r], ups[r],
                       wps[r])
        gu = gus[b0:b1].copy()
        gw = gws[b0:b1].copy()
        gsum = np.zeros((R, N), c.dtype)  # dL/ds_t: from outside plus through W at step t+1
        acc = np.zeros((R, 5, N))
        for t in range(T - 1, -1, -1):
            for r in range(R):
                b = b0 + r
                gsum[r] += gs[t, b]
                _se_backward_row(c[t, b, 0:N], hs[r, t], ups[r, t], wps[r, t], gsum[r],
                                 gho[t, b, 0:N] if has_gho else gsum[r], has_gho, alpha, oma, beta, omb, ca, cb,
                                 theta, zero_reset, kind, k, gu[r], gw[r], gx[t, b, 0:N], acc[r])
            gc = gx[t, b0:b1]
            if t > 0 or want_gs0:
                _vecmat(gc, wmat, gsum)
            for r in range(R):
                hp, sp0 = hs[r, t - 1] if t > 0 else hs[r, 0], s0[b0 + r]
                for m in range(N):
                    if (hp[m] > theta[m]) if t > 0 else (sp0[m] != 0.0):  # m spiked at step t-1
                        row = g_wt[m]
                        for n in range(N):
                            row[n] += gc[r, n]
        gpar[b0:b1] = acc
        gus[b0:b1] = gu
        gws[b0:b1] = gw
        if want_gs0:
            gs0[b0:b1] = gsum
