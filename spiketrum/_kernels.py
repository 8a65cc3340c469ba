"""Private numba kernels of the spiketrum encoder: matching pursuit over a gammatone dictionary.

State of one encoding:
- C[m, tau]   correlation of the residual with kernel m placed at sample tau (tau in [0, T));
- G[m, k, d]  kernel cross-correlation sum_t phi_m[t] phi_k[t - (d - D)], with D = Lmax - 1, so a
              spike (k, tau', s) changes C[m, tau] by -s * G[m, k, tau' - tau + D];
- bmax/bpos   per kernel, the max of |w_m C[m, .]| over each block of B samples and where it is;
- smax/sblk   per kernel, the max over each superblock of S blocks and which block holds it.
The argmax over all kernels then reads M x T / (B S) superblocks instead of M x T samples.
Ties go to the first (kernel, sample) in row-major order, as with np.argmax on |w C|.
"""
import numba as nb
import numpy as np

U = np.uint64
B = 64  # samples per block
S = 64  # blocks per superblock


@nb.njit(cache=True, nogil=True)
def _refresh_blocks(C, w, m, lo, hi, bmax, bpos, smax, sblk):
    """Recompute block and superblock maxima of kernel m for samples lo:hi."""
    T = C.shape[1]
    b0, b1 = lo // B, (hi - 1) // B
    for b in range(b0, b1 + 1):
        t0 = b * B
        t1 = min(t0 + B, T)
        best = -1.0
        pos = t0
        row = C[m]
        for t in range(t0, t1):
            a = abs(row[t])
            if a > best:
                best = a
                pos = t
        bmax[m, b] = best * w[m]
        bpos[m, b] = pos
    nblk = bmax.shape[1]
    for sb in range(b0 // S, b1 // S + 1):
        j0 = sb * S
        j1 = min(j0 + S, nblk)
        best = -1.0
        blk = j0
        for j in range(j0, j1):
            if bmax[m, j] > best:
                best = bmax[m, j]
                blk = j
        smax[m, sb] = best
        sblk[m, sb] = blk


@nb.njit(cache=True, nogil=True)
def _argmax(C, w, lo, hi, bmax, bpos, smax, sblk):
    """Position (m, tau) of the max of |w_m C[m, tau]| over tau in [lo, hi); returns (-1, -1, 0) if empty."""
    M = C.shape[0]
    best = -1.0
    bm, bt = -1, -1
    # whole superblocks inside [lo, hi) come from the summary; the partial ends are scanned
    first_sb = (lo + B * S - 1) // (B * S)
    last_sb = hi // (B * S)  # exclusive
    for m in range(M):
        wm = w[m]
        row = C[m]
        if first_sb < last_sb:
            for t in range(lo, first_sb * B * S):
                a = abs(row[t]) * wm
                if a > best:
                    best, bm, bt = a, m, t
            for sb in range(first_sb, last_sb):
                if smax[m, sb] > best:
                    best, bm, bt = smax[m, sb], m, bpos[m, sblk[m, sb]]
            for t in range(last_sb * B * S, hi):
                a = abs(row[t]) * wm
                if a > best:
                    best, bm, bt = a, m, t
        else:
            for t in range(lo, hi):
                a = abs(row[t]) * wm
                if a > best:
                    best, bm, bt = a, m, t
    return bm, bt, best


@nb.njit(cache=True, nogil=True, fastmath={"contract"})
def _subtract(C, G, lengths, k, tau, s):
    """Remove spike (k, tau, s) from every kernel's correlation C[m, tau - L_m + 1 : tau + L_k]."""
    M, T = C.shape
    D = (G.shape[2] + 1) // 2 - 1
    lk = lengths[k]
    for m in range(M):
        lo = max(tau - lengths[m] + 1, 0)
        hi = min(tau + lk, T)  # exclusive
        g = G[m, k]
        row = C[m]
        # unsigned indices keep numba's wraparound check out of the loop, so it vectorises
        base = U(tau + D)
        for t in range(U(lo), U(hi)):
            row[t] -= s * g[base - t]


@nb.njit(cache=True, nogil=True)
def matching_pursuit(C, G, lengths, w, budgets, frame_len, min_energy, energy, max_spikes):
    """Greedy matching pursuit on the correlation map C (modified in place).

    budgets[f] spikes are taken with onsets in frame f = [f*frame_len, (f+1)*frame_len); a single
    frame spanning all of C gives a plain total count. Pursuit also stops once the residual energy
    falls to min_energy (residual SNR target) or the best correlation is exactly 0 (nothing left).

    Returns (kernel, tau, amplitude, residual_energy_after_each_spike, n) with the first n valid.
    """
    M, T = C.shape
    nblk = (T + B - 1) // B
    nsb = (nblk + S - 1) // S
    bmax = np.empty((M, nblk))
    bpos = np.empty((M, nblk), dtype=np.int64)
    smax = np.empty((M, nsb))
    sblk = np.empty((M, nsb), dtype=np.int64)
    for m in range(M):
        _refresh_blocks(C, w, m, 0, T, bmax, bpos, smax, sblk)
    kern = np.empty(max_spikes, dtype=np.int64)
    taus = np.empty(max_spikes, dtype=np.int64)
    amps = np.empty(max_spikes)
    res = np.empty(max_spikes)
    n = 0
    done = False
    for f in range(budgets.shape[0]):
        lo = f * frame_len
        hi = min(lo + frame_len, T)
        for _ in range(budgets[f]):
            if energy <= min_energy or n >= max_spikes:
                done = True
                break
            m, tau, best = _argmax(C, w, lo, hi, bmax, bpos, smax, sblk)
            if m < 0 or best <= 0.0:
                break
            s = C[m, tau]
            _subtract(C, G, lengths, m, tau, s)
            for j in range(M):
                _refresh_blocks(C, w, j, max(tau - lengths[j] + 1, 0), min(tau + lengths[m], T), bmax, bpos, smax, sblk)
            energy -= s * s
            kern[n], taus[n], amps[n], res[n] = m, tau, s, energy
            n += 1
        if done:
            break
    return kern[:n], taus[:n], amps[:n], res[:n]
