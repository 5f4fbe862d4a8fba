"""The cascade as one ONNX graph against separate sessions, at batch 1 (issue 47's targets).

    BENCH_THREADS=1 OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_graph.py

B-LeNet (exit conv1) and LeNet, the harness's own models with untrained weights and non-trivial batch-norm
statistics, one thread, batch 1, every form timed in the same interleaved rounds (ROUNDS rounds of SAMPLES
different single samples each; medians):

* the exit-1 path as one session (the floor: no decision at all) and the full path as one session;
* the one-graph cascade (``onnxruntime-graph``: the pieces optimised for ONNX Runtime, an ``If`` per exit) with
  every sample leaving at exit 1 (threshold 0) and with every sample going to the end (threshold 1);
* separate sessions (``onnxruntime``: a session per segment and head, the decision in Python between them), the
  same two ways; LeNet as one session.

Targets: the one-graph cascade at exit 1 within 1.10x of the exit-1 path alone; at the committed runs' exit share
(``results/branchynet_lenet``, B-LeNet at the headline threshold; ``BENCH_SHARE`` overrides it) the one-graph
speedup of B-LeNet over LeNet at least 1.3x the separate-sessions speedup. The entropy policy, as B-LeNet's runs.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from cascade import build_policy
from cascade.graph_runtime import ONNX_GRAPH
from cascade.models import build_model
from cascade.ort import ONNX_RUNTIME

THREADS = int(os.environ.get("BENCH_THREADS", "1"))
ROUNDS, SAMPLES = int(os.environ.get("BENCH_ROUNDS", "9")), 200
REPO = Path(__file__).resolve().parents[1]


def model_for(exits: list[str]) -> Any:
    torch.manual_seed(0)
    model = build_model("branchynet_lenet", exits=exits, num_classes=10, in_channels=1, input_size=28)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def committed_share() -> float:
    """B-LeNet's mean share of exit conv1 at the headline threshold in the committed runs."""
    if "BENCH_SHARE" in os.environ:
        return float(os.environ["BENCH_SHARE"])
    summary = pd.read_csv(REPO / "results" / "branchynet_lenet" / "summary.csv")
    rows = summary[(summary["variant"] == "b-lenet")]
    headline = rows["threshold"].iloc[(rows["threshold"] - 0.98914264).abs().argmin()]
    return float(rows[rows["threshold"] == headline]["share_conv1"].mean())


def interleaved(forms: dict[str, Callable[[np.ndarray], Any]], xs: list[np.ndarray]) -> dict[str, float]:
    """Median µs per sample of each form over ROUNDS rounds, the forms in turn within each round."""
    times: dict[str, list[float]] = {name: [] for name in forms}
    for _ in range(ROUNDS):
        for name, fn in forms.items():
            for x in xs[:20]:
                fn(x)
            start = time.perf_counter()
            for x in xs:
                fn(x)
            times[name].append((time.perf_counter() - start) / len(xs) * 1e6)
    return {name: statistics.median(v) for name, v in times.items()}


def verdict(met: bool) -> str:
    return "met" if met else "not met"


def main() -> int:
    torch.set_num_threads(THREADS)
    blenet, lenet = model_for(["conv1"]), model_for([])
    x = torch.randn(SAMPLES, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    xs = [ONNX_RUNTIME.convert(x[i : i + 1]) for i in range(SAMPLES)]
    leave, stay = build_policy("entropy", threshold=0.0), build_policy("entropy", threshold=1.0)
    graph = ONNX_GRAPH.serve(blenet, x, THREADS, (leave,))
    pieces = ONNX_RUNTIME.serve(blenet, x, THREADS)
    lenet_one = ONNX_GRAPH.serve(lenet, x, THREADS)
    forms = {
        "B-LeNet exit-1 path, one session (floor)": lambda a: graph.path(a, 0),
        "B-LeNet exit 1, one graph": lambda a: graph.dynamic(a, leave),
        "B-LeNet exit 1, separate sessions": lambda a: pieces.dynamic(a, leave),
        "B-LeNet full path, one session": lambda a: graph.path(a, 1),
        "B-LeNet full path, one graph": lambda a: graph.dynamic(a, stay),
        "B-LeNet full path, separate sessions": lambda a: pieces.dynamic(a, stay),
        "LeNet, one session": lambda a: lenet_one.path(a, 0),
    }
    t = interleaved(forms, xs)
    for name, us in t.items():
        print(f"{name:42s} {us:7.1f} µs")
    share = committed_share()
    names = list(forms)
    graph_cascade = share * t[names[1]] + (1 - share) * t[names[4]]
    separate_cascade = share * t[names[2]] + (1 - share) * t[names[5]]
    lenet_us = t[names[6]]
    ratio = t[names[1]] / t[names[0]]
    gain = (lenet_us / graph_cascade) / (lenet_us / separate_cascade)
    print(
        f"\nexit share {100 * share:.1f} % (committed b-lenet runs): cascade one graph {graph_cascade:.1f} µs, "
        f"separate sessions {separate_cascade:.1f} µs"
    )
    print(f"speedup over LeNet: one graph {lenet_us / graph_cascade:.2f}x, separate {lenet_us / separate_cascade:.2f}x")
    print(f"target 1, one graph at exit 1 / exit-1 path alone: {ratio:.2f} ({verdict(ratio <= 1.10)}: <= 1.10)")
    print(f"target 2, one-graph speedup / separate-sessions speedup: {gain:.2f} ({verdict(gain >= 1.3)}: >= 1.3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
