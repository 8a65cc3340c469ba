"""Private numba kernels of the spiketrum encoder: matching pursuit over a gammatone dictionary.

State of one chunk of T onsets:
- C[m, tau]  correlation of the residual with kernel m placed at onset tau (float32 or float64);
- r          the residual itself (float64), from the chunk's first sample on;
- h          kernel cross-correlations, flattened: a spike (k, tau', s) changes C[m, tau' + d] by
             -s * h[hstart[k, m] + d - hlo[k, m]] for d in [hlo[k, m], hlo[k, m] + hlen[k, m]);
             the exact table keeps every nonzero term, the fast one only the non-negligible ones;
- bmax[m, b] the max of |C[m, .]| over block b of B samples (as bits, see _bits_max); smax the same
             over S blocks.
The argmax reads M x T / (B S) superblock maxima, then locates the sample inside one block. Ties go
to the first (kernel, onset) in row-major order, exactly as np.argmax on w |C| would.
"""
import numba as nb
import numpy as np

U = np.uint64
B = 64  # samples per block
S = 64  # blocks per superblock


# Maxima of |C| are taken on the bit patterns: for IEEE floats, |x| as an integer (sign bit masked
# off) orders exactly like |x|, and integer max reductions vectorise where float ones do not.
@nb.njit(cache=True, nogil=True)
def _bits_max(bits, t0, t1, mask):
    best = bits[0] & 0
    for t in range(U(t0), U(t1)):
        best = max(best, bits[t] & mask)
    return best


@nb.njit(cache=True, nogil=True)
def _refresh(Ci, m, lo, hi, mask, bmax, smax):
    """Recompute the block and superblock maxima of kernel m that cover samples lo:hi."""
    T = Ci.shape[1]
    b0, b1 = lo // B, (hi - 1) // B
    for b in range(b0, b1 + 1):
        bmax[m, b] = _bits_max(Ci[m], b * B, min(b * B + B, T), mask)
    nblk = bmax.shape[1]
    for sb in range(b0 // S, b1 // S + 1):
        smax[m, sb] = _bits_max(bmax[m], sb * S, min(sb * S + S, nblk), mask)


@nb.njit(cache=True, nogil=True)
def _range_max(Ci, m, lo, hi, mask, bmax, smax):
    """Bits of max |C[m, t]| over t in [lo, hi), reading whole blocks and superblocks from the summaries."""
    T = Ci.shape[1]
    row = Ci[m]
    b0, b1 = -(-lo // B), (-(-T // B) if hi == T else hi // B)  # whole blocks; a block ending at T is whole
    if b1 <= b0:
        return _bits_max(row, lo, hi, mask)
    best = max(_bits_max(row, lo, b0 * B, mask), _bits_max(row, b1 * B, hi, mask))
    s0, s1 = -(-b0 // S), (-(-b1 // S) if hi == T else b1 // S)
    if s1 <= s0:
        return max(best, _bits_max(bmax[m], b0, b1, mask))
    best = max(best, _bits_max(bmax[m], b0, s0 * S, mask), _bits_max(bmax[m], s1 * S, b1, mask))
    return max(best, _bits_max(smax[m], s0, s1, mask))


@nb.njit(cache=True, nogil=True)
def _locate(C, w, m, lo, hi, value, bmax, smax, cvi, cvf):
    """First t in [lo, hi) with w_m |C[m, t]| == value, the range's max (np.argmax's tie rule)."""
    row = C[m]
    t = lo
    while t < hi:
        if t % (B * S) == 0:
            cvi[0] = smax[m, t // (B * S)]
            if w[m] * cvf[0] < value:
                t += B * S
                continue
        if t % B == 0:
            cvi[0] = bmax[m, t // B]
            if w[m] * cvf[0] < value:
                t += B
                continue
        if w[m] * abs(row[t]) == value:
            return t
        t += 1
    return -1


@nb.njit(cache=True, nogil=True, fastmath={"contract"})
def _subtract(C, Ci, h, hstart, hlo, hlen, k, tau, s, mask, bmax, smax):
    """Remove spike (k, tau, s) from every kernel's correlation and refresh the maxima it touched."""
    M, T = C.shape
    sv = np.empty(1, C.dtype)
    sv[0] = s  # the update runs in C's precision
    for m in range(M):
        n = hlen[k, m]
        a = tau + hlo[k, m]
        j0, j1 = max(0, -a), min(n, T - a)
        if j1 <= j0:
            continue
        row = C[m]
        dst = U(a + j0)
        src = U(hstart[k, m] + j0)
        # unsigned indices keep numba's wraparound checks out of the loop, so it vectorises
        for j in range(U(j1 - j0)):
            row[dst + j] -= sv[0] * h[src + j]
        _refresh(Ci, m, a + j0, a + j1, mask, bmax, smax)


@nb.njit(cache=True, nogil=True)
def matching_pursuit(C, Ci, mask, r, phi, lengths, h, hstart, hlo, hlen, w, budgets, frame_len, min_energy, energy,
                     refine, drift_tol, max_spikes):
    """Greedy matching pursuit over the onsets of one chunk; C, r and budgets are updated in place.

    ``Ci`` is C viewed as integers of its width and ``mask`` that width's all-but-sign bits.
    budgets[f] spikes are taken with onsets in frame f = [f*frame_len, (f+1)*frame_len), and counted
    down as they are. Pursuit stops once the residual energy falls to min_energy, or nothing
    correlates any more.

    ``refine`` (for an approximate C) takes each amplitude from the residual itself, s = <r, phi_k>,
    so C only decides which atom comes next. When C at the chosen atom has drifted from s by more
    than ``drift_tol`` times |s|, pursuit returns early with that atom's onset as ``resync_at``: the
    caller recomputes C around it from the residual and calls again, which continues exactly where
    this call stopped.

    Returns (kernel, tau, amplitude, residual_energy_after_each_spike, resync_at or -1).
    """
    M, T = C.shape
    nblk = (T + B - 1) // B
    bmax = np.empty((M, nblk), Ci.dtype)
    smax = np.empty((M, (nblk + S - 1) // S), Ci.dtype)
    cvi = np.empty(1, Ci.dtype)
    cvf = cvi.view(C.dtype)  # reinterprets maxima bits as floats
    for m in range(M):
        _refresh(Ci, m, 0, T, mask, bmax, smax)
    kern = np.empty(max_spikes, dtype=np.int64)
    taus = np.empty(max_spikes, dtype=np.int64)
    amps = np.empty(max_spikes)
    res = np.empty(max_spikes)
    n = 0
    for f in range(budgets.shape[0]):
        lo = f * frame_len
        hi = min(lo + frame_len, T)
        while budgets[f] > 0:
            if energy <= min_energy or n >= max_spikes:
                return kern[:n], taus[:n], amps[:n], res[:n], -1
            best, k = 0.0, -1
            for m in range(M):
                cvi[0] = _range_max(Ci, m, lo, hi, mask, bmax, smax)
                v = w[m] * cvf[0]
                if v > best:
                    best, k = v, m
            if k < 0:
                break  # nothing left to take in this frame
            tau = _locate(C, w, k, lo, hi, best, bmax, smax, cvi, cvf)
            L = lengths[k]
            if refine:
                s = 0.0
                for j in range(L):
                    s += r[tau + j] * phi[k, j]
                if abs(C[k, tau] - s) > drift_tol * abs(s):
                    return kern[:n], taus[:n], amps[:n], res[:n], tau
            else:
                s = C[k, tau]
            for j in range(L):
                r[tau + j] -= s * phi[k, j]
            _subtract(C, Ci, h, hstart, hlo, hlen, k, tau, s, mask, bmax, smax)
            if refine:  # the residual is now orthogonal to this atom: clear C's drift at the spot
                C[k, tau] = 0.0
                _refresh(Ci, k, tau, tau + 1, mask, bmax, smax)
            energy -= s * s
            kern[n], taus[n], amps[n], res[n] = k, tau, s, energy
            budgets[f] -= 1
            n += 1
    return kern[:n], taus[:n], amps[:n], res[:n], -1


@nb.njit(cache=True, nogil=True)
def lloyd_max(v, starts, levels, iterations):
    """Lloyd-Max quantisers of the sorted segments v[starts[m]:starts[m+1]], one per kernel m.

    Starts from equal-count quantiles; returns the representatives q [M, levels], ascending (a
    level no value falls into keeps its previous representative). Centroids come from prefix sums,
    so an iteration costs O(levels log n) per kernel.
    """
    M = starts.size - 1
    cs = np.zeros(v.size + 1)
    for i in range(v.size):
        cs[i + 1] = cs[i] + v[i]
    q = np.zeros((M, levels))
    bounds = np.empty(levels + 1, np.int64)
    for m in range(M):
        s, e = starts[m], starts[m + 1]
        if e == s:
            continue
        for j in range(levels):
            q[m, j] = v[s + min(int((j + 0.5) / levels * (e - s)), e - s - 1)]
        for _ in range(iterations):
            bounds[0], bounds[levels] = s, e
            for j in range(1, levels):
                bounds[j] = s + np.searchsorted(v[s:e], (q[m, j - 1] + q[m, j]) / 2, side="right")
            changed = False
            for j in range(levels):
                n = bounds[j + 1] - bounds[j]
                if n > 0:
                    c = (cs[bounds[j + 1]] - cs[bounds[j]]) / n
                    changed |= c != q[m, j]
                    q[m, j] = c
            if not changed:
                break
    return q
