"""The keyword-spotting SNNs on CUDA against the CPU, side by side in one process.

For each model (SRNN, ConvSNN) on FSDD-shaped input (120 channels, 100 steps of 10 ms, Bernoulli(0.02) spikes):
- a training step (forward, cross-entropy, backward, AdamW) on a batch of 64 clips;
- inference on a batch of 256 clips, and on one clip (the latency);
- streaming: one 10 ms step at a time through ``model.steps`` with the state carried, per step.

Medians of ``--iters`` timed repeats after warm-up; CUDA timings synchronise before reading the clock.

    python benchmarks/bench_cuda.py [--iters 20]
"""
import argparse
import statistics
import time

import torch

from snn.models import SRNN, ConvSNN

C, T, DT = 120, 100, 10.0


def timed(fn, device, iters):
    for _ in range(3):
        fn()
    out = []
    for _ in range(iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t)
    return 1e3 * statistics.median(out)


def measure(build, device, iters):
    torch.manual_seed(0)
    model = build().to(device)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x = (torch.rand(T, 64, C) < 0.02).float().to(device)
    y = torch.randint(0, 10, (64,), device=device)

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    big = (torch.rand(T, 256, C) < 0.02).float().to(device)
    one = big[:, :1]
    row = {"train step, batch 64": timed(step, device, iters)}
    model.eval()
    with torch.no_grad():
        row["inference, batch 256"] = timed(lambda: model(big), device, iters)
        row["latency, 1 clip"] = timed(lambda: model(one), device, iters)

        def stream():
            state = None
            for t in range(T):
                _, state = model.steps(one[t:t + 1], state)
        row["streaming, per 10 ms step"] = timed(stream, device, max(3, iters // 4)) / T
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=20)
    args = ap.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {name}; input [T={T}, B, {C}], dt {DT} ms")
    models = {"SRNN 256": lambda: SRNN(C, 10, dt=DT), "ConvSNN": lambda: ConvSNN(C, 10, in_maps=3, dt=DT)}
    print(f"{'model':10s} {'what (ms)':28s} " + " ".join(f"{d.type:>10s}" for d in devices) + "   cpu/cuda")
    for m, build in models.items():
        rows = [measure(build, d, args.iters) for d in devices]
        for k in rows[0]:
            ratio = f"{rows[0][k] / rows[1][k]:8.1f}x" if len(rows) > 1 else ""
            print(f"{m:10s} {k:28s} " + " ".join(f"{r[k]:10.3f}" for r in rows) + f"   {ratio}")


if __name__ == "__main__":
    main()
