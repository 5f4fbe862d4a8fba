"""BranchyNet's B-LeNet: shapes, the entropy rule at their 0.025 nats, the suite, the reproduction table."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch

from bench.analyse.load import load_results
from bench.config.load import load_suite
from bench.execute.runner import run_suite
from bench.measure.energy import exit_costs
from bench.verdicts.engine import evaluate_loaded, read_claims
from bench.verdicts.readings import READINGS
from bench.verdicts.reproduction import render
from cascade import build_model, build_policy
from cascade.models import LeNet

from .conftest import REPO
from .synthetic import write_mnist

THEIR_T = 1 - 0.025 / math.log(10)  # 0.025 nats as our entropy confidence


def test_lenet_and_branch_shapes() -> None:
    assert LeNet().fc1.in_features == 720  # 20 x 6 x 6 with ceil-mode pooling
    net = build_model("branchynet_lenet", exits=["conv1"], num_classes=10, in_channels=1, input_size=28)
    assert net.feature_shapes == ((5, 30, 30),)
    assert net.exits["conv1"][-1].in_features == 640  # 10 x 8 x 8
    out = net(torch.randn(4, 1, 28, 28))
    assert [z.shape for z in out.logits] == [(4, 10), (4, 10)]


def _logits_with_entropy(h: float) -> torch.Tensor:
    """Logits [a, 0, ..., 0] (10 classes) whose softmax entropy is ``h`` nats (bisection on a)."""

    def entropy(a: float) -> float:
        p = torch.softmax(torch.tensor([a] + [0.0] * 9, dtype=torch.float64), 0)
        return float(-(p * p.log()).sum())

    lo, hi = 0.0, 50.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if entropy(mid) > h else (lo, mid)
    return torch.tensor([[lo] + [0.0] * 9], dtype=torch.float64)


def test_entropy_rule_at_their_threshold() -> None:
    policy = build_policy("entropy", threshold=THEIR_T)
    assert THEIR_T == pytest.approx(0.98914264, abs=1e-8)
    below, above = _logits_with_entropy(0.0249), _logits_with_entropy(0.0251)
    assert bool(policy.decide(below, {})[0]) and not bool(policy.decide(above, {})[0])
    h = -(torch.softmax(below, 1) * torch.log_softmax(below, 1)).sum()
    assert float(h) == pytest.approx(0.0249, abs=1e-9)


def test_suite_encodes_their_recipe() -> None:
    suite = load_suite(REPO / "suites" / "branchynet_lenet.toml")
    assert suite.train.optimizer == "adam" and suite.train.lr == 0.001 and suite.train.batch_size == 512
    b = suite.variant("b-lenet")
    assert (b.loss, b.exits, b.pretrain, b.pretrain_epochs, b.epochs) == ("sum", ("conv1",), "base", 50, 100)
    assert suite.variant("lenet").epochs == 50  # so b-lenet's pre-training reuses the lenet run
    assert suite.evaluation.headline_threshold == pytest.approx(THEIR_T, abs=1e-8)
    net = build_model("branchynet_lenet", exits=["conv1"], num_classes=10, in_channels=1, input_size=28)
    c1, c2 = (c.macs for c in exit_costs(net, (1, 28, 28), []))
    assert suite.budget.values == (math.ceil(0.943 * c1 + 0.057 * c2),)  # at least their 94.3 % early


def test_reproduction_table_from_a_tiny_run(tmp_path: Path) -> None:
    write_mnist(tmp_path / "data", n_train=200, n_test=50)
    suite = tmp_path / "b.toml"
    shutil.copy(REPO / "suites" / "branchynet_lenet.toml", suite)
    overrides = [
        f"dataset.root='{tmp_path / 'data'}'",
        "dataset.download=false",
        "suite.seeds=[0, 1]",
        "variants.lenet.epochs=1",
        "variants.b-lenet.pretrain_epochs=1",
        "variants.b-lenet.epochs=1",
        "evaluation.latency_samples=8",
        "evaluation.latency_repeats=1",
        "evaluation.latency_batch_sizes=[1]",
    ]
    s = run_suite(suite, out_dir=tmp_path / "out", overrides=overrides, progress=False, log=lambda s: None)
    assert s.done == 4 and not s.failed
    text = render(tmp_path / "out")
    for claim in (
        "lenet-accuracy",
        "b-lenet-accuracy",
        "branch-share",
        "entropy-threshold-validation",
        "speedup-eager-b1",
        "speedup-onnxruntime-b1",
        "lenet-time-gpu",
        "B-LeNet, up to exit conv1 | 220,150",
    ):
        assert claim in text, claim
    assert "2 epoch(s) in all against the paper's 150" in text
    # the speedup rows per runtime, recomputed from the run files: LeNet's full pass over B-LeNet's cascade per
    # seed at their threshold, and over B-LeNet's exit paths weighted by the test shares at the validation threshold
    results = load_results(tmp_path / "out")
    claims = {c.id: c for c in read_claims("branchynet").claims}
    lenet, blenet = results.records_of("lenet"), results.records_of("b-lenet")

    def read(claim_id: str) -> list[float]:
        claim = claims[claim_id]
        reading = READINGS[claim.metric]
        (point,) = reading.points(claim, blenet[0])
        return [reading.value(r, claim, point, results).x for r in blenet]

    for runtime in ("eager", "onnxruntime"):
        full = [r.latency.at(None, 1, runtime) for r in lenet]
        dyn = [r.latency.at(None, 1, runtime) for r in blenet]
        speed = [f.full["median"] / f.samples / (d.dynamic["median"] / d.samples) for f, d in zip(full, dyn)]
        assert read(f"speedup-{runtime}-b1") == pytest.approx(speed)
        ours = []
        for f, r in zip(full, blenet):
            shares = r.budget.points[0].test_exit_share
            paths = [r.latency.path_at(e, 1, runtime).per_sample_median for e in ("conv1", "final")]
            ours.append(f.full["median"] / f.samples / (shares[0] * paths[0] + shares[1] * paths[1]))
        assert read(f"path-speedup-{runtime}-b1") == pytest.approx(ours) and claims["speedup-eager-b1"].target == 5.4
    (table,) = evaluate_loaded(read_claims("branchynet"), [(tmp_path / "out", results)], strict=False)
    by_id = {r.claim.id: r for r in table.rows}
    assert by_id["lenet-time-gpu"].verdict == "untestable"
    assert by_id["lenet-time-gpu"].detail == "lenet seed 0 was not timed on cuda"


def test_the_time_rows_name_the_runs_timed_on_a_busy_machine_or_with_noise_per_runtime_and_batch() -> None:
    """The fixture's timings (a loaded test machine): base seed 0's full network and last exit's path are more than
    10 % apart at batch 1 only, seeds 1 and 2 at batches 1 and 64 (ratios 1.18-12); no ONNX Runtime timings."""
    import dataclasses

    from bench.verdicts.claimsfile import Claim, Source
    from bench.verdicts.guards import noisy_timing

    recs = load_results(REPO / "tests" / "fixtures" / "results_a").records_of("base")
    assert [r.seed for r in recs] == [0, 1, 2]

    def claim(runtime: str, batch: int) -> Claim:
        return Claim("t", "s", Source("p"), "base", "latency", runtime=runtime, batch=batch)

    noisy = "the full network and its last exit's path, one computation, more than 10% apart), re-time alone"
    assert noisy_timing(claim("eager", 1), recs) == f"noisy timing (base seed 0, base seed 1, base seed 2: {noisy}"
    assert noisy_timing(claim("eager", 64), recs) == f"noisy timing (base seed 1, base seed 2: {noisy}"
    assert noisy_timing(claim("onnxruntime", 1), recs) == ""
    assert recs[0].latency is not None
    busy = dataclasses.replace(recs[0], latency=dataclasses.replace(recs[0].latency, load={"busy": True}))
    assert noisy_timing(claim("eager", 64), [busy, *recs[1:]]) == (
        f"timed on a busy machine (base seed 0), re-time alone; noisy timing (base seed 1, base seed 2: {noisy}"
    )
