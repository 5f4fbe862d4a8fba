"""ONNX Runtime cascade: the same exits and predictions as eager PyTorch, batch by batch."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from cascade import build_policy
from cascade.exits import dynamic_forward, masked_decisions
from cascade.models import build_model

ort = pytest.importorskip("onnxruntime")

from cascade.agreement import agreement  # noqa: E402
from cascade.ort import OrtCascade  # noqa: E402

from .tiny import runtime_suite  # noqa: E402

CASES = [
    ("study_cnn", {"channels": [8, 16, 16], "hidden": 32}, ["p1"], (1, 28, 28)),
    ("study_cnn", {"channels": [8, 16, 16], "hidden": 32}, ["p1", "p2"], (1, 28, 28)),
    ("resnet20", {}, ["layer1", "layer2"], (3, 32, 32)),
    ("branchynet_lenet", {}, ["conv1"], (1, 28, 28)),
]


def _model(name: str, options: dict, exits: list[str], shape: tuple[int, ...]) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(name, **options, exits=exits, num_classes=10, in_channels=shape[0], input_size=shape[-1])
    for m in model.modules():  # non-trivial batch-norm statistics, so that folding them matters
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize(("name", "options", "exits", "shape"), CASES, ids=[f"{c[0]}-{'+'.join(c[2])}" for c in CASES])
def test_ort_cascade_equals_eager(name: str, options: dict, exits: list[str], shape: tuple[int, ...]) -> None:
    model = _model(name, options, exits, shape)
    x = torch.randn(257, *shape, generator=torch.Generator().manual_seed(1))
    cascade = OrtCascade.from_model(model, x[:2])
    with torch.no_grad():
        eager = model(x).logits
    full = cascade.full(x.numpy())
    assert len(full) == len(eager) == len(exits) + 1
    for a, b in zip(full, eager):
        assert torch.allclose(torch.from_numpy(a), b, atol=1e-4, rtol=1e-4)
    # a threshold that sends about half the samples out at the first exit, halfway between two confidences
    conf = torch.softmax(eager[0], 1).amax(1).sort().values
    policy = build_policy("max-prob", threshold=float(conf[128] + conf[129]) / 2)
    for batch in (1, 7, 257):
        for i in range(0, 257, batch):
            xb = x[i : i + batch]
            want = dynamic_forward(model, xb, policy)
            got = cascade.dynamic(xb.numpy(), policy)
            logits = [z[i : i + batch] for z in eager]
            agree = agreement(want, got, logits, policy)
            assert agree["other"] == 0, agree
            assert agree["differ"] == agree["ties"] == 0  # no tie lands within 1e-6 on these samples
        if batch == 257:
            assert 0.3 < want.early_share < 0.7  # both branches of the cascade are exercised
            assert torch.equal(got.exit_index, masked_decisions(eager, policy).exit_index)


def test_ort_batch_one_decides_on_numpy_where_the_policy_keeps_the_logits_and_as_eager_everywhere() -> None:
    """ONNX Runtime's batch-1 cascade decides on the session's numpy output where the policy's transform is the
    identity (max-prob, entropy, patience: no tensor between sessions) and through the tensor transform where it
    is not (temperature-calibrated): one sample at a time, the same exits and classes as eager."""
    model = _model(*CASES[1])
    x = torch.randn(96, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    cascade = OrtCascade.from_model(model, x[:2])
    with torch.no_grad():
        z = model.forward_until(x, 0).logits[0]

    def mid(name: str, temperature: float = 1.0) -> float:  # about half leave at p1: between two confidences
        conf = build_policy(name).confidence(z / temperature).sort().values
        return float(conf[47] + conf[48]) / 2

    policies = {
        "max-prob": build_policy("max-prob", threshold=mid("max-prob")),
        "entropy": build_policy("entropy", threshold=mid("entropy")),
        "patience": build_policy("patience", patience=1),
        "calibrated": build_policy(
            "max-prob", threshold=mid("max-prob", 1.7), calibrate="temperature", temperatures=(1.7, 0.6, 1.0)
        ),
    }
    assert [p.keeps_logits(0) for p in policies.values()] == [True, True, True, False]
    for name, policy in policies.items():
        want = [dynamic_forward(model, x[i : i + 1], policy) for i in range(len(x))]
        got = [cascade.dynamic(x[i : i + 1].numpy(), policy) for i in range(len(x))]
        assert [(g.predicted, g.level) for g in got] == [(w.predicted, w.level) for w in want], name
        assert len({w.level for w in want}) >= 2, name  # leaving and staying both happen


def test_agreement_counts_ties_and_real_differences() -> None:
    from cascade.exits import EarlyExitResult

    policy = build_policy("max-prob", threshold=0.5)
    # sample 0: confidence exactly at the threshold (a tie); sample 1: far from it (a real difference)
    z0 = torch.tensor([[0.0, 0.0], [3.0, -3.0]])
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    a = EarlyExitResult(torch.tensor([0, 0]), torch.tensor([0, 0]), 2)
    b = EarlyExitResult(torch.tensor([1, 1]), torch.tensor([1, 1]), 2)
    assert agreement(a, b, [z0, z1], policy) == {"samples": 2, "differ": 2, "ties": 1, "other": 1}


def test_missing_onnxruntime_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from cascade.ort import MissingRuntimeError, require_ort

    real = builtins.__import__

    def no_ort(name, *a, **k):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ort)
    with pytest.raises(MissingRuntimeError, match=r"pip install 'cascade-bench\[onnx\]'"):
        require_ort()


# --------------------------------------------------------------------------- the runtime axis in a suite

SUITE = runtime_suite()


def test_a_suite_times_every_runtime_and_checks_its_decisions(tmp_path) -> None:
    import pandas as pd

    from bench.config.load import load_suite
    from bench.config.plan import expand_runs
    from bench.execute.runner import run_suite
    from bench.render.report import write_report
    from bench.results.metrics import get_metric
    from bench.results.store import ResultStore

    path = tmp_path / "rt.toml"
    path.write_text(SUITE)
    assert run_suite(path, out_dir=tmp_path / "out", progress=False, log=lambda s: None, checkpoint_cache=False).ok
    (rec,) = ResultStore(tmp_path / "out").latest_runs()
    lat = rec.latency
    assert lat is not None and lat.runtime_names == ["eager", "onnxruntime"]
    settings = lat.runtimes["onnxruntime"]
    assert settings["opset"] == 17 and settings["threads"] == lat.threads
    assert settings["agreement_with_eager"]["0.6"] == {"samples": 359, "differ": 0, "ties": 0, "other": 0}
    for runtime in ("eager", "onnxruntime"):
        assert {(p.exit, p.batch_size) for p in lat.path_entries(runtime)} == {
            (e, b) for e in ("p2", "final") for b in (1, 32)
        }
        assert {c.batch_size for c in lat.entries(runtime)} == {1, 32}
    ort_b1 = lat.at(0.6, 1, "onnxruntime")
    assert ort_b1 is not None and ort_b1.samples == 8
    # its own roofline: figures measured through ONNX Runtime, a prediction for every path and cascade
    assert settings["roofline"]["runtime"] == "onnxruntime" and settings["roofline"]["call_overhead"] > 0
    assert ort_b1.roofline_per_sample > 0 and ort_b1.roofline_full_per_sample > 0
    assert all(p.roofline_per_sample > 0 for p in lat.path_entries("onnxruntime"))
    assert get_metric("latency_onnxruntime_b1").value_at(rec, 0.6) == ort_b1.per_sample_median
    eager_b1 = lat.at(0.6, 1)
    assert eager_b1 is not None and get_metric("latency_b1").value_at(rec, 0.6) == eager_b1.per_sample_median
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert {"latency_s_per_sample_b1", "latency_onnxruntime_s_per_sample_b1"} <= set(summary.columns)
    report = write_report(tmp_path / "out", log=lambda s: None).read_text()
    assert "## Latency per runtime" in report and "| sum-p2    | onnxruntime |" in report
    runtime_table = report.split("## Latency per runtime")[1].split("\n## ")[0]
    assert "speedup roofline" in runtime_table and "speedup measured ÷ speedup roofline" in runtime_table
    # the absolute error per runtime: each path's and the cascade's measured ÷ predicted time (one seed: exact)
    from bench.analyse.load import load_results
    from bench.analyse.tables import runtime_frame

    row = runtime_frame(load_results(tmp_path / "out")).set_index(["runtime", "batch"]).loc[("onnxruntime", 1)]
    assert row["cascade ÷ roofline"] == pytest.approx(ort_b1.per_sample_median / ort_b1.roofline_per_sample)
    p2 = lat.path_at("p2", 1, "onnxruntime")
    assert p2 is not None and row["p2 path ÷ roofline"] == pytest.approx(p2.per_sample_median / p2.roofline_per_sample)
    header = next(line for line in runtime_table.splitlines() if line.startswith("| variant"))
    columns = ["p2 path ÷ roofline", "final path ÷ roofline", "cascade ÷ roofline", "decisions ≠ eager"]
    assert [header.index(c) for c in columns] == sorted(header.index(c) for c in columns)
    assert (tmp_path / "out" / "figures" / "runtime_paths.png").is_file()
    # an evaluation setting: a new run key, the same checkpoint
    plain = expand_runs(load_suite(path, ['evaluation.runtimes=["eager"]']))
    both = expand_runs(load_suite(path))
    assert plain[0].job.key == both[0].job.key and plain[0].key != both[0].key


def test_the_runtime_roofline_adds_one_call_per_piece_run_to_the_eager_profile() -> None:
    """Per-runtime prediction on a hand-made machine: the roofline of the batch-norm-folded eager pass plus
    call_overhead x (segments + heads run), per sample; a cascade pays the pieces up to each batch's deepest exit."""
    from bench.measure import roofline
    from bench.measure.cost import counting
    from bench.measure.runtimes import _Predictor
    from cascade.ort import ONNX_RUNTIME

    machine = roofline.Machine(
        device="synthetic",
        threads=1,
        channels_last=False,
        torch_version="-",
        mac_rate={"conv": 1e9, "conv_thin": 1e8, "matmul": 2e9, "matmul_narrow": 1e9},
        bandwidth=1e9,
        overhead=1e-6,
        runtime="hand-made",
        call_overhead=1e-3,
    )
    model = _model(*CASES[1])
    folded = _model(*CASES[1])
    folded.fold_batch_norm()
    x = torch.randn(6, 1, 28, 28)
    pred = _Predictor(model, machine, ONNX_RUNTIME)

    def eager(fn) -> float:
        with counting(folded) as prof:
            fn()
        return roofline.predict(prof, machine).seconds

    for level in range(3):
        expected = eager(lambda lv=level: folded.forward_until(x, lv)) + 2 * (level + 1) * 1e-3
        assert pred.path(x, level) == pytest.approx(expected / 6)
    batches = [x[:4], x[4:]]
    # one profile over every batch, as the harness counts a timed pass (bytes per call set the bandwidth)
    full = eager(lambda: [folded(b) for b in batches]) + 2 * 6 * 1e-3
    assert pred.full(batches) == pytest.approx(full / 6)
    first = build_policy("max-prob", threshold=0.0)  # every sample leaves at exit 1: 2 calls per batch
    cost = eager(lambda: [dynamic_forward(folded, b, first) for b in batches]) + 2 * 2 * 1e-3
    assert pred.cascade(batches, first) == pytest.approx(cost / 6)
    last = build_policy("max-prob", threshold=1.0)  # every sample to the last exit: the full network's calls,
    cost = eager(lambda: [dynamic_forward(folded, b, last) for b in batches]) + 2 * 6 * 1e-3  # and the decisions
    assert pred.cascade(batches, last) == pytest.approx(cost / 6) and cost > full
    # a batch of one decides in Python floats: one decision per exit reached, at the machine's decision cost
    ones, slow = (
        [x[i : i + 1] for i in range(3)],
        _Predictor(model, dataclasses.replace(machine, decision=5e-4), ONNX_RUNTIME),
    )
    cost = eager(lambda: [dynamic_forward(folded, b, first) for b in ones]) + 3 * 2 * 1e-3 + 3 * 1 * 5e-4
    assert slow.cascade(ones, first) == pytest.approx(cost / 3)
    cost = eager(lambda: [dynamic_forward(folded, b, last) for b in ones]) + 3 * 6 * 1e-3 + 3 * 3 * 5e-4
    assert slow.cascade(ones, last) == pytest.approx(cost / 3)


@pytest.mark.parametrize(
    ("runtimes", "message"),
    [
        ('["onnxruntime"]', "give 'eager' first"),
        ('["eager", "eager"]', "give 'eager' first"),
        ('["eager", "tvm"]', "unknown runtime 'tvm'"),
    ],
)
def test_runtime_names_are_validated(tmp_path, runtimes: str, message: str) -> None:
    from bench.config.load import load_suite
    from bench.config.suite import SuiteError

    path = tmp_path / "rt.toml"
    path.write_text(runtime_suite(evaluation={"runtimes": json.loads(runtimes)}))
    with pytest.raises(SuiteError, match=r"evaluation\.runtimes"):
        load_suite(path)
    with pytest.raises(SuiteError, match=message):
        load_suite(path)


def test_a_missing_runtime_is_refused_before_anything_runs(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cascade.ort
    from bench.config.load import load_suite
    from bench.config.suite import SuiteError

    def missing():
        raise cascade.ort.MissingRuntimeError("runtime 'onnxruntime' needs ...: pip install 'cascade-bench[onnx]'")

    monkeypatch.setattr(cascade.ort, "require_ort", missing)
    path = tmp_path / "rt.toml"
    path.write_text(SUITE)
    with pytest.raises(SuiteError, match=r"evaluation\.runtimes\[1\]: runtime 'onnxruntime' needs .*\[onnx\]"):
        load_suite(path)
