"""Does the dynamic/full speedup survive a load that comes and goes? (issue 18, item 6)

Times the study CNN (exit p1, threshold 0: every sample leaves at p1) at batch 256, quiet and with an
intermittent CPU burner (another process busy 0.3 s of every 0.6 s), two ways:

* sequential (the old way): all dynamic repeats, then all full repeats; speedup = median / median;
* paired (bench.measure.timing.time_pair): alternating ABBA; speedup = median of per-repeat ratios.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_latency_load.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys

import torch

from bench.measure.latency import LoadMonitor, time_fn, time_pair
from cascade import StudyCNN, build_policy
from cascade.exits import dynamic_forward
from cascade.inference import optimise_for_inference

BURNER = "import time\nwhile True:\n    t = time.time()\n    while time.time() - t < 0.3: pass\n    time.sleep(0.3)"


def measure(repeats: int = 15) -> dict[str, float]:
    torch.manual_seed(0)
    model = optimise_for_inference(StudyCNN(exits=("p1",)).eval(), channels_last=True)
    x = torch.randn(256, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    policy = build_policy("max-prob", threshold=0.0)
    with torch.no_grad():

        def dyn() -> None:
            dynamic_forward(model, x, policy)

        def full() -> None:
            model(x)

        d, f = time_fn(dyn, repeats=repeats, warmup=2), time_fn(full, repeats=repeats, warmup=0)
        seq = f.median / d.median
        pd, pf = time_pair(dyn, full, repeats=repeats, warmup=2)
        paired = statistics.median(a / b for a, b in zip(pf.samples, pd.samples))
    return {"sequential": seq, "paired": paired}


def main() -> None:
    torch.set_num_threads(2)
    rows = []
    for trial in range(3):
        quiet = measure()
        burner = subprocess.Popen([sys.executable, "-c", BURNER])
        try:
            mon = LoadMonitor()
            mon.start()
            loaded = measure()
            during = mon.during()
        finally:
            burner.kill()
            burner.wait()
        rows.append((quiet, loaded, during["others_cores"]))
        print(
            f"trial {trial}: quiet seq {quiet['sequential']:.2f} paired {quiet['paired']:.2f} | "
            f"loaded seq {loaded['sequential']:.2f} paired {loaded['paired']:.2f} "
            f"(others used {during['others_cores']:.2f} cores)"
        )
    for how in ("sequential", "paired"):
        dev = [abs(lo[how] / q[how] - 1) for q, lo, _ in rows]
        print(
            f"{how}: loaded/quiet speedup deviates by {100 * statistics.mean(dev):.1f} % on average "
            f"(max {100 * max(dev):.1f} %)"
        )


if __name__ == "__main__":
    main()
