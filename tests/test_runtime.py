"""A runtime is one object (cascade.runtime.Runtime) registered once: a plugin file adds a toy runtime and a suite
times it through the same path as ONNX Runtime, with the one cascade loop (cascade.exits.run_cascade) deciding."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.config.engines import RUNTIMES
from bench.execute.runner import run_suite
from bench.results.metrics import MetricKey, get_metric
from bench.results.store import ResultStore
from cascade import build_model, build_policy, masked_decisions
from cascade.exits import EagerPieces, run_cascade, run_until

from .tiny import runtime_suite

#: a plugin file, whole: eager PyTorch in float64, numpy arrays between the pieces, one runtime call per exit
TOY = """
import copy

import numpy as np
import torch

from bench.config.engines import register_runtime
from cascade.runtime import Runtime
from cascade.state import apply


class NumpyPieces:
    def __init__(self, model):
        self.model = copy.deepcopy(model).double().eval()
        self.num_exits = model.num_exits
        self.device = torch.device("cpu")

    def segment(self, level, h):
        with torch.no_grad():
            out = self.model.exit_segments[level](apply(h, torch.from_numpy))
        return apply(out, lambda t: t.numpy())

    def head(self, level, h, previous):
        prev = None if previous is None else torch.from_numpy(previous)
        with torch.no_grad():
            return self.model.head_logits(level, apply(h, torch.from_numpy), prev).numpy()

    def logits(self, raw):
        return torch.from_numpy(raw)

    def rows(self, h, keep):
        return apply(h, lambda a: np.ascontiguousarray(a[keep.numpy()]))


class NumpyRuntime(Runtime):
    label = "numpy float64"
    description = "a toy: eager PyTorch in float64 with numpy arrays between the pieces"
    colour = "#CC79A7"

    def build(self, model, example, threads):
        return NumpyPieces(model)

    def convert(self, x):
        return x.double().numpy()

    def settings(self, threads):
        return {"threads": threads, "dtype": "float64"}

    def calls(self, deepest):
        return deepest + 1


register_runtime("numpy-f64", NumpyRuntime())
"""


def test_a_plugin_runtime_in_one_file_is_timed_like_a_built_in(tmp_path: Path) -> None:
    (tmp_path / "toy_runtime.py").write_text(TOY)
    suite = tmp_path / "toy.toml"
    suite.write_text(
        runtime_suite(suite={"plugins": ["toy_runtime.py"]}, evaluation={"runtimes": ["eager", "numpy-f64"]})
    )
    try:
        summary = run_suite(suite, out_dir=tmp_path / "out", progress=False, log=lambda s: None, checkpoint_cache=False)
        assert summary.ok
        (rec,) = ResultStore(tmp_path / "out").latest_runs()
        lat = rec.latency
        assert lat is not None and lat.runtime_names == ["eager", "numpy-f64"]
        exits = rec.exits.names if rec.exits else []
        for batch in (1, 32):
            assert [p.exit for p in lat.path_entries("numpy-f64") if p.batch_size == batch] == exits
            assert lat.at(0.6, batch, "numpy-f64") is not None
        settings = (lat.runtimes or {})["numpy-f64"]
        assert settings["dtype"] == "float64" and settings["numpy-f64"] == torch.__version__
        checked = settings["agreement_with_eager"]["0.6"]
        assert checked["samples"] == rec.data_sizes["test"] > 0  # every evaluated test sample
        assert checked["other"] == 0  # float64 against float32: any difference is within the tie band
        key = MetricKey("latency", runtime="numpy-f64", batch=32)
        measured = lat.at(0.6, 32, "numpy-f64").per_sample_median
        assert key.name() == "latency_numpy-f64_b32" and get_metric(key.name()).value_at(rec, 0.6) == measured
        summary = pd.read_csv(tmp_path / "out" / "summary.csv")
        assert summary.loc[summary["threshold"] == 0.6, key.column()].item() == pytest.approx(measured)
    finally:
        RUNTIMES.unregister("numpy-f64")


@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("batch", [1, 7])
def test_the_one_cascade_loop_matches_every_exit_computed(threshold: float, batch: int) -> None:
    """run_cascade on eager pieces decides as masked_decisions on every exit's logits (batch 1's fast path too)."""
    torch.manual_seed(0)
    model = build_model("study_cnn", exits=["p1", "p2"], channels=(4, 8, 8), hidden=16).eval()
    x = torch.randn(batch, 1, 28, 28)
    policy = build_policy("max-prob", threshold=threshold)
    pieces = EagerPieces(model, x.device)
    with torch.no_grad():
        got = run_cascade(pieces, x, policy)
        want = masked_decisions(run_until(pieces, x, model.num_exits - 1), policy)
    assert got.exit_index.tolist() == want.exit_index.tolist()
    assert got.predictions.tolist() == want.predictions.tolist()
