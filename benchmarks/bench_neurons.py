"""Step time of the neuron models on one task: forward + backward of a whole model, per time step.

Task: random spikes x[T=100, B=32, 120] Bernoulli(0.1) (seeded), logits of a model with hidden layers of 256
neurons (recurrent for srnn and seadlif; feed-forward with learnt delays for delay, whose work grows with its
taps: max delay / dt + 1), loss = cross-entropy against random labels, backward. Each model in :data:`MODELS` (a
name -> builder dict; add an entry to time another neuron) runs ``--iters`` timed iterations after a warm-up,
``--repeats`` times interleaved with the others; the table gives the median (min-max over repeats) of the
per-repeat medians in ms per time step, each model's ratio to the first (the SRNN) and its hidden spike rate
(per neuron and step, at initialisation: the recurrent kernels' work grows with it).

    python benchmarks/bench_neurons.py [--repeats 3] [--iters 10] [--only srnn,seadlif] [--device cpu]
"""
import argparse
import statistics
import time

import numba
import torch

import snn
from snn.models import record_activity

T, B, N_IN, HIDDEN, CLASSES, DT = 100, 32, 120, 256, 10, 10.0

#: name -> builder of a model (n_in, n_classes) at DT ms bins; the first is the reference of the ratios.
MODELS = {
    "srnn": lambda: snn.SRNN(N_IN, CLASSES, hidden=(HIDDEN,), dt=DT),  # RALIF, the default adaptive SRNN
    "seadlif": lambda: snn.SEAdLIFSNN(N_IN, CLASSES, hidden=(HIDDEN,), dt=DT),
    "delay-1x256-100ms": lambda: snn.DelaySNN(N_IN, CLASSES, hidden=(HIDDEN,), max_delay_ms=100.0, dt=DT),
    "delay-1x256": lambda: snn.DelaySNN(N_IN, CLASSES, hidden=(HIDDEN,), dt=DT),  # 250 ms: 26 taps
    "delay-2x256": lambda: snn.DelaySNN(N_IN, CLASSES, dt=DT),  # DelaySNN's default, DCLS-Delays' SHD size
}


def data(device):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(T, B, N_IN, generator=g) < 0.1).float()
    labels = torch.randint(0, CLASSES, (B,), generator=g)
    return x.to(device), labels.to(device)


def step(model, x, labels):
    model.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), labels).backward()


def time_model(model, x, labels, iters, device):
    step(model, x, labels)  # warm-up (and numba's first call)
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step(model, x, labels)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) / T * 1e3)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--only", help="comma-separated names of MODELS (default: all)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    names = args.only.split(",") if args.only else list(MODELS)
    unknown = set(names) - set(MODELS)
    if unknown:
        p.error(f"unknown models {sorted(unknown)}: use {', '.join(MODELS)}")
    device = torch.device(args.device)
    x, labels = data(device)
    models = {}
    for name in names:
        torch.manual_seed(0)
        models[name] = MODELS[name]().to(device)
    print(f"T={T} B={B} n_in={N_IN} hidden={HIDDEN} dt={DT:g} ms, forward + backward, device {device}, "
          f"torch threads {torch.get_num_threads()}, numba threads {numba.get_num_threads()}")
    runs = {name: [] for name in names}
    for _ in range(args.repeats):  # interleaved: a slow spell of the machine hits every model alike
        for name in names:
            runs[name].append(time_model(models[name], x, labels, args.iters, device))
    ref = statistics.median(runs[names[0]])
    print(f"{'model':<18} {'params':>8} {'ms/step':>8}  {'(min-max)':<15} {'x ' + names[0]:>9} {'rate':>7}")
    for name in names:
        with torch.no_grad(), record_activity(models[name]) as act:
            models[name](x)
        rate = act.summary()["layers"].get("hidden0", {}).get("rate", float("nan"))
        med = statistics.median(runs[name])
        params = sum(q.numel() for q in models[name].parameters())
        print(f"{name:<18} {params:8d} {med:8.3f}  ({min(runs[name]):.3f}-{max(runs[name]):.3f})  {med / ref:8.2f} {rate:7.3f}")


if __name__ == "__main__":
    main()
