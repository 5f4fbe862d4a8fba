"""How much of a run latency timing takes, under the default budget (issue 45): the shipped suites that time latency
and the two newcomer models, each run fresh (no checkpoint cache) into a temporary folder; per run: seconds of
training, of latency timing and in all, timing's share, and whether the budget cut any repeats.

    .venv/bin/python benchmarks/bench_timing_share.py                 # smoke, and quick_mnist where MNIST is
    BENCH_SUITES=smoke,newcomers .venv/bin/python benchmarks/bench_timing_share.py

The default budget is a third of a run's training time (``evaluation.latency_budget_s = 0``), so that timing is at
most a quarter of a run: the script reports what it was. Run it alone (docs/measurements.md: timing on a shared
machine is noise). ``newcomers``: torchvision's MobileNetV3-small and ResNet-18 on Fashion-MNIST (needs
``$CASCADE_DATA_DIR``), small training subsets, the suite settings a new user starts from.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.execute.runner import run_suite  # noqa: E402
from bench.results.store import ResultStore  # noqa: E402

NEWCOMER = """
[suite]
name = "newcomer_{name}"
seeds = [0]

[dataset]
name = "fashion_mnist"
train_size = 4000
val_size = 1000

[model]
name = "torchvision:{arch}"
head = "conv-linear"

[train]
epochs = 1
lr = 0.01
momentum = 0.9
batch_size = 64

[evaluation]
thresholds = [0.0, 0.6, 1.0]
test_samples = 2000
recompute_bn = true
latency_samples = 64
latency_repeats = 3

[[variants]]
name = "sum"
loss = "sum"
exits = ["{exit}"]
"""


def suites() -> list[tuple[str, Path, list[str]]]:
    chosen = os.environ.get("BENCH_SUITES", "smoke,quick_mnist").split(",")
    out = []
    for name in chosen:
        if name == "newcomers":
            for arch, exit_at in (("mobilenet_v3_small", "features.3"), ("resnet18", "layer2")):
                path = Path(tempfile.mkdtemp()) / f"{arch}.toml"
                path.write_text(NEWCOMER.format(name=arch, arch=arch, exit=exit_at))
                out.append((arch, path, []))
        else:
            out.append((name, REPO / "suites" / f"{name}.toml", []))
    return out


def main() -> None:
    print(f"{'suite':<22} {'run':<22} {'train s':>8} {'timing s':>9} {'run s':>7} {'share':>6}  budget")
    for name, path, overrides in suites():
        out = Path(tempfile.mkdtemp()) / name
        run_suite(path, out_dir=out, overrides=overrides, progress=False, log=lambda s: None, checkpoint_cache=False)
        shares = []
        for r in ResultStore(out).latest_runs():
            if r.latency is None or not r.phase_seconds:
                continue
            timing, train = r.phase_seconds["latency"], r.phase_seconds["training"]
            shares.append(timing / r.seconds)
            stopped = (r.latency.budget or {}).get("stopped", [])
            cut = f"cut {len(stopped)} stage(s)" if stopped else "not reached"
            label = f"{r.variant} seed {r.seed}"
            share = timing / r.seconds
            print(f"{name:<22} {label:<22} {train:>8.1f} {timing:>9.1f} {r.seconds:>7.1f} {share:>6.0%}  {cut}")
        if shares:
            print(f"{name:<22} {'median':<22} {'':>8} {'':>9} {'':>7} {statistics.median(shares):>6.0%}")


if __name__ == "__main__":
    main()
