"""Private numba kernels of the cochlea. Public, validated entry points live in filterbank.py.

How the biquad cascade gets SIMD across channels, in numba:
- coefficients and state of one block of W channels live in ONE workspace array at offsets that are
  compile-time multiples of W, so LLVM proves the accesses independent without runtime alias checks;
- every index is unsigned, which removes numba's negative-index wraparound select; with it the
  addresses are not affine and LLVM does not vectorise at all (measured: ~200x vs ~1270x real time).
"""
import numba as nb
import numpy as np

U = np.uint64
W = U(32)  # channels per block: two AVX-512 float32 vectors (measured best of 16/32/64)
TB = U(64)  # samples computed time-major into an L1-sized scratch before the transposed write-out
N_COEF = 7  # b0, b1 of each of the 4 sections, d1, d2
N_STATE = 8  # (z1, z2) of each section


@nb.njit(cache=True, nogil=True, fastmath={"contract"})
def _gammatone_block(x, coef, z, out, c0, c1):
    """Filter x[N] through the gammatone cascades of channels c0:c1 (at most W), updating z.

    Slaney's four sections share b0 and the pole pair and have b2 = 0; only b1 differs, so one
    channel needs 7 coefficients instead of 20, which halves the loads of the inner loop. Each
    section is transposed direct form II with ``a1 = -2 + d1`` and ``a2 = 1 - d2``: for poles near
    z = 1 (low centre frequency, high sample rate) a1 and a2 round badly in float32, while the small
    d1 and d2 keep full relative precision.

    coef[7, C] rows: b0, b1 (sections 0..3), d1, d2. z[8, C] rows: z1, z2 of sections 0..3.
    """
    n = U(x.shape[0])
    width = U(c1 - c0)
    cu = U(c0)
    S = U(N_COEF) * W
    ws = np.zeros((N_COEF + N_STATE) * W, dtype=coef.dtype)
    for i in range(U(N_COEF)):
        for j in range(width):
            ws[i * W + j] = coef[i, cu + j]
    for i in range(U(N_STATE)):
        for j in range(width):
            ws[S + i * W + j] = z[i, cu + j]
    buf = np.empty(TB * W, dtype=out.dtype)
    for t0 in range(U(0), n, TB):
        t1 = min(t0 + TB, n)
        for t in range(t0, t1):
            xt = x[t]
            for j in range(W):
                b0 = ws[j]
                d1 = ws[U(5) * W + j]
                d2 = ws[U(6) * W + j]
                v = xt
                for s in range(U(4)):  # unrolled by LLVM, so every offset stays a multiple of W
                    q = S + s * U(2) * W + j
                    y = b0 * v + ws[q]
                    ws[q] = ws[(U(1) + s) * W + j] * v + (y + y) - d1 * y + ws[q + W]
                    ws[q + W] = d2 * y - y
                    v = y
                buf[(t - t0) * W + j] = v
        for j in range(width):
            row = out[cu + j]
            for t in range(t0, t1):
                row[t] = buf[(t - t0) * W + j]
    for i in range(U(N_STATE)):
        for j in range(width):
            z[i, cu + j] = ws[S + i * W + j]


@nb.njit(cache=True, parallel=True, nogil=True)
def gammatone_cascade(x, coef, z, out):
    """x[B, N], coef[7, C], z[B, 8, C] (updated in place), out[B, C, N]."""
    n_batch = x.shape[0]
    n_ch = coef.shape[1]
    w = int(W)
    n_blocks = (n_ch + w - 1) // w
    for task in nb.prange(n_batch * n_blocks):
        b = task // n_blocks
        c0 = (task % n_blocks) * w
        _gammatone_block(x[b], coef, z[b], out[b], c0, min(c0 + w, n_ch))
