"""Loss values against numbers worked out by hand, identities, and numerical safety."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cascade.losses import LOSSES, build_loss, gate, log_gate


def logits_of(*probs: list[float]) -> list[torch.Tensor]:
    """Per-exit logits whose softmax is exactly the given probability rows (batch of 1)."""
    return [torch.tensor([p], dtype=torch.float64).log() for p in probs]


Y1 = torch.tensor([1])

# 2-class toy: V1 = (0.25, 0.75), V2 = (0.5, 0.5), y = 1.
TWO = logits_of([0.25, 0.75], [0.5, 0.5])
# 3-class toy: V1 = (0.2, 0.3, 0.5), V2 = (0.1, 0.6, 0.3), y = 1.
THREE = logits_of([0.2, 0.3, 0.5], [0.1, 0.6, 0.3])


def test_base_is_ce_of_last_exit() -> None:
    assert build_loss("base")(TWO, Y1).item() == pytest.approx(math.log(2))  # -ln 0.5


def test_sum_hand_values() -> None:
    # -ln 0.75 - ln 0.5 = 0.287682 + 0.693147
    assert build_loss("sum")(TWO, Y1).item() == pytest.approx(0.980829, abs=1e-6)
    # -ln 0.3 - ln 0.6
    assert build_loss("sum")(THREE, Y1).item() == pytest.approx(1.714798, abs=1e-6)
    # weights 2 and 0.5: 2 * 1.203973 + 0.5 * 0.510826
    assert build_loss("sum", {"weights": [2.0, 0.5]})(THREE, Y1).item() == pytest.approx(2.663359, abs=1e-6)


def test_soft_hand_values() -> None:
    # product (0.125, 0.375) renormalised -> (0.25, 0.75): -ln 0.75
    assert build_loss("soft")(TWO, Y1).item() == pytest.approx(0.287682, abs=1e-6)
    # product (0.02, 0.18, 0.15), sum 0.35 -> -ln(0.18 / 0.35)
    assert build_loss("soft")(THREE, Y1).item() == pytest.approx(0.664976, abs=1e-6)


def test_soft_without_renormalisation_is_exactly_sum() -> None:
    torch.manual_seed(0)
    logits = [torch.randn(64, 10, dtype=torch.float64) for _ in range(3)]
    y = torch.randint(0, 10, (64,))
    plain = build_loss("soft", {"renormalise": False})(logits, y)
    summed = build_loss("sum")(logits, y)
    assert torch.allclose(plain, summed, rtol=0, atol=1e-12)
    renormalised = build_loss("soft")(logits, y)
    assert (renormalised - summed).abs().item() > 0.1  # renormalisation changes the loss


def test_gate_endpoints_and_hand_value() -> None:
    p = torch.tensor([0.0, 0.3, 0.5, 1.0], dtype=torch.float64)
    g = gate(p, alpha=4.0)
    # g(0.3) = (sigmoid(-0.8) - sigmoid(-2)) / (sigmoid(2) - sigmoid(-2)) = 0.250557
    assert g.tolist() == pytest.approx([0.0, 0.250557, 0.5, 1.0], abs=1e-6)
    log_g, log_1mg = log_gate(p[1:3], alpha=4.0, centre=0.5)
    assert torch.allclose(log_g.exp() + log_1mg.exp(), torch.ones(2, dtype=torch.float64))


def test_firm_hand_values() -> None:
    # alpha 4: g(0.3) = 0.250557, g(0.6) = 0.629580;
    # P* = 0.250557 * 0.3 + 0.749443 * 0.629580 * 0.6 = 0.358268, -ln P* = 1.026474
    opts = {"alpha": 4.0, "lambda": 0.6}
    # label reading: + 0.6 * (1 - 0.250557) = 0.449666
    assert build_loss("firm", opts)(THREE, Y1).item() == pytest.approx(1.476140, abs=1e-6)
    # max reading: max V1 = 0.5, g(0.5) = 0.5 -> + 0.3
    assert build_loss("firm", {**opts, "penalty_at": "max"})(THREE, Y1).item() == pytest.approx(1.326474, abs=1e-6)
    assert build_loss("firm", {"alpha": 4.0, "lambda": 0.0})(THREE, Y1).item() == pytest.approx(1.026474, abs=1e-6)


def test_firm_gated_hand_values() -> None:
    # q1 = g(max V1) = g(0.5) = 0.5: theta = (0.5, 0.5), P* = 0.5 * 0.3 + 0.5 * 0.6 = 0.45
    # penalty 0.6 * (0.5 * 0.4 + 0.5 * 1.0) = 0.42
    loss = build_loss("firm-gated", {"alpha": 4.0, "lambda": 0.6, "exit_costs": [0.4, 1.0]})
    assert loss(THREE, Y1).item() == pytest.approx(-math.log(0.45) + 0.42, abs=1e-6)


def test_firm_reduces_to_last_exit_when_first_gate_is_shut() -> None:
    # V1[y] = 0 exactly (underflow), so g(V1[y]) = 0: P*[y] = g(V2[y]) V2[y] and penalty = lambda.
    z1 = torch.tensor([[0.0, -1000.0, 0.0]])
    z2 = torch.tensor([[0.3, 1.1, -0.4]])
    loss = build_loss("firm", {"lambda": 0.6})([z1, z2], Y1)
    v2y = F.softmax(z2, dim=1)[0, 1]
    expected = -torch.log(gate(v2y, alpha=128.0) * v2y) + 0.6
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # ... which is the last exit's CE (plus lambda) once exit 2 is confident enough that g(V2[y]) = 1.
    z2_sure = torch.tensor([[0.0, 9.0, 0.0]])
    ce = F.cross_entropy(z2_sure, Y1)
    assert build_loss("firm", {"lambda": 0.0})([z1, z2_sure], Y1).item() == pytest.approx(ce.item(), rel=1e-4)
    assert build_loss("firm", {"lambda": 0.6})([z1, z2_sure], Y1).item() == pytest.approx(ce.item() + 0.6, rel=1e-4)


@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize("scale", [1.0, 1e3])
def test_gradients_finite_at_alpha_128(name: str, scale: float) -> None:
    torch.manual_seed(1)
    logits = [(scale * torch.randn(32, 10)).requires_grad_() for _ in range(2)]
    y = torch.randint(0, 10, (32,))
    options = {"alpha": 128.0} if name.startswith("firm") else {}
    loss = build_loss(name, options, num_exits=2)(logits, y)
    loss.backward()
    assert torch.isfinite(loss)
    for z in logits:
        assert z.grad is None or torch.isfinite(z.grad).all()


def test_log_gate_matches_naive_formula_where_naive_is_safe() -> None:
    p = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    for alpha in (2.0, 16.0, 40.0):

        def f(q: torch.Tensor, alpha: float = alpha) -> torch.Tensor:
            return torch.sigmoid(alpha * (q - 0.5))

        zero, one = torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
        naive = (f(p) - f(zero)) / (f(one) - f(zero))
        assert torch.allclose(gate(p, alpha=alpha), naive, rtol=1e-9, atol=1e-12)


def test_alpha_warmup_is_geometric() -> None:
    loss = build_loss("firm", {"alpha": 128.0, "alpha_start": 2.0, "alpha_warmup_epochs": 6})
    assert [loss.alpha_at(e) for e in (0, 3, 6, 9)] == pytest.approx([2.0, 16.0, 128.0, 128.0])


def test_bad_options_are_named() -> None:
    with pytest.raises(ValueError, match="no option 'lamda'.*allowed: .*lambda"):
        build_loss("firm", {"lamda": 0.5})
    with pytest.raises(KeyError, match="unknown loss 'firn'.*did you mean 'firm'"):
        build_loss("firn")
    with pytest.raises(ValueError, match="weights has 3 entries, the model has 2"):
        build_loss("sum", {"weights": [1, 1, 1]}, num_exits=2)
    with pytest.raises(ValueError, match="needs at least 2 exits"):
        build_loss("soft", num_exits=1)
