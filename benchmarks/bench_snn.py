"""Fused SNN layers against peer libraries: forward + backward time, memory saved for backward, spikes.

Task (as in the peers' survey): x[T=100, B=32, 128] Bernoulli(0.3) -> Linear(128 -> 256) -> LIF
(beta 0.9, threshold 1, subtract reset), loss = sum of spikes, backward. Recurrent task: the same
with 256 -> 256 recurrent weights. Peers run if importable (SpikingJelly, snnTorch, Norse):

    pip install --no-deps spikingjelly snntorch norse loguru nir nirtorch h5py

(--no-deps: SpikingJelly 2.0 otherwise replaces torch with a CUDA build; loguru is SpikingJelly's,
nir/nirtorch/h5py Norse's import-time dependencies.)

Each variant runs in its own process, ``--repeats`` times interleaved with the others: warm-up, then
``--iters`` timed iterations; the table gives the median over processes of each process's median
(min-max in brackets). Threads: the machine default for torch and numba, printed in the header.
"saved MB" = bytes of the tensors autograd keeps for backward, deduplicated by storage.

    python benchmarks/bench_snn.py [--repeats 3] [--iters 20] [--only ours,norse-rec]
"""
import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

T, B, N_IN, N = 100, 32, 128, 256
BETA, TAU = 0.9, 10.0  # SpikingJelly's decay is 1 - 1/tau
TAU_MS = -1.0 / math.log(BETA)  # ours, at bins of 1 ms: a decay of exp(-1 / TAU_MS) = BETA per step


def data():
    g = torch.Generator().manual_seed(0)
    return (torch.rand(T, B, N_IN, generator=g) < 0.3).float()


def linear(scale=1.0):
    torch.manual_seed(0)
    lin = nn.Linear(N_IN, N)
    with torch.no_grad():
        lin.weight *= scale
        lin.bias *= scale
    return lin


# -- variants: name -> builder returning a function x -> spikes [T, B, N] --------------------------
def ours():
    import snn

    lin, lif = linear(), snn.LIF(N, dt=1.0, tau_mem=TAU_MS)
    return lambda x: lif(lin(x))[0]


def ours_rec():
    import snn

    lin, rlif = linear(), snn.RLIF(N, dt=1.0, tau_mem=TAU_MS)
    return lambda x: rlif(lin(x))[0]


def spikingjelly():
    from spikingjelly.activation_based import layer, neuron, surrogate

    lin = layer.Linear(N_IN, N, step_mode="m")
    lin.load_state_dict(linear().state_dict())
    lif = neuron.LIFNode(tau=TAU, decay_input=False, v_threshold=1.0, v_reset=None,
                         surrogate_function=surrogate.ATan(), step_mode="m")

    def run(x):
        lif.reset()
        return lif(lin(x))
    return run


def spikingjelly_rec():
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    lin = linear()
    rec = layer.LinearRecurrentContainer(
        neuron.LIFNode(tau=TAU, decay_input=False, v_threshold=1.0, v_reset=None,
                       surrogate_function=surrogate.ATan(), step_mode="s"), N, N, step_mode="s")

    def run(x):
        functional.reset_net(rec)  # the container's last output and the neurons' membranes
        return torch.stack([rec(c) for c in lin(x).unbind(0)])
    return run


def snntorch(reset_delay=True):
    import snntorch as st

    lin, lif = linear(), st.Leaky(beta=BETA, threshold=1.0, reset_mechanism="subtract",
                                  reset_delay=reset_delay)

    def run(x):
        mem, out = lif.init_leaky(), []
        for c in lin(x).unbind(0):  # unbind, not cur[t]: the peers' survey's fastest snnTorch use
            spk, mem = lif(c, mem)
            out.append(spk)
        return torch.stack(out)
    return run


def snntorch_rec():
    import snntorch as st

    lin, lif = linear(), st.RLeaky(beta=BETA, linear_features=N, all_to_all=True, threshold=1.0,
                                   reset_mechanism="subtract")

    def run(x):
        spk, mem = lif.init_rleaky()
        out = []
        for c in lin(x).unbind(0):
            spk, mem = lif(c, spk, mem)
            out.append(spk)
        return torch.stack(out)
    return run


def norse():
    from norse.torch import LIFBoxCell, LIFBoxParameters
    from norse.torch.functional.reset import reset_subtract

    # v += dt tau_mem_inv (i - v) = 0.9 v + 0.1 i: a 10x larger input current gives our LIF
    lin = linear(scale=1.0 / (1e-3 * 100.0))
    cell = LIFBoxCell(LIFBoxParameters(tau_mem_inv=torch.as_tensor(100.0), v_th=torch.as_tensor(1.0),
                                       reset_method=reset_subtract))

    def run(x):
        state, out = None, []
        for c in lin(x).unbind(0):
            z, state = cell(c, state)
            out.append(z)
        return torch.stack(out)
    return run


def norse_rec():
    from norse.torch import LIFRecurrent

    rec = LIFRecurrent(N_IN, N)  # current-based LIF: owns the input and the recurrent weights
    return lambda x: rec(x)[0]


VARIANTS = {
    "ours": ("fused LIF (this package)", ours),
    "spikingjelly": ("SpikingJelly LIFNode(step_mode='m')", spikingjelly),
    "snntorch": ("snnTorch Leaky, unbind loop", snntorch),
    "norse": ("Norse LIFBoxCell loop (subtract reset)", norse),
    "ours-rec": ("fused RLIF (this package)", ours_rec),
    "norse-rec": ("Norse LIFRecurrent (current-based LIF)", norse_rec),
    "spikingjelly-rec": ("SpikingJelly LinearRecurrentContainer(LIFNode)", spikingjelly_rec),
    "snntorch-rec": ("snnTorch RLeaky(all_to_all)", snntorch_rec),
}


def saved_bytes(fn, x):
    storages = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return sum(storages.values())


def child(*args):
    """Run this script with ``args`` in a fresh process; its last stdout line as JSON, or the
    last line of its error."""
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    if proc.returncode:
        return None, proc.stderr.strip().splitlines()[-1][:100]
    return json.loads(proc.stdout.strip().splitlines()[-1]), None


def measure(name, iters):
    """Child process: time one variant; print one JSON line."""
    fn = VARIANTS[name][1]()
    x = data()

    def step():
        s = fn(x)
        s.sum().backward()
        return s

    for _ in range(3):
        s = step()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    with torch.no_grad():
        fwd = []
        for _ in range(iters):
            t0 = time.perf_counter()
            fn(x)
            fwd.append(time.perf_counter() - t0)
    print(json.dumps({"ms": 1e3 * statistics.median(times), "fwd_ms": 1e3 * statistics.median(fwd),
                      "saved": saved_bytes(fn, x), "rate": s.mean().item()}))


def spike_check():
    """Spikes of each peer with our semantics (decay, then threshold, subtract reset) vs ours.

    SpikingJelly computes the decay as v - v / tau and Norse as v + 0.1 (10 i - v): roundings that
    differ from 0.9 v + i in the last bit, so a spike right at threshold could differ. snnTorch
    (reset_delay=False) subtracts the threshold once more at the next step when the membrane is
    still above it after a reset (measured: every differing neuron starts so).
    """
    x = data()
    with torch.no_grad():
        ref = ours()(x)
        peers = {"spikingjelly": spikingjelly, "snntorch": lambda: snntorch(reset_delay=False),
                 "norse": norse}
        out = {}
        for name, build in peers.items():
            try:
                s = build()(x)
            except ImportError as err:
                out[name] = f"not installed ({err.name})"
                continue
            diff = (s != ref).float().mean().item()
            out[name] = "identical" if diff == 0 else f"{100 * diff:.4f}% of spikes differ"
    print(json.dumps(out))


def header():
    import numba

    return (f"torch {torch.__version__}, {torch.get_num_threads()} torch threads, numba "
            f"{numba.__version__} with {numba.get_num_threads()} threads; T={T}, B={B}, "
            f"Linear({N_IN}->{N})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="processes per variant")
    ap.add_argument("--iters", type=int, default=20, help="timed iterations per process")
    ap.add_argument("--only", help="comma-separated variants (default: all)")
    ap.add_argument("--run", help=argparse.SUPPRESS)
    ap.add_argument("--check", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run:
        return measure(args.run, args.iters)
    if args.check:
        return spike_check()

    names = args.only.split(",") if args.only else list(VARIANTS)
    print(header())
    results = {n: [] for n in names}
    skipped = {}
    for _ in range(args.repeats):  # interleaved, so that machine noise hits every variant alike
        for name in names:
            if name not in skipped:
                result, error = child("--run", name, "--iters", str(args.iters))
                if error:
                    skipped[name] = error
                else:
                    results[name].append(result)

    checks, error = child("--check")
    checks = checks or {"spikingjelly": error, "snntorch": error, "norse": error}
    rows = [("variant", "fwd+bwd ms", "range", "fwd ms", "vs ours", "saved MB", "spike rate", "spikes vs ours")]
    for group in ("", "-rec"):
        base = results.get("ours" + group)
        base_ms = statistics.median(r["ms"] for r in base) if base else None
        for name in names:
            if name.endswith("-rec") != bool(group):
                continue
            if name in skipped:
                rows.append((VARIANTS[name][0], "skipped: " + skipped[name], "", "", "", "", "", ""))
                continue
            runs = results[name]
            ms = statistics.median(r["ms"] for r in runs)
            rows.append((
                VARIANTS[name][0], f"{ms:.1f}",
                f"{min(r['ms'] for r in runs):.1f}-{max(r['ms'] for r in runs):.1f}",
                f"{statistics.median(r['fwd_ms'] for r in runs):.1f}",
                f"{ms / base_ms:.2f}x" if base_ms else "",
                f"{runs[0]['saved'] / 2**20:.2f}", f"{runs[0]['rate']:.3f}",
                checks.get(name, "-" if name.startswith("ours") else "other model")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths)))
        if i == 0:
            print("-+-".join("-" * w for w in widths))


if __name__ == "__main__":
    main()
