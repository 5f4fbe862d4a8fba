"""The cascade as one ONNX graph (cascade.onnx_graph): its decisions and logits equal eager PyTorch's, at batch 1
(the If chain) and at larger batches (compressed and scattered back), for every policy it expresses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cascade import build_policy, dynamic_forward
from cascade.exits import EarlyExitResult, transformed_logits

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from cascade.agreement import agreement  # noqa: E402
from cascade.graph_runtime import ONNX_GRAPH  # noqa: E402
from cascade.onnx_graph import GraphExportError, cascade_graph  # noqa: E402
from cascade.ort import SessionSettings  # noqa: E402

from .test_ort import CASES, _model  # noqa: E402

MSDNET = ("msdnet", {"preset": "mnist-small"}, ["block1", "block2"], (1, 28, 28))


def _x(shape: tuple[int, ...], n: int = 257) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(1))


def _sharpened(model: torch.nn.Module, factor: float = 6.0) -> torch.nn.Module:
    """Heads scaled up, so that an untrained network is confident enough to leave at every exit."""
    with torch.no_grad():
        for head in model.exit_heads:
            for p in head.parameters():
                p.mul_(factor)
    return model


def _median_threshold(model: torch.nn.Module, x: torch.Tensor, policy_name: str, **options) -> float:
    """A threshold halfway between two neighbouring exit-1 confidences near the median (no sample ties it)."""
    with torch.no_grad():
        z = transformed_logits(model(x).logits, build_policy(policy_name, **options))[0]
    conf = build_policy(policy_name, **options).confidence(z).sort().values
    mid = len(conf) // 2
    return float(conf[mid] + conf[mid + 1]) / 2


def _check(model: torch.nn.Module, x: torch.Tensor, policy, batches=(1, 7, 257)) -> None:
    blob = cascade_graph(model, x, policy)
    (session,) = SessionSettings().sessions([blob])
    threshold = np.asarray(policy.threshold, dtype=np.float32)
    with torch.no_grad():
        judged = transformed_logits(model(x).logits, policy)
    for batch in batches:
        starts = range(0, len(x), batch) if batch > 1 else range(0, 40)
        for i in starts:
            xb = x[i : i + batch]
            want = dynamic_forward(model, xb, policy)
            logits, classes, exits, _ = session.run(None, {"x": xb.numpy(), "threshold": threshold})
            got = EarlyExitResult(torch.from_numpy(classes), torch.from_numpy(exits), model.num_exits)
            agree = agreement(want, got, [z[i : i + batch] for z in judged], policy)
            assert agree["differ"] == 0, (batch, i, agree)
            taken = torch.stack([judged[int(e)][i + j] for j, e in enumerate(exits)])
            assert torch.allclose(torch.from_numpy(logits), taken, atol=1e-4, rtol=1e-4)
    full = session.run(None, {"x": x.numpy(), "threshold": threshold})[2]
    assert 0 < (full == 0).mean() < 1, "both branches of the first exit are exercised"


@pytest.mark.parametrize(
    ("name", "options", "exits", "shape"), [*CASES, MSDNET], ids=[f"{c[0]}-{'+'.join(c[2])}" for c in [*CASES, MSDNET]]
)
def test_one_graph_decides_as_eager(name: str, options: dict, exits: list[str], shape: tuple[int, ...]) -> None:
    model = _sharpened(_model(name, options, exits, shape), 1.0 if name == "msdnet" else 6.0)  # MSDNet's: confident
    x = _x(shape)
    _check(model, x, build_policy("max-prob", threshold=_median_threshold(model, x, "max-prob")))


@pytest.mark.parametrize("policy_name", ["entropy", "max-prob-calibrated", "ztw-ensemble"])
def test_every_graph_policy_decides_as_eager(policy_name: str) -> None:
    name, options, exits, shape = CASES[1]
    if policy_name == "ztw-ensemble":
        options = {**options, "cascading_heads": True}
    model = _sharpened(_model(name, options, exits, shape))
    x = _x(shape)
    if policy_name == "entropy":
        kwargs: dict = {}
    elif policy_name == "max-prob-calibrated":
        policy_name, kwargs = "max-prob", {"calibrate": "temperature", "temperatures": (1.7, 0.8, 1.2)}
    else:
        weights = [[0.3], [-0.2, 0.5]]
        kwargs = {"ensemble_weights": weights, "ensemble_biases": [[0.01 * c for c in range(10)]] * 2}
    threshold = _median_threshold(model, x, policy_name, **kwargs)
    _check(model, x, build_policy(policy_name, threshold=threshold, **kwargs), batches=(1, 257))


def test_patience_has_no_graph_form() -> None:
    name, options, exits, shape = CASES[0]
    model = _model(name, options, exits, shape)
    with pytest.raises(GraphExportError, match="patience.*--format onnx"):
        cascade_graph(model, _x(shape, 2), build_policy("patience", patience=1))


def test_the_graph_runtime_serves_paths_and_cascades() -> None:
    name, options, exits, shape = CASES[1]
    model = _sharpened(_model(name, options, exits, shape))
    x = _x(shape, 64)
    policy = build_policy("max-prob", threshold=_median_threshold(model, x, "max-prob"))
    served = ONNX_GRAPH.serve(model, x, threads=1, policies=(policy,))
    with torch.no_grad():
        eager = model(x).logits
    for level in range(model.num_exits):
        path = served.path(ONNX_GRAPH.convert(x), level)
        assert len(path) == level + 1
        assert torch.allclose(torch.from_numpy(path[-1]), eager[level], atol=1e-4, rtol=1e-4)
    got = served.dynamic(ONNX_GRAPH.convert(x), policy)
    assert torch.equal(got.exit_index, dynamic_forward(model, x, policy).exit_index)


def test_a_missing_onnx_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from cascade.runtime import MissingRuntimeError

    real = builtins.__import__

    def no_onnx(name, *a, **k):
        if name == "onnx":
            raise ImportError("No module named 'onnx'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(MissingRuntimeError, match=r"onnxruntime-graph.*pip install 'cascade-bench\[onnx\]'"):
        ONNX_GRAPH.check()
