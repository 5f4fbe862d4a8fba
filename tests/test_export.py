"""bench export: ONNX segments and heads plus cascade.json, served as docs/deploy.md shows."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from bench.cli import main
from bench.config.plan import build_for
from bench.execute.export import export_run, read_export
from bench.execute.runner import run_suite
from bench.results.store import ResultStore, StoreError
from cascade import build_policy, load_dataset
from cascade.exits import dynamic_forward

from .conftest import REPO
from .tiny import runtime_suite


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("export")
    suite = d / "rt.toml"
    suite.write_text(runtime_suite(evaluation={"runtimes": None, "latency": False}))
    assert run_suite(suite, out_dir=d / "out", progress=False, log=lambda s: None, checkpoint_cache=False).ok
    return d / "out"


def deploy_code(defines: str = "class Cascade") -> str:
    """The serving code of docs/deploy.md: the python block that defines ``defines``."""
    text = (REPO / "docs" / "deploy.md").read_text()
    return next(block for block in re.findall(r"```python\n(.*?)```", text, re.S) if defines in block)


def test_export_round_trip_equals_eager(trained: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "deploy"
    assert (
        main(["export", str(trained), "--variant", "sum-p2", "--out", str(out), "--format", "onnx", "--no-cache"]) == 0
    )
    said = capsys.readouterr().out
    assert "0 decision(s) differ from eager" in said and "359 test samples" in said
    meta = read_export(out)
    assert meta["exits"] == ["p2", "final"] and meta["policy"]["name"] == "max-prob"
    assert meta["policy"]["threshold"] == 0.6 and meta["input"]["shape"] == [1, 28, 28] and meta["opset"] == 17
    assert meta["check"]["decisions_differing_from_eager"] == 0
    # the docs' serving code, one raw image at a time, against eager PyTorch on the normalised batch
    namespace: dict = {}
    exec(compile(deploy_code(), "docs/deploy.md", "exec"), namespace)
    served = namespace["Cascade"](out)
    data = load_dataset("digits", train_size=300)
    mean, std = (torch.tensor(data.normalization[k]).reshape(-1, 1, 1) for k in ("mean", "std"))
    raw = data.test.x * std + mean  # the images in [0, 1], as a deployment receives them
    import json

    from bench.config.plan import build_for
    from bench.results.store import ResultStore

    (rec,) = ResultStore(trained).latest_runs()
    model = build_for(_job(trained, rec), data)
    model.load_state_dict(torch.load(trained / "checkpoints" / f"{rec.train_key}.pt", weights_only=True)["state_dict"])
    want = dynamic_forward(model.eval(), data.test.x, build_policy("max-prob", threshold=0.6))
    got = [served(raw[i].numpy().astype(np.float32)) for i in range(len(raw))]
    assert [int(c) for c, _ in got] == want.predictions.tolist()
    assert [meta["exits"].index(e) for _, e in got] == want.exit_index.tolist()
    assert 0 < want.early_share < 1 and json.loads((out / "cascade.json").read_text())["classes"][3] == "3"


def test_one_graph_export_round_trip_equals_eager(trained: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "graph"
    args = ["export", str(trained), "--variant", "sum-p2", "--out", str(out), "--format", "onnx-graph", "--no-cache"]
    assert main(args) == 0
    assert "ONNX Runtime, one graph" in capsys.readouterr().out
    meta = read_export(out)
    assert meta["kind"] == "onnx-graph" and meta["files"] == {"graph": "cascade.onnx"}
    assert sorted(p.name for p in out.iterdir()) == ["cascade.json", "cascade.onnx"]
    assert meta["check"]["batch_1"]["differ"] == 0 and meta["check"]["decisions_differing_from_eager"] == 0
    namespace: dict = {}
    exec(compile(deploy_code("class GraphCascade"), "docs/deploy.md", "exec"), namespace)
    served = namespace["GraphCascade"](out)
    data = load_dataset("digits", train_size=300)
    mean, std = (torch.tensor(data.normalization[k]).reshape(-1, 1, 1) for k in ("mean", "std"))
    raw = (data.test.x * std + mean).numpy()
    (rec,) = ResultStore(trained).latest_runs()
    model = build_for(_job(trained, rec), data)
    model.load_state_dict(torch.load(trained / "checkpoints" / f"{rec.train_key}.pt", weights_only=True)["state_dict"])
    want = dynamic_forward(model.eval(), data.test.x, build_policy("max-prob", threshold=0.6))
    classes, exits = served(raw)  # the whole test split as one batch
    assert [int(c) for c in classes] == want.predictions.tolist()
    assert [meta["exits"].index(e) for e in exits] == want.exit_index.tolist()
    one = [served(raw[i : i + 1]) for i in range(40)]  # one image per call: the If chain
    assert [meta["exits"].index(e[0]) for _, e in one] == want.exit_index[:40].tolist()
    (out / "cascade.onnx").write_bytes((out / "cascade.onnx").read_bytes()[:-3])
    with pytest.raises(StoreError, match=r"cascade\.onnx: "):
        read_export(out)


def test_executorch_export_round_trip_equals_eager(trained: Path, tmp_path: Path) -> None:
    pytest.importorskip("executorch")
    out = tmp_path / "pte"
    summary = export_run(trained, variant="sum-p2", out=out, checkpoint_cache=False, kind="executorch")
    meta = read_export(out)
    assert meta["kind"] == "executorch" and meta["files"] == {"program": "cascade.pte"}
    assert summary.check["decisions_differing_from_eager"] == summary.check["of_which_ties"]
    assert summary.check["test_samples"] == 359


def _job(folder: Path, rec):
    from bench.config.load import load_suite
    from bench.config.plan import expand_runs

    return next(r.job for r in expand_runs(load_suite(folder / "suite.toml")) if r.key == rec.key)


def test_export_errors_name_what_is_wrong(trained: Path, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"no finished run of variant 'nope'; variants: sum-p2"):
        export_run(trained, variant="nope", out=tmp_path / "x", checkpoint_cache=False)
    with pytest.raises(StoreError, match=r"has no run with seed 7; seeds: 0"):
        export_run(trained, variant="sum-p2", seed=7, out=tmp_path / "x", checkpoint_cache=False)
    bare = tmp_path / "bare"
    shutil.copytree(trained, bare, ignore=shutil.ignore_patterns("checkpoints"))
    with pytest.raises(StoreError, match=r"no checkpoint of train key .* rerun `bench run`"):
        export_run(bare, variant="sum-p2", out=tmp_path / "x", checkpoint_cache=False)


def test_a_damaged_export_file_is_refused(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "d"
    export_run(trained, variant="sum-p2", out=out, checkpoint_cache=False)
    blob = bytearray((out / "head_0.onnx").read_bytes())
    blob[-5] ^= 0xFF
    (out / "head_0.onnx").write_bytes(bytes(blob))
    with pytest.raises(StoreError, match=r"head_0\.onnx: sha256 "):
        read_export(out)


SLOW_BN = '''
from torch import nn
from cascade.models import MODELS, StudyCNN


@MODELS.register("slow_bn_cnn")
class SlowBN(StudyCNN):
    """The study CNN with batch-norm momentum 0.01 (torchvision's MobileNetV3): after a few steps its running
    statistics are still mostly their initial values, so eval mode sits near chance until they are recomputed."""

    def __init__(self, *, channels=(32, 64, 128), hidden=256, **harness):
        super().__init__(channels=channels, hidden=hidden, **harness)
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = 0.01
'''


def test_the_export_is_the_evaluated_model(tmp_path: Path, capsys) -> None:
    """MobileNetV3's case at small size: batch-norm statistics that lag the weights, recompute_bn on. The export
    carries the recomputed statistics; its check holds it against the run's recorded accuracy; the docs' serving
    code scores what the report says."""
    (tmp_path / "slow_bn.py").write_text(SLOW_BN)
    suite = tmp_path / "s.toml"
    suite.write_text(
        runtime_suite(
            suite={"plugins": ["slow_bn.py"]},
            model={"name": "slow_bn_cnn"},
            evaluation={"runtimes": None, "latency": False, "recompute_bn": True},
        )
    )
    assert run_suite(suite, out_dir=tmp_path / "out", progress=False, log=lambda s: None, checkpoint_cache=False).ok
    (rec,) = ResultStore(tmp_path / "out").latest_runs()
    assert rec.sanity.bn_recomputed and rec.sanity.bn_momentum == [0.01]
    reported = rec.at(0.6).accuracy
    assert reported > 0.5  # recomputed: far from chance (the running statistics alone give ~10 %)
    out = tmp_path / "deploy"
    args = ["export", str(tmp_path / "out"), "--variant", "sum-p2", "--out", str(out), "--no-cache"]
    assert main(args) == 2  # the folder names a plugin: nothing is imported without being told
    assert "--trust-plugins" in capsys.readouterr().err
    assert main([*args, "--trust-plugins"]) == 0
    said = capsys.readouterr()
    assert f"(the run recorded {100 * reported:.2f} %)" in said.out and "slow_bn.py" in said.err
    meta = read_export(out)
    assert meta["check"]["recorded_test_accuracy"] == pytest.approx(reported)
    assert meta["check"]["eager_test_accuracy"] == pytest.approx(reported)
    assert meta["source"]["batch_norm"].startswith("recomputed")
    namespace: dict = {}
    exec(compile(deploy_code(), "docs/deploy.md", "exec"), namespace)
    served = namespace["Cascade"](out)
    data = load_dataset("digits", train_size=300)
    mean, std = (torch.tensor(data.normalization[k]).reshape(-1, 1, 1) for k in ("mean", "std"))
    raw = data.test.x * std + mean
    got = [served(raw[i].numpy().astype(np.float32))[0] for i in range(len(raw))]
    accuracy = float(np.mean([int(c) == int(y) for c, y in zip(got, data.test.y)]))
    assert accuracy == pytest.approx(reported, abs=1.5 / len(raw))  # one threshold tie at most


def test_an_export_that_is_not_the_evaluated_model_fails(trained: Path, tmp_path: Path, monkeypatch) -> None:
    """Were the export to skip a step the evaluation took, its accuracy would differ from the run's: refused."""
    import bench.execute.export as export

    def forgetful(model, spec, data):  # batch-norm statistics other than the evaluated ones
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
        return model.eval()

    monkeypatch.setattr(export, "as_evaluated", forgetful)
    with pytest.raises(export.ExportMismatchError, match=r"it is not the model the report measured"):
        export_run(trained, variant="sum-p2", out=tmp_path / "x", checkpoint_cache=False)
