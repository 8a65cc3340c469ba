"""Slow, obviously correct matching pursuit: recomputes correlations from the residual itself."""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def slow_mp(x, phi, lengths, n_spikes, gains=None):
    """Return [(kernel, onset, amplitude)], residual energies after each spike, final residual."""
    M, lmax = phi.shape
    N = x.size
    w = np.ones(M) if gains is None else np.asarray(gains, float)
    r = np.concatenate([np.asarray(x, float), np.zeros(lmax)])  # atoms may run past the end

    def corr(m, lo, hi):
        k = phi[m, : lengths[m]]
        return sliding_window_view(r[lo : hi + k.size - 1], k.size) @ k

    C = np.stack([corr(m, 0, N) for m in range(M)])
    spikes, energies = [], []
    for _ in range(n_spikes):
        m, tau = divmod(int(np.argmax(np.abs(C) * w[:, None])), N)
        s = C[m, tau]
        if s == 0:
            break
        r[tau : tau + lengths[m]] -= s * phi[m, : lengths[m]]
        for j in range(M):
            lo, hi = max(0, tau - lengths[j] + 1), min(N, tau + lengths[m])
            C[j, lo:hi] = corr(j, lo, hi)
        spikes.append((m, tau, s))
        energies.append(float(r @ r))
    return spikes, np.array(energies), r
