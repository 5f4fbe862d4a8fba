"""Dynamic early exit equals the masked full computation; threshold edge cases."""

from __future__ import annotations

import pytest
import torch

from cascade import StudyCNN, build_policy, dynamic_forward, masked_decisions
from cascade.exits import POLICIES, transformed_logits
from cascade.ztw import fit_ensemble


def tiny_model(exits: tuple[str, ...]) -> StudyCNN:
    torch.manual_seed(0)
    model = StudyCNN(channels=(4, 6, 8), hidden=16, exits=exits).double().eval()
    # Random BN statistics so that eval mode is not the identity.
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model


def fitted(name: str, full: tuple[torch.Tensor, ...]) -> dict:
    """What the harness fits for policy ``name`` (ZTW's ensemble: on these logits, labels = the last exit's)."""
    if name != "ztw-ensemble":
        return {}
    weights, biases = fit_ensemble(full, full[-1].argmax(1))
    return {"ensemble_weights": tuple(map(tuple, weights)), "ensemble_biases": tuple(map(tuple, biases))}


def first_confidence(name: str, full: tuple[torch.Tensor, ...], options: dict) -> torch.Tensor:
    """The policy's confidence at exit 1, as it judges the logits there."""
    policy = build_policy(name, threshold=0.5, **options)
    return policy.confidence(transformed_logits(full, policy)[0])


def policies_for(model: StudyCNN, x: torch.Tensor) -> list:
    """One policy per registered name, with thresholds that split the batch."""
    with torch.no_grad():
        full = model(x).logits
    out = []
    for name in POLICIES.names():
        if POLICIES.get(name).has_threshold:
            options = fitted(name, full)
            conf = first_confidence(name, full, options)
            t = float(conf.median()) if len(conf) > 1 else float(conf[0]) - 1e-3
            out.append(build_policy(name, threshold=min(max(t, 0.0), 1.0), **options))
        else:
            out.append(build_policy(name, patience=1))
    return out


DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("exits", [("p1",), ("p1", "p2")], ids=["2-exits", "3-exits"])
@pytest.mark.parametrize("batch", [1, 257])
def test_dynamic_equals_masked(exits: tuple[str, ...], batch: int, device: str) -> None:
    model = tiny_model(exits).to(device)
    x = torch.randn(batch, 1, 28, 28, dtype=torch.float64, device=device)
    full = model(x).logits
    for policy in policies_for(model, torch.randn(257, 1, 28, 28, dtype=torch.float64, device=device)):
        dyn = dynamic_forward(model, x, policy)
        ref = masked_decisions(full, policy)
        assert torch.equal(dyn.exit_index, ref.exit_index), policy
        assert torch.equal(dyn.predictions, ref.predictions), policy
        assert int(dyn.counts.sum()) == batch
    if batch == 257:  # the thresholds above really split the batch
        res = dynamic_forward(model, x, policies_for(model, x)[0])
        assert 0 < int(res.counts[0]) < batch


@pytest.mark.parametrize("name", [n for n in POLICIES.names() if POLICIES.get(n).has_threshold])
def test_threshold_zero_and_one(name: str) -> None:
    model = tiny_model(("p1", "p2"))
    x = torch.randn(50, 1, 28, 28, dtype=torch.float64)
    with torch.no_grad():
        options = fitted(name, model(x).logits)
    all_first = dynamic_forward(model, x, build_policy(name, threshold=0.0, **options))
    assert all_first.counts.tolist() == [50, 0, 0]
    assert all_first.early_share == 1.0
    none_early = dynamic_forward(model, x, build_policy(name, threshold=1.0, **options))
    assert none_early.counts.tolist() == [0, 0, 50]
    assert none_early.early_share == 0.0


def test_patience_never_leaves_at_first_exit_and_needs_agreement() -> None:
    policy = build_policy("patience", patience=1)
    z_a = torch.tensor([[5.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    z_b = torch.tensor([[5.0, 0.0], [0.0, 5.0], [0.0, 5.0]])
    res = masked_decisions([z_a, z_b, z_b], policy)
    # sample 0: exits 1 and 2 agree -> leaves at exit 2 (index 1); sample 1 disagrees, then agrees at 3.
    assert res.exit_index.tolist() == [1, 2, 1]


def test_policy_rejects_bad_threshold() -> None:
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\]"):
        build_policy("max-prob", threshold=1.5)


@pytest.mark.parametrize("exits", [("p1",), ("p1", "p2")], ids=["2-exits", "3-exits"])
def test_batch_one_fast_path_equals_masked_sample_by_sample(exits: tuple[str, ...]) -> None:
    """dynamic_forward's batch-1 path, one sample at a time over a batch whose samples leave at every exit."""
    model = tiny_model(exits)
    x = torch.randn(64, 1, 28, 28, dtype=torch.float64)
    with torch.no_grad():
        full = model(x).logits
    policies = [build_policy("patience", patience=1)]
    for name in [n for n in POLICIES.names() if POLICIES.get(n).has_threshold]:
        options = fitted(name, full)
        conf = first_confidence(name, full, options).sort().values
        # halfway between two confidences: no sample sits on the threshold, where rounding decides
        policies.append(build_policy(name, threshold=float(conf[20] + conf[21]) / 2, **options))
    for policy in policies:
        ref = masked_decisions(full, policy)
        one = [dynamic_forward(model, x[i : i + 1], policy) for i in range(len(x))]
        assert torch.equal(torch.cat([r.exit_index for r in one]), ref.exit_index), policy
        assert torch.equal(torch.cat([r.predictions for r in one]), ref.predictions), policy
        if policy.has_threshold:
            assert len(set(ref.exit_index.tolist())) >= 2, policy  # both leaving and staying happen


@pytest.mark.parametrize("name", ["max-prob", "entropy"])
@pytest.mark.parametrize("classes", [2, 10, 64])
def test_batch_one_python_confidence_equals_the_tensor_rule(name: str, classes: int) -> None:
    """The batch-1 decision in Python floats (confidence_of) is the tensor confidence: to float64 rounding on
    float64 logits, to float32 rounding on float32 ones; large logits (softmax near one-hot) included."""
    gen = torch.Generator().manual_seed(classes)
    policy = build_policy(name, threshold=0.5)
    for scale in (0.1, 3.0, 40.0):
        for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
            z = (scale * torch.randn(200, classes, generator=gen, dtype=torch.float64)).to(dtype)
            ref = policy.confidence(z).double()
            ours = torch.tensor([policy.confidence_of(row.tolist()) for row in z], dtype=torch.float64)
            assert torch.allclose(ours, ref, rtol=0, atol=tol), (scale, dtype)


def test_batch_one_exit_falls_back_to_tensors_for_many_classes_and_non_finite_logits() -> None:
    """exit_of_one decides and predicts as decide / argmax: in Python for K <= PYTHON_DECISION_CLASSES,
    with tensors above it and wherever a logit is NaN or infinite (torch's rules: NaN compares false and is
    argmax's pick)."""
    from cascade.exits import PYTHON_DECISION_CLASSES, exit_of_one

    gen = torch.Generator().manual_seed(0)
    policy = build_policy("max-prob", threshold=0.3)
    cases = [torch.randn(1, k, generator=gen) for k in (10, PYTHON_DECISION_CLASSES, PYTHON_DECISION_CLASSES + 1, 1000)]
    cases += [torch.tensor([[0.0, float("nan"), 1.0]]), torch.tensor([[0.0, float("inf"), 1.0]])]
    for z in cases:
        leaves = bool(policy.decide(z, {})[0][0])
        expected = int(z.argmax(dim=1)) if leaves else None
        assert exit_of_one(policy, z, {}, last=False)[0] == expected, z
        assert exit_of_one(policy, z, {}, last=True)[0] == int(z.argmax(dim=1)), z
    assert exit_of_one(policy, torch.tensor([[0.0, float("nan"), 1.0]]), {}, last=True)[0] == 1  # argmax's NaN


@pytest.mark.parametrize("name", ["max-prob", "entropy"])
def test_batch_one_decides_as_the_tensor_rule_at_a_threshold_on_the_sample_itself(name: str) -> None:
    """A threshold set at a sample's own (float32, torch) confidence: torch says "stay" (not greater); the Python
    float confidence may land a rounding error above it, so within TIE_BAND the tensor rule decides."""
    from cascade.exits import exit_of_one

    gen = torch.Generator().manual_seed(1)
    for z in torch.randn(50, 1, 10, generator=gen):
        policy = build_policy(name, threshold=float(build_policy(name).confidence(z)[0]))
        assert bool(policy.decide(z, {})[0][0]) is False
        assert exit_of_one(policy, z, {}, last=False)[0] is None


def test_batch_one_result_is_an_early_exit_result_with_its_ints_and_tensors_on_demand() -> None:
    """Batch 1's OneSampleResult: the class and exit as ints, the (1,) tensors as EarlyExitResult's (made on first
    use, then the same object), concatenation and counts as for any result; ties pick the first largest logit,
    as torch.argmax; a call with autograd on leaves the caller's mode as it was."""
    from cascade.exits import EarlyExitResult, OneSampleResult, exit_of_one

    model = tiny_model(("p1",))
    policy = build_policy("max-prob", threshold=0.0)  # everybody leaves at p1
    x = torch.randn(1, 1, 28, 28, dtype=torch.float64, requires_grad=True)
    out = dynamic_forward(model, x, policy)
    assert isinstance(out, OneSampleResult) and isinstance(out, EarlyExitResult)
    expected = int(model.forward_until(x, 0).logits[0].argmax())
    assert (out.predicted, out.level, out.num_exits) == (expected, 0, 2)
    assert out.predictions.tolist() == [expected] and out.exit_index.tolist() == [0]
    assert out.predictions is out.predictions and out.predictions.dtype == torch.long
    assert out.counts.tolist() == [1, 0] and out.early_share == 1.0
    both = EarlyExitResult.concat([out, dynamic_forward(model, x, build_policy("max-prob", threshold=1.0))])
    assert both.exit_index.tolist() == [0, 1] and both.predictions.shape == (2,)
    assert torch.is_grad_enabled()  # the caller's mode is left as it was
    tie = torch.tensor([[1.0, 3.0, 3.0, -2.0]])
    assert exit_of_one(policy, tie, {}, last=True)[0] == int(tie.argmax(dim=1)) == 1
    assert exit_of_one(policy, tie.numpy(), {}, last=True)[0] == 1  # ONNX Runtime's numpy output, same rule
    nan = torch.tensor([[0.0, float("nan"), 1.0]]).numpy()  # numpy NaN: the tensor rule (argmax picks it)
    assert exit_of_one(policy, nan, {}, last=True)[0] == 1
    # policies whose transform is the identity let batch 1 skip it; calibrated and ZTW ones do not
    assert policy.keeps_logits(0) and build_policy("patience").keeps_logits(1)
    assert not build_policy("max-prob", calibrate="temperature", temperatures=(2.0,)).keeps_logits(0)
    assert not build_policy("ztw-ensemble").keeps_logits(0)
