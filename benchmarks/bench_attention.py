"""Cost of the SRNN-SCBAM attention: parameters, training-step time and peak memory of each ``--attention``.

    python benchmarks/bench_attention.py [--steps 20] [--batch 32] [--bins 23]

Each variant trains ``--steps`` steps (forward, backward, AdamW) on random spikes shaped as FSDD at 20 ms bins
(120 channels, 8 % occupancy) in a fresh process, so that its resident-set high-water mark is its own. Time
is the median step; memory is the peak RSS above the process's state after building the model.
"""
import argparse
import json
import subprocess
import sys

STEP = """
import json, resource, sys, time
import torch
from snn.models import SCBAMSNN
attention, steps, batch, bins = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0)
model = SCBAMSNN(120, 10, attention=attention, dt=10.0)
opt = torch.optim.AdamW(model.parameters(), 2e-3)
x = (torch.rand(bins, batch, 120) < 0.08).float()
y = torch.randint(0, 10, (batch,))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
times = []
for _ in range(steps):
    t = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    times.append(time.perf_counter() - t)
times.sort()
print(json.dumps({"parameters": sum(p.numel() for p in model.parameters()), "ms_per_step": 1000 * times[len(times) // 2],
                  "peak_extra_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--bins", type=int, default=23)
    args = ap.parse_args()
    rows = {}
    for attention in ("none", "channel", "spatial", "cbam", "temporal"):
        out = subprocess.run([sys.executable, "-c", STEP, attention, str(args.steps), str(args.batch), str(args.bins)],
                             capture_output=True, text=True, check=True).stdout
        rows[attention] = json.loads(out)
    ref = rows["none"]
    print(f"{'attention':10s} {'parameters':>10s} {'+%':>6s} {'ms/step':>8s} {'x time':>7s} {'peak MiB':>9s}")
    for a, r in rows.items():
        print(f"{a:10s} {r['parameters']:10d} {100 * (r['parameters'] / ref['parameters'] - 1):6.2f} "
              f"{r['ms_per_step']:8.1f} {r['ms_per_step'] / ref['ms_per_step']:7.2f} {r['peak_extra_mib']:9.1f}")


if __name__ == "__main__":
    main()
