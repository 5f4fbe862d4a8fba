"""The runtimes beyond eager and ONNX Runtime's sessions: the one-graph cascade (onnxruntime-graph), OpenVINO and
ExecuTorch, each checked against eager PyTorch, timed through a suite, and named by a clear error when its
package is missing."""

from __future__ import annotations

import builtins
from pathlib import Path

import pytest
import torch

from bench.execute.runner import run_suite
from bench.results.store import ResultStore
from cascade import build_policy, dynamic_forward

from .test_onnx_graph import _median_threshold, _sharpened
from .test_ort import CASES, _model
from .tiny import runtime_suite

pytest.importorskip("onnxruntime")


def _missing(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    real = builtins.__import__

    def refuse(name, *a, **k):
        if name == package or name.startswith(f"{package}."):
            raise ImportError(f"No module named {package!r}")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", refuse)


@pytest.mark.parametrize(
    ("runtime", "package", "extra"), [("openvino", "openvino", "openvino"), ("executorch", "executorch", "executorch")]
)
def test_a_missing_package_names_its_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, runtime: str, package: str, extra: str
) -> None:
    from bench.config.load import load_suite
    from bench.config.suite import SuiteError

    _missing(monkeypatch, package)
    path = tmp_path / "s.toml"
    path.write_text(runtime_suite(evaluation={"runtimes": ["eager", runtime]}))
    with pytest.raises(SuiteError, match=rf"evaluation\.runtimes\[1\]: runtime '{runtime}' needs .*\[{extra}\]"):
        load_suite(path)


def _decides_as_eager(runtime, batches: tuple[int, ...]) -> None:
    name, options, exits, shape = CASES[1]
    model = _sharpened(_model(name, options, exits, shape))
    x = torch.randn(64, *shape, generator=torch.Generator().manual_seed(1))
    policy = build_policy("max-prob", threshold=_median_threshold(model, x, "max-prob"))
    served = runtime.serve(model, x, 1, (policy,))
    for batch in batches:
        for i in range(0, 64 if batch > 1 else 16, batch):
            want = dynamic_forward(model, x[i : i + batch], policy)
            got = served.dynamic(runtime.convert(x[i : i + batch]), policy)
            assert got.exit_index.tolist() == want.exit_index.tolist()
            assert got.predictions.tolist() == want.predictions.tolist()


def test_openvino_decides_as_eager() -> None:
    pytest.importorskip("openvino")
    from cascade.openvino_runtime import OPENVINO

    _decides_as_eager(OPENVINO, (1, 64))


def test_executorch_decides_as_eager() -> None:
    pytest.importorskip("executorch")
    from cascade.executorch_runtime import EXECUTORCH

    _decides_as_eager(EXECUTORCH, (1,))


def test_a_suite_times_the_one_graph_runtime(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    runtimes = ["eager", "onnxruntime-graph"]
    for optional in ("openvino", "executorch"):
        try:
            __import__(optional)
        except ImportError:
            continue
        runtimes.append(optional)
    path = tmp_path / "s.toml"
    path.write_text(runtime_suite(evaluation={"runtimes": runtimes}))
    assert run_suite(path, out_dir=tmp_path / "out", progress=False, log=lambda s: None, checkpoint_cache=False).ok
    (rec,) = ResultStore(tmp_path / "out").latest_runs()
    lat = rec.latency
    assert lat is not None and lat.runtime_names == runtimes
    settings = lat.runtimes or {}
    for runtime in runtimes[1:]:
        agreement = settings[runtime]["agreement_with_eager"]
        assert all(a["other"] == 0 for a in agreement.values()), (runtime, agreement)
    graph = settings["onnxruntime-graph"]
    assert graph["roofline"]["decision"] > 0 and graph["roofline"]["runtime"] == "onnxruntime-graph"
    assert {p.batch_size for p in lat.path_entries("onnxruntime-graph")} == {1, 32}
    if "executorch" in runtimes:  # batch 1 only, said so
        assert settings["executorch"]["skipped_batch_sizes"] == [32]
        assert {c.batch_size for c in lat.entries("executorch")} == {1}
