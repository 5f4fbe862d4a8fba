"""The field's training methods and exit rules: hand-computed values on tiny examples."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from cascade import MultiExitModel, StudyCNN, build_loss
from cascade.calibration import expected_calibration_error, fit_temperature, nll_at
from cascade.exits import build_policy, dynamic_forward, masked_decisions, transformed_logits
from cascade.training import equilibrium_logits

from .tiny import UNTIMED, layered, tiny_suite

# --------------------------------------------------------------------------- distill


def test_distill_value_by_hand() -> None:
    # teacher (final exit) logits [ln 4, 0] -> p = [0.8, 0.2]; the early exit [ln 3, 0] -> q = [0.75, 0.25]; y = 0
    final = torch.tensor([[math.log(4.0), 0.0]], requires_grad=True)
    early = torch.tensor([[math.log(3.0), 0.0]], requires_grad=True)
    y = torch.tensor([0])
    loss = build_loss("distill", {"C": 0.3, "adaptive": False})
    value = loss([early, final], y)
    soft = -(0.8 * math.log(0.75) + 0.2 * math.log(0.25))  # H(p, q) at T = 1
    expected = -math.log(0.8) + 0.7 * -math.log(0.75) + 0.3 * soft
    assert float(value.detach()) == pytest.approx(expected, rel=1e-6)
    value.backward()
    # the teacher is detached: the final exit's gradient is that of its own CE only, p - onehot
    assert torch.allclose(final.grad, torch.tensor([[0.8 - 1.0, 0.2]]), atol=1e-6)
    # early exit: 0.7 (q - onehot) + 0.3 (q - p) at T = 1
    q, p = torch.tensor([0.75, 0.25]), torch.tensor([0.8, 0.2])
    assert torch.allclose(early.grad[0], 0.7 * (q - torch.tensor([1.0, 0.0])) + 0.3 * (q - p), atol=1e-6)


def test_distill_fixed_temperature_scales_by_t_squared() -> None:
    final = torch.tensor([[math.log(4.0), 0.0]])
    early = torch.tensor([[math.log(3.0), 0.0]])
    y = torch.tensor([0])
    t = 2.0
    value = build_loss("distill", {"C": 1.0, "T": t, "adaptive": False})([early, final], y)
    p = torch.softmax(final / t, 1)[0]
    log_q = torch.log_softmax(early / t, 1)[0]
    expected = -math.log(0.8) + t**2 * float(-(p * log_q).sum())  # C = 1: no CE on the early exit
    assert float(value) == pytest.approx(expected, rel=1e-6)
    scaled = build_loss("distill", {"C": 0.5, "T": t, "adaptive": False, "scale_final": True})([early, final], y)
    assert float(scaled) == pytest.approx(
        0.5 * -math.log(0.8) + 0.5 * -math.log(0.75) + 0.5 * t**2 * float(-(p * log_q).sum()), rel=1e-6
    )


def test_distill_adaptive_temperature() -> None:
    y = torch.tensor([0, 1])
    confident = [torch.zeros(2, 3), torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]])]  # teacher max-prob 0.97
    loss = build_loss("distill", {"maxprob": 0.5, "Tmult": 2.0})
    loss.start(3)
    loss(confident, y)
    assert loss.state() == {"temperature": 2.0}  # grown once: the teacher at T = 1 was above maxprob
    loss(confident, y)
    assert loss.state() == {"temperature": 4.0}  # teacher max-prob at T = 2: 0.86 > 0.5, grown again
    with torch.no_grad():  # evaluation never moves the temperature
        loss(confident, y)
    assert loss.state() == {"temperature": 4.0}
    uniform = [torch.zeros(2, 3), torch.zeros(2, 3)]  # teacher max-prob 1/3 <= 0.5: T stays
    fresh = build_loss("distill", {"maxprob": 0.5})
    fresh(uniform, y)
    assert fresh.state() == {"temperature": 1.0}
    loss.start(3)  # a new training run starts from T again
    assert loss.state() == {"temperature": 1.0}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"C": 1.5}, "C must be in"),
        ({"Tmult": 0.9}, "Tmult must be"),
        ({"T": 0}, "T must be"),
        ({"t": 2}, "no option 't'"),
    ],
)
def test_distill_bad_options(options, message) -> None:
    with pytest.raises(ValueError, match=message):
        build_loss("distill", options)


# --------------------------------------------------------------------------- SDN weights


def test_sdn_weights_grow_as_in_sdn() -> None:
    loss = build_loss("sum", {"weights": "sdn", "exit_costs": [0.25, 0.5, 1.0]}, num_exits=3)
    loss.start(4)
    loss.set_epoch(0)  # SDN's epoch 1: 0.01 + 1 * tau / 4
    assert loss.current_weights(3) == pytest.approx([0.0725, 0.135, 1.0])
    loss.set_epoch(3)  # epoch 4: min(tau, 0.01 + tau) = tau
    assert loss.current_weights(3) == pytest.approx([0.25, 0.5, 1.0])
    logits = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]]), torch.tensor([[3.0, 0.0]])]
    y = torch.tensor([0])
    ce = [math.log(1 + math.exp(-1.0)), math.log(1 + math.exp(2.0)), math.log(1 + math.exp(-3.0))]
    assert float(loss(logits, y)) == pytest.approx(0.25 * ce[0] + 0.5 * ce[1] + ce[2], rel=1e-6)
    with pytest.raises(ValueError, match='weights must be a list of numbers or "sdn"'):
        build_loss("sum", {"weights": "kaya"})


# --------------------------------------------------------------------------- gradient equilibrium


class Chain(MultiExitModel):
    """Three tanh-linear segments with a linear head each (a 3-exit model small enough to reason about)."""

    exit_names = ("e1", "e2", "e3")
    num_classes = 3

    def __init__(self) -> None:
        super().__init__()
        self.segs = nn.ModuleList(nn.Sequential(nn.Linear(4, 4), nn.Tanh()) for _ in range(3))
        self.outs = nn.ModuleList(nn.Linear(4, 3) for _ in range(3))
        self._segments, self._heads = list(self.segs), list(self.outs)


def _grads(model: nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    named = list(model.named_parameters())
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    return {n: torch.zeros_like(p) if g is None else g for (n, p), g in zip(named, grads)}


def test_gradient_equilibrium_scales_each_exits_gradient() -> None:
    torch.manual_seed(0)
    model, x, y = Chain(), torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    ce = nn.functional.cross_entropy
    plain = [_grads(model, ce(model(x).logits[k], y)) for k in range(3)]  # each exit's own gradient
    ge = _grads(model, sum(ce(z, y) for z in equilibrium_logits(model, x)))
    # segment k receives 1/(n-k) of head k's gradient and (n-k-1)/(n-k) of the deeper ones': segment 0 gets
    # 1/3 of each exit's, segment 1 half of exits 2 and 3, segment 2 all of exit 3; heads are not rescaled
    expected_share = {0: [1 / 3, 1 / 3, 1 / 3], 1: [0.0, 0.5, 0.5], 2: [0.0, 0.0, 1.0]}
    for name, grad in ge.items():
        k = int(name.split(".")[1])
        share = expected_share[k] if name.startswith("segs") else [float(j == k) for j in range(3)]
        want = sum(s * plain[j][name] for j, s in enumerate(share))
        assert torch.allclose(grad, want, atol=1e-6), name
    assert all(torch.equal(a, b) for a, b in zip(equilibrium_logits(model, x), model(x).logits))  # values unchanged


# --------------------------------------------------------------------------- calibration


def test_ece_by_hand() -> None:
    # confidences 0.9 (right), 0.9 (wrong), 0.65 (right), 0.65 (right): bins (13/15, 14/15] and (9/15, 10/15]
    def two_class(p: float) -> list[float]:
        return [math.log(p / (1 - p)), 0.0]

    logits = torch.tensor([two_class(0.9), two_class(0.9), two_class(0.65), two_class(0.65)])
    y = torch.tensor([0, 1, 0, 0])
    assert expected_calibration_error(logits, y) == pytest.approx(0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.65))
    assert expected_calibration_error(logits, y, bins=1) == pytest.approx(abs(0.75 - 0.775))


def test_temperature_minimises_nll_and_scales_with_the_logits() -> None:
    torch.manual_seed(0)
    u = torch.randn(2000, 5)
    y = torch.distributions.Categorical(logits=u).sample()
    t = fit_temperature(3.0 * u, y)  # over-confident logits: the fitted T undoes the factor 3
    assert t == pytest.approx(3.0, rel=0.1)
    assert nll_at(3.0 * u, y, t) <= min(nll_at(3.0 * u, y, t * f) for f in (0.98, 1.02, 1.0 / t))
    assert fit_temperature(6.0 * u, y) == pytest.approx(2 * t, rel=1e-4)  # T(c z) = c T(z)


def test_calibrated_policy_dynamic_equals_masked() -> None:
    torch.manual_seed(0)
    model = StudyCNN(channels=(4, 4, 4), hidden=8, exits=("p1", "p2"), num_classes=10).eval()
    x = torch.randn(64, 1, 28, 28)
    with torch.no_grad():
        for head in model.exit_heads:  # a spread of confidences
            head[-1].weight.mul_(20) if isinstance(head, nn.Sequential) else None
    logits = model(x).logits
    plain = build_policy("max-prob", threshold=0.5)
    calibrated = build_policy("max-prob", threshold=0.5, calibrate="temperature", temperatures=(4.0, 0.5, 1.0))
    dyn, ref = dynamic_forward(model, x, calibrated), masked_decisions(logits, calibrated)
    assert torch.equal(dyn.exit_index, ref.exit_index) and torch.equal(dyn.predictions, ref.predictions)
    one = [dynamic_forward(model, x[i : i + 1], calibrated) for i in range(8)]  # the batch-1 path too
    assert [int(r.exit_index[0]) for r in one] == ref.exit_index[:8].tolist()
    # by hand: exit 1 leaves when max softmax(z / 4) > 0.5
    leaves_first = torch.softmax(logits[0] / 4.0, 1).amax(1) > 0.5
    assert torch.equal(ref.exit_index == 0, leaves_first)
    assert not torch.equal(masked_decisions(logits, plain).exit_index, ref.exit_index)
    with pytest.raises(ValueError, match="fit them on the validation split"):
        masked_decisions(logits, build_policy("max-prob", threshold=0.5, calibrate="temperature"))
    with pytest.raises(ValueError, match="calibrate must be one of 'none', 'temperature'"):
        build_policy("entropy", calibrate="platt")


# --------------------------------------------------------------------------- regimes and the suite end to end

#: every method of the study on the tiny suite (one seed, nothing timed)
METHODS_TABLES = {
    "suite": {"name": "methods_tiny", "seeds": [0]},
    "dataset": {"train_size": 240},
    "train": {"log_every": None},
    "evaluation": UNTIMED,
}
METHOD_VARIANTS = [
    {"name": "base", "loss": "base"},
    {"name": "joint", "loss": "sum", "exits": ["p1", "p2"]},
    {"name": "disjoint", "loss": "sum", "exits": ["p1", "p2"], "pretrain": "base", "train": {"freeze_backbone": True}},
    {"name": "mixed", "loss": "sum", "exits": ["p1", "p2"], "pretrain": "base"},
    {"name": "sdn", "loss": "sum", "exits": ["p1", "p2"], "loss_options": {"weights": "sdn"}},
    {"name": "distill", "loss": "distill", "exits": ["p1", "p2"]},
    {"name": "sum-ge", "loss": "sum", "exits": ["p1", "p2"], "train": {"gradient_equilibrium": True}},
    {"name": "calibrated", "loss": "sum", "exits": ["p1", "p2"], "policy_options": {"calibrate": "temperature"}},
    {
        "name": "ztw",
        "loss": "sum",
        "exits": ["p1", "p2"],
        "pretrain": "base",
        "train": {"freeze_backbone": True},
        "model_options": {"cascading_heads": True},
        "policy": "ztw-ensemble",
    },
]


def methods_suite(variants: list[dict[str, Any]] = METHOD_VARIANTS, **changes: Any) -> str:
    return tiny_suite(variants=variants, **layered(METHODS_TABLES, changes))


METHODS_SUITE = methods_suite()


def test_regimes_are_one_line_of_a_suite(tmp_path) -> None:
    from bench.config.load import load_suite
    from bench.config.plan import expand_runs

    path = tmp_path / "m.toml"
    path.write_text(METHODS_SUITE)
    runs = {r.variant: r for r in expand_runs(load_suite(path))}
    joint, disjoint, mixed = runs["joint"].job, runs["disjoint"].job, runs["mixed"].job
    assert joint.pretrain is None and not joint.train.get("freeze_backbone", False)
    assert disjoint.pretrain is not None and disjoint.pretrain.loss == "base" and disjoint.train["freeze_backbone"]
    assert mixed.pretrain is not None and mixed.pretrain.loss == "base" and not mixed.train.get("freeze_backbone")
    assert disjoint.pretrain.key == mixed.pretrain.key == runs["base"].job.key  # both reuse the base run
    assert runs["sum-ge"].job.train["gradient_equilibrium"] is True
    assert "gradient_equilibrium" not in joint.train  # added later: out of the keys at its default


def test_mixed_regime_trains_everything_disjoint_only_the_heads(digits) -> None:
    import dataclasses

    from cascade import TrainConfig, train
    from cascade.data import Split

    data = dataclasses.replace(digits, train=Split(digits.train.x[:200], digits.train.y[:200]))
    cfg = TrainConfig(epochs=1, batch_size=32, lr=0.05, momentum=0.9)
    torch.manual_seed(0)
    pre = StudyCNN(channels=(4, 4, 4), hidden=8)
    train(pre, build_loss("base"), data, cfg, seed=0, evaluate=False)
    for freeze in (False, True):
        torch.manual_seed(0)
        model = StudyCNN(channels=(4, 4, 4), hidden=8, exits=("p1", "p2"))
        model.load_state_dict(pre.state_dict(), strict=False)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        train(model, build_loss("sum"), data, dataclasses.replace(cfg, freeze_backbone=freeze), seed=0, evaluate=False)
        changed = {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}
        heads = {k for k in before if k.startswith("exits.") and "num_batches" not in k}
        # weights only: a bias just before batch norm gets no gradient by construction
        backbone = {k for k in before if not k.startswith("exits.") and k.endswith(".weight")}
        assert heads <= changed
        assert (changed & backbone) == (set() if freeze else backbone), freeze


def test_methods_run_end_to_end(tmp_path) -> None:
    from bench.execute.runner import run_suite
    from bench.results.store import ResultStore

    path = tmp_path / "m.toml"
    path.write_text(METHODS_SUITE)
    summary = run_suite(path, out_dir=tmp_path / "out", progress=False, log=lambda s: None)
    assert summary.failed == [] and summary.done == 9
    recs = {r.variant: r for r in ResultStore(tmp_path / "out").iter_runs()}
    assert recs["distill"].training.loss_state["temperature"] >= 1.0
    cal = recs["calibrated"].calibration
    assert cal.method == "temperature" and len(cal.temperatures) == 3 and all(t > 0 for t in cal.temperatures)
    assert len(cal.ece_test_calibrated) == 3 and recs["joint"].calibration.temperatures is None
    assert recs["joint"].calibration.ece_test == pytest.approx(cal.ece_test)  # same training, same raw outputs
    # calibration changes which samples leave, never what an exit predicts
    assert recs["calibrated"].exits.test_accuracy == recs["joint"].exits.test_accuracy
    for r in recs.values():
        assert all(t.dynamic_matches_masked in (True, None) for t in r.thresholds), r.variant
    assert 0 < recs["ztw"].cost_curve["area"] <= 1 and recs["ztw"].cost_curve["points"] > 3
    if importlib.util.find_spec("onnxruntime") is not None:  # the fitted options travel with the export
        from bench.execute.export import export_run

        for variant in ("ztw", "calibrated"):
            out = export_run(tmp_path / "out", variant=variant, out=tmp_path / variant, checkpoint_cache=False)
            assert out.check["decisions_differing_from_eager"] == 0, variant
            assert out.test_accuracy == pytest.approx(recs[variant].at(0.6).accuracy), variant
    head = next(t for t in recs["calibrated"].thresholds if t.threshold == 0.6)
    assert head.dynamic_matches_masked is True

    ztw = recs["ztw"]
    assert ztw.policy_fit["split"] == "train" and len(ztw.policy_fit["ensemble_weights"]) == 2
    assert len(ztw.exits.policy_test_accuracy) == 3 and recs["joint"].exits.policy_test_accuracy is None
    assert ztw.exits.policy_test_accuracy[-1] == ztw.exits.test_accuracy[-1]  # the last exit is the network's own
    joint_macs = [e.macs for e in recs["joint"].cost.per_exit]
    # the same backbone and heads plus the cascading link (K x K) at p2 and the ensembles' (k + 1) K
    assert [e.macs for e in ztw.cost.per_exit] == [
        joint_macs[0] + 10,
        joint_macs[1] + 100 + 10 + 20,
        joint_macs[2] + 100 + 30,
    ]
    for t in ztw.thresholds:  # counted while the real dynamic forward ran, ensembles included
        assert t.dynamic_matches_masked is not False
        if t.macs_counted is not None:
            assert t.macs_counted == pytest.approx(t.macs_expected, rel=1e-6)
    _ztw_ece_is_the_ensembles(path, tmp_path / "out", ztw)
    assert recs["joint"].calibration.logits == "heads"


def _ztw_ece_is_the_ensembles(suite: Path, out: Path, ztw: Any) -> None:
    """ZTW's recorded ECE is that of the ensembles its policy decides on (recomputed here from the checkpoint)."""
    from bench.config.load import load_suite
    from bench.config.plan import build_for, expand_runs
    from bench.execute.evaluate import fitted_options
    from bench.execute.training import get_data

    spec = next(r for r in expand_runs(load_suite(suite)) if r.key == ztw.key)
    data = get_data(spec.data, "cpu")
    model = build_for(spec.job, data)
    model.load_state_dict(torch.load(out / "checkpoints" / f"{ztw.train_key}.pt", weights_only=True)["state_dict"])
    with torch.no_grad():
        logits = model.eval()(data.test.x).logits
    policy = build_policy("ztw-ensemble", **fitted_options("ztw-ensemble", ztw.policy_fit))
    ece = [expected_calibration_error(z, data.test.y) for z in transformed_logits(logits, policy)]
    assert ztw.calibration.logits == "ensemble" and ztw.calibration.ece_test == pytest.approx(ece, abs=1e-6)
    raw = [expected_calibration_error(z, data.test.y) for z in logits]
    assert ece[-1] == pytest.approx(raw[-1]) and ece[0] != pytest.approx(raw[0])  # the last exit is the network's


# --------------------------------------------------------------------------- Zero-Time-Waste


def test_cascading_head_equals_ztws_concatenated_layer() -> None:
    from cascade.heads import CascadingHead

    torch.manual_seed(0)
    inner = nn.Sequential(nn.Flatten(), nn.Linear(6, 3))
    head = CascadingHead(inner, 3)
    with torch.no_grad():
        head.norm.weight.uniform_(0.5, 1.5)
        head.norm.bias.uniform_(-0.5, 0.5)
    x, prev = torch.randn(4, 2, 3), torch.randn(4, 3, requires_grad=True)
    # ZTW: Linear(features + K -> K) on [features, LayerNorm(prev.detach())]
    concat = nn.Linear(6 + 3, 3)
    with torch.no_grad():
        concat.weight.copy_(torch.cat([inner[1].weight, head.link.weight], dim=1))
        concat.bias.copy_(inner[1].bias)
    want = concat(torch.cat([x.flatten(1), head.norm(prev.detach())], dim=1))
    got = head(x, prev)
    assert torch.allclose(got, want, atol=1e-6)
    got.sum().backward()
    assert prev.grad is None  # the previous exit's logits are detached


def test_cascading_model_dynamic_equals_masked_and_ort() -> None:
    pytest.importorskip("onnxruntime")
    from cascade.models import build_model
    from cascade.ort import OrtCascade
    from cascade.ztw import fit_ensemble

    torch.manual_seed(0)
    model = build_model("study_cnn", channels=[4, 4, 4], hidden=8, exits=["p1", "p2"], cascading_heads=True).eval()
    with torch.no_grad():  # a spread of confidences
        for name, p in model.named_parameters():
            if name.startswith("exits.") and name.endswith("weight") and p.dim() == 2:
                p.mul_(15)
    x = torch.randn(57, 1, 28, 28)
    logits = model(x).logits
    # labels the first exit predicts for half the samples, random for the rest: with random labels alone the best
    # ensemble ignores its members (the class bias alone, one confidence for all), with its own labels alone it
    # sharpens them to one-hot (confidence 1 for all); either way nothing would split the batch
    y = logits[0].argmax(1)
    y[::2] = torch.randint(0, 10, (len(y[::2]),), generator=torch.Generator().manual_seed(0))
    weights, biases = fit_ensemble(logits, y)
    ztw = build_policy(
        "ztw-ensemble",
        threshold=0.5,
        ensemble_weights=tuple(map(tuple, weights)),
        ensemble_biases=tuple(map(tuple, biases)),
    )
    ort = OrtCascade.from_model(model, x[:2])
    for policy in (build_policy("max-prob", threshold=0.5), ztw):
        conf = policy.confidence(transformed_logits(logits, policy)[0]).sort().values
        mid = len(conf) // 2  # about half leave at exit 1; the threshold between two samples, no ties
        policy = dataclasses.replace(policy, threshold=float(conf[mid].detach() + conf[mid + 1].detach()) / 2)
        ref = masked_decisions(logits, policy)
        assert 0 < int((ref.exit_index == 0).sum()) < len(x)  # some leave early, some do not
        for batch in (1, 7, 57):
            dyn = [dynamic_forward(model, x[i : i + batch], policy) for i in range(0, len(x), batch)]
            assert torch.equal(torch.cat([d.exit_index for d in dyn]), ref.exit_index), (policy.name, batch)
            assert torch.equal(torch.cat([d.predictions for d in dyn]), ref.predictions), (policy.name, batch)
            onnx = [ort.dynamic(x[i : i + batch].numpy(), policy) for i in range(0, len(x), batch)]
            assert torch.equal(torch.cat([o.exit_index for o in onnx]), ref.exit_index), (policy.name, batch)
    assert all(np_close(a, b) for a, b in zip(ort.full(x.numpy()), logits))


def np_close(a, b) -> bool:
    return torch.allclose(torch.from_numpy(a), b, atol=1e-4)


def test_ztw_ensemble_by_hand() -> None:
    from cascade.ztw import ensemble_logits

    lp0 = torch.log(torch.tensor([[0.5, 0.5]]))
    lp1 = torch.log(torch.tensor([[0.8, 0.2]]))
    # weights exp(log 2) = 2 and exp(0) = 1, averaged over 2 members: 1 x lp0 + 0.5 x lp1, plus the bias
    e = ensemble_logits([lp0, lp1], torch.tensor([math.log(2.0), 0.0]), torch.tensor([0.1, -0.1]))
    want = [math.log(0.5) + 0.5 * math.log(0.8) + 0.1, math.log(0.5) + 0.5 * math.log(0.2) - 0.1]
    assert e[0].tolist() == pytest.approx(want)
    policy = build_policy(
        "ztw-ensemble",
        threshold=0.5,
        ensemble_weights=((0.0,), (math.log(2.0), 0.0)),
        ensemble_biases=((0.0, 0.0), (0.1, -0.1)),
    )
    z = [torch.tensor([[0.0, 0.0]]), torch.log(torch.tensor([[0.8, 0.2]])), torch.tensor([[0.0, 3.0]])]
    out = masked_decisions(z, policy)
    # exit 1: the ensemble of one uniform member is uniform (0.5, not > 0.5); exit 2: softmax(e) above
    p = torch.softmax(torch.tensor(want), 0)
    assert float(p.max()) > 0.5 and out.exit_index.tolist() == [1] and out.predictions.tolist() == [0]
    assert policy.extra_macs(0, 10) == 10 and policy.extra_macs(1, 10) == 20 and policy.extra_macs(2, 10) == 0
    with pytest.raises(ValueError, match="no fitted ensemble"):
        masked_decisions(z, build_policy("ztw-ensemble", threshold=0.5))


def test_ztw_fit_minimises_the_ensembles_cross_entropy() -> None:
    from cascade.ztw import ensemble_logits, fit_ensemble

    torch.manual_seed(0)
    y = torch.randint(0, 3, (300,))
    noise = torch.randn(300, 3)
    informative = 4.0 * nn.functional.one_hot(y, 3).float() + torch.randn(300, 3)
    weights, biases = fit_ensemble([noise, informative, informative], y)
    w1, b1 = torch.tensor(weights[1], dtype=torch.float64), torch.tensor(biases[1], dtype=torch.float64)
    lps = [nn.functional.log_softmax(z.double(), 1) for z in (noise, informative)]
    fitted = nn.functional.cross_entropy(ensemble_logits(lps, w1, b1), y)
    start = nn.functional.cross_entropy(
        ensemble_logits(lps, torch.zeros(2, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)), y
    )
    assert float(fitted) < float(start)
    assert weights[1][1] > weights[1][0]  # the informative member weighs more
    w1.requires_grad_(True)
    b1.requires_grad_(True)
    nn.functional.cross_entropy(ensemble_logits(lps, w1, b1), y).backward()
    assert float(w1.grad.abs().max()) < 1e-4 and float(b1.grad.abs().max()) < 1e-4  # a minimum


def test_cascading_heads_need_two_intermediate_exits(tmp_path) -> None:
    from cascade.models import build_model

    with pytest.raises(ValueError, match="cascading_heads needs at least two intermediate exits"):
        build_model("study_cnn", channels=[4, 4, 4], hidden=8, exits=["p1"], cascading_heads=True)
    with pytest.raises(ValueError, match="cascading_heads must be true or false"):
        build_model("study_cnn", channels=[4, 4, 4], hidden=8, exits=["p1", "p2"], cascading_heads="yes")


def test_exact_cost_curve_equals_a_brute_force_sweep() -> None:
    import numpy as np

    from bench.analyse.curves import cost_area, exact_cost_curve

    rng = np.random.default_rng(0)
    n = 60
    conf = np.round(rng.random((n, 2)), 2)  # rounded: ties between samples and exits
    correct = rng.random((n, 3)) < 0.7
    costs = [0.2, 0.5, 1.0]
    cost, acc = exact_cost_curve(conf, correct, costs)

    def sweep(t: float) -> tuple[float, float]:
        leave = conf > t
        exit_ = np.where(leave[:, 0], 0, np.where(leave[:, 1], 1, 2))
        return float(np.mean(np.take(costs, exit_))), float(np.mean(correct[np.arange(n), exit_]))

    values = np.unique(np.maximum.accumulate(conf, axis=1))
    brute = sorted({sweep(1.0), *(sweep(v - 1e-9) for v in values)})
    ours = sorted(zip(cost.tolist(), acc.tolist()))
    assert len(ours) == len(brute) and np.allclose(ours, brute)
    assert (cost[0], acc[0]) == pytest.approx((0.2, correct[:, 0].mean()))  # t -> 0: everybody at exit 1
    assert (cost[-1], acc[-1]) == pytest.approx((1.0, correct[:, 2].mean()))  # t = 1: everybody at the last
    flat = np.array([0.2, 0.6, 1.0]), np.array([0.5, 0.5, 0.5])
    assert cost_area(*flat) == pytest.approx(0.5)
    assert cost_area(np.array([0.0, 1.0]), np.array([0.0, 1.0])) == pytest.approx(0.5)


def test_methods_page_reads_each_claim_against_its_comparator(tmp_path) -> None:
    from bench.execute.runner import run_suite
    from bench.verdicts import methods

    path = tmp_path / "m.toml"
    renamed = [{**v, "name": "sum"} if v["name"] == "joint" else v for v in METHOD_VARIANTS]
    path.write_text(methods_suite(renamed))  # the page's joint-training reference
    run_suite(path, out_dir=tmp_path / "out", progress=False, log=lambda s: None, only=["sum", "distill", "mixed"])
    text = methods.render([tmp_path / "out"])
    assert "## Leaderboard: out (digits)" in text and "| distill | 1 |" in text
    line = next(x for x in text.splitlines() if x.startswith("| distill-early-exits |"))
    assert "| untestable | n = 1: fewer than two paired seeds |" in line  # one seed: nothing is tested
    line = next(x for x in text.splitlines() if x.startswith("| mixed-beats-joint |"))
    assert "no runs of sum-2x in this folder" in line  # the regimes are read at equal steps, or not at all


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        (
            'policy_options = { calibrate = "temperature", temperatures = [1.0, 1.0, 1.0] }',
            "policy_options.temperatures: is computed by the harness; remove it",
        ),
        (
            'policy = "ztw-ensemble"\npolicy_options = { ensemble_biases = [] }',
            "policy_options.ensemble_biases: is computed by the harness; remove it",
        ),
        ('policy_options = { calibrate = "platt" }', "calibrate must be one of 'none', 'temperature'"),
        ("loss_options = { exit_costs = [0.1, 0.5, 1.0] }", "loss_options.exit_costs: is computed by the harness"),
        ('model_options = { cascading_heads = true }\nexits = ["p1"]', "cascading_heads needs at least two"),
    ],
)
def test_method_options_are_checked_at_validation(tmp_path, variant: str, message: str) -> None:
    from bench.config.load import load_suite
    from bench.config.suite import SuiteError

    text = METHODS_SUITE.split("[[variants]]")[0] + f'[[variants]]\nname = "x"\nloss = "sum"\n{variant}\n'
    if "exits =" not in variant:
        text = text.replace('loss = "sum"\n', 'loss = "sum"\nexits = ["p1", "p2"]\n')
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(SuiteError, match=re.escape(message)):
        load_suite(path)
