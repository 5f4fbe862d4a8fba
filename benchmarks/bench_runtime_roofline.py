"""The roofline per runtime against measurement: every exit path and the cascade, eager and every runtime with a
roofline (ONNX Runtime's sessions and its one-graph cascade by default; ``BENCH_RUNTIMES`` picks them).

    BENCH_THREADS=1 OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_runtime_roofline.py

The harness's own timing and prediction (``bench.measure.latency.latency_report`` for eager,
``bench.measure.runtimes.runtime_latency`` for the others, each with its roofline measured through that
runtime) on the study CNN (exits p1, p2), ResNet-20 (layer1, layer2) and B-LeNet (conv1), untrained
weights with non-trivial batch-norm statistics, a max-prob threshold that sends about 70 % of the samples
out at the first exit. Per model, runtime and batch size: each path's measured / predicted time, the
cascade's, and the dynamic speedup measured / by roofline (issue 26's targets: the speedup ratio within
0.9-1.1, absolute batch-1 times within 25 %). ``BENCH_MODELS=study_cnn,resnet20`` times some of them.
``BENCH_RUNS=3`` repeats the whole benchmark (figures measured afresh each time) and ends with each ratio's
median over the runs: a fast or slow spell between a model's micro-benchmark and its timing moves one run's
ratios by up to 2x on the 2-core VM, in either direction, and the median over runs keeps the model's own
error.
Time it alone: other processes on 2 cores distort every number. The roofline's figures are measured afresh
for every model (``CASCADE_ROOFLINE_CACHE=off`` unless set): this VM's speed drifts by up to 1.5x over tens
of minutes, and figures cached in another spell would measure the drift, not the model.
"""

from __future__ import annotations

import os
import statistics
from collections import defaultdict
from typing import Any

import torch

from bench.measure.latency import TimingSettings, latency_report
from bench.measure.runtimes import runtime_latency
from cascade import build_policy
from cascade.models import build_model

os.environ.setdefault("CASCADE_ROOFLINE_CACHE", "off")
THREADS = int(os.environ.get("BENCH_THREADS", "1"))
SETTINGS = TimingSettings(
    batch_sizes=(1, 256), samples_batch1=int(os.environ.get("BENCH_SAMPLES", "200")), repeats=5, warmup=1
)
RUNS = int(os.environ.get("BENCH_RUNS", "1"))
#: the runtimes besides eager (``BENCH_RUNTIMES=onnxruntime,onnxruntime-graph,openvino`` picks them)
RUNTIMES = os.environ.get("BENCH_RUNTIMES", "onnxruntime,onnxruntime-graph").split(",")
#: (model, runtime, batch, what) -> measured / predicted in each run; what: a path's exit name, "cascade", "speedup"
RATIOS: defaultdict[tuple[str, str, int, str], list[float]] = defaultdict(list)
MODELS = [
    ("study_cnn", ["p1", "p2"], (1, 28, 28)),
    ("resnet20", ["layer1", "layer2"], (3, 32, 32)),
    ("branchynet_lenet", ["conv1"], (1, 28, 28)),
]


def model_for(name: str, exits: list[str], shape: tuple[int, ...]) -> Any:
    torch.manual_seed(0)
    model = build_model(name, exits=exits, num_classes=10, in_channels=shape[0], input_size=shape[-1])
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def rows(label: str, runtime: str, paths: list[dict[str, Any]], cascades: list[dict[str, Any]]) -> None:
    for batch in SETTINGS.batch_sizes:
        ps = [p for p in paths if p["batch_size"] == batch and p.get("runtime", "eager") == runtime]
        (c,) = [c for c in cascades if c["batch_size"] == batch and c.get("runtime", "eager") == runtime]
        ratios = " ".join(f"{1e6 * p['per_sample_median']:>7.1f}/{1e6 * p['roofline_per_sample']:<7.1f}" for p in ps)
        for p in ps:
            RATIOS[(label, runtime, batch, p["exit"])].append(p["per_sample_median"] / p["roofline_per_sample"])
        RATIOS[(label, runtime, batch, "cascade")].append(c["per_sample_median"] / c["roofline_per_sample"])
        full_m = c["full"]["median"] / c["samples"]
        speed_m, speed_r = c["speedup_vs_full"], c["roofline_full_per_sample"] / c["roofline_per_sample"]
        print(
            f"{label:<26} {runtime:<12} {batch:>5}  {ratios:<48} "
            f"{1e6 * c['per_sample_median']:>7.1f}/{1e6 * c['roofline_per_sample']:<7.1f} "
            f"{1e6 * full_m:>7.1f}/{1e6 * c['roofline_full_per_sample']:<7.1f} "
            f"{c['per_sample_median'] / c['roofline_per_sample']:>6.2f} {speed_m:>6.2f} {speed_r:>6.2f} "
            f"{speed_m / speed_r:>6.2f}  {100 * (1 - c['exit_share'][-1]):>5.1f}",
            flush=True,
        )
        RATIOS[(label, runtime, batch, "speedup")].append(speed_m / speed_r)


def medians() -> None:
    """Each ratio's median over the runs (and its range), one line per model, runtime and batch."""
    print(
        f"\nmedian over {RUNS} runs [min-max]: each path and the cascade measured / roofline, then the dynamic "
        "speedup measured / roofline"
    )
    lines: defaultdict[tuple[str, str, int], list[str]] = defaultdict(list)
    for (label, runtime, batch, what), values in RATIOS.items():
        spread = f"[{min(values):.2f}-{max(values):.2f}]"
        lines[(label, runtime, batch)].append(f"{what} {statistics.median(values):.2f} {spread}")
    for (label, runtime, batch), cells in lines.items():
        print(f"{label:<26} {runtime:<12} {batch:>5}  " + "  ".join(cells))


@torch.no_grad()
def main() -> None:
    torch.set_num_threads(THREADS)
    print(
        f"threads {THREADS}, torch {torch.__version__}; µs per sample, measured/predicted (median of "
        f"{SETTINGS.repeats} repeats; {SETTINGS.samples_batch1} samples at batch 1)"
    )
    print(
        f"{'model':<26} {'runtime':<12} {'batch':>5}  {'paths: measured/roofline':<48} {'cascade':<15} "
        f"{'full':<15} {'c m/r':>6} {'spd m':>6} {'spd r':>6} {'m/r':>6}  early%"
    )
    for run in range(RUNS):
        if RUNS > 1:
            print(f"run {run + 1} of {RUNS}", flush=True)
        run_once()
    if RUNS > 1:
        medians()


def run_once() -> None:
    only = os.environ.get("BENCH_MODELS", "").split(",") if os.environ.get("BENCH_MODELS") else None
    for name, exits, shape in MODELS:
        if only and name not in only:
            continue
        model = model_for(name, exits, shape)
        x = torch.randn(512, *shape, generator=torch.Generator().manual_seed(1))
        first = torch.softmax(model.forward_until(x, 0).logits[0], 1).amax(1).sort().values
        policy = build_policy("max-prob", threshold=float(first[int(0.3 * len(first))]))  # ~70 % leave at exit 1
        label = f"{name}[{'+'.join(exits)}]"
        eager = latency_report(model, x, [(policy.threshold, policy)], SETTINGS)
        rows(label, "eager", eager["exit_paths"], eager["cascade"])
        for runtime in RUNTIMES:
            paths, cascades, _ = runtime_latency(runtime, model, x, [(policy.threshold, policy)], SETTINGS)
            rows(label, runtime, paths, cascades)


if __name__ == "__main__":
    main()
