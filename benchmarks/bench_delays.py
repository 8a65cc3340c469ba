"""Step time of the delay model against the SRNN: forward + backward, ms per time step.

Task: the same random spike input x[T=100, B=32, 120] Bernoulli(0.1) at 10 ms bins for every model, logits ->
cross-entropy on fixed random labels of 20 classes, backward. Models:

- ``srnn``: the default SRNN (one layer of 256 adaptive recurrent neurons, RALIF);
- ``delay-1x256``: DelaySNN with one layer of 256 LIF neurons and learnt delays up to 250 ms (26 taps);
- ``delay-2x256``: DelaySNN's default, two such layers (DCLS-Delays' SHD network size).

The variants run interleaved in one process, ``--repeats`` rounds of (warm-up, ``--iters`` timed calls);
a round's figure is its median call, the table the median of the rounds (min-max in brackets), divided by T.

    python benchmarks/bench_delays.py [--repeats 5] [--iters 5] [--threads 1] [--json out.json]
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from snn.models import SRNN, DelaySNN  # noqa: E402

T, B, N_IN, CLASSES, DT = 100, 32, 120, 20, 10.0


def variants():
    torch.manual_seed(0)
    return {"srnn": SRNN(N_IN, CLASSES, dt=DT),
            "delay-1x256": DelaySNN(N_IN, CLASSES, hidden=(256,), max_delay_ms=250.0, dt=DT),
            "delay-2x256": DelaySNN(N_IN, CLASSES, max_delay_ms=250.0, dt=DT)}


def step(model, x, y):
    model.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(T, B, N_IN, generator=g) < 0.1).float()
    y = torch.randint(0, CLASSES, (B,), generator=g)
    models = variants()
    rounds = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            model.train()
            step(model, x, y)  # warm-up (numba compiles on the first call)
            times = []
            for _ in range(args.iters):
                t0 = time.perf_counter()
                step(model, x, y)
                times.append(time.perf_counter() - t0)
            rounds[name].append(statistics.median(times) / T * 1e3)
    base = statistics.median(rounds["srnn"])
    print(f"forward + backward, T={T} B={B} inputs={N_IN} classes={CLASSES}, torch {torch.__version__}, "
          f"{args.threads} thread(s), {args.repeats} rounds x {args.iters} calls")
    print(f"{'model':<14}{'params':>9}{'ms/step':>10}  {'(min-max)':<16}{'x srnn':>7}")
    out = {}
    for name, model in models.items():
        r = rounds[name]
        med = statistics.median(r)
        params = sum(q.numel() for q in model.parameters())
        out[name] = {"params": params, "ms_per_step": med, "min": min(r), "max": max(r), "ratio": med / base}
        print(f"{name:<14}{params:>9}{med:>10.3f}  ({min(r):.3f}-{max(r):.3f}){'':<2}{med / base:>7.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"T": T, "B": B, "n_in": N_IN, "threads": args.threads,
                                               "torch": torch.__version__, "results": out}, indent=2))


if __name__ == "__main__":
    main()
