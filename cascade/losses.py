"""Training losses for multi-exit networks, registered by name.

Notation: K classes, exits l = 1..L, V_l = softmax of exit l, y the label.

* ``base``: CE(V_L), the final exit alone (the reference network, or the
  study's pre-training of backbone and final exit).
* ``sum`` ("MSDNet" in the study): sum_l w_l CE(V_l).
* ``soft`` (soft cascade): P* = prod_l V_l renormalised over classes,
  loss = -log P*[y]. Without renormalisation -log prod_l V_l[y] is exactly
  sum_l CE(V_l) (see ``renormalise``).
* ``firm`` (firm cascade, the study's multi-class form):
  f(p) = sigmoid(alpha (p - c)), g(p) = (f(p) - f(0)) / (f(1) - f(0)),
  element-wise on probability vectors;
  P* = g(V_1) V_1 + (1 - g(V_1)) g(V_2) V_2 (element-wise) and for L > 2 the
  same nesting, P*_l = g(V_l) V_l + (1 - g(V_l)) P*_{l+1}, P*_L = g(V_L) V_L;
  loss = -log P*[y] + lambda (1 - g(V_1[y]))  (``penalty_at="label"``)
  or  + lambda (1 - g(max_k V_1[k]))         (``penalty_at="max"``).
  Study defaults alpha = 128, lambda = 0.6, c = 0.5.
* ``firm-gated`` (our generalisation to L exits): q_l = g(max_k V_l[k]),
  reach_l = prod_{k<l} (1 - q_k), theta_l = q_l reach_l (l < L),
  theta_L = reach_L, P* = sum_l theta_l V_l,
  loss = -log P*[y] + lambda sum_l theta_l C_l / C_L, with C_l the
  cumulative cost of exit l (given by the caller as ``exit_costs``).
* ``sum`` with ``weights = "sdn"`` (Shallow-Deep Networks, Kaya et al. 2019): exit l < L weighted
  w_l(e) = min(tau_l, 0.01 + e tau_l / E) in 1-based epoch e of E, w_L = 1, tau_l = C_l / C_L.
* ``distill`` (Phuong & Lampert, ICCV 2019): CE(V_L) + sum_{l<L} [(1 - C) CE(V_l)
  + C T^2 CE(softmax(z_L / T) detached, softmax(z_l / T))], T adaptive or fixed.

All cascade losses are computed in log space. With alpha = 128,
f(0) = sigmoid(-64) ~ 1.6e-28, so a naive sigmoid saturates and
-log P* underflows. We use, for a > b,

    log(sigmoid(a) - sigmoid(b)) = logsig(a) + logsig(-b) + log(1 - exp(-(a - b)))

which gives log g and log(1 - g) without cancellation; the last term is
clamped at a tiny (a - b) so gradients stay finite when a probability is
exactly 0 or 1.

Every loss is a callable ``loss(logits, target) -> scalar`` (mean over the
batch) taking the per-exit logits. Losses whose sharpness warms up expose
``set_epoch(epoch)``, which the trainer calls at the start of each epoch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, cast

import torch
import torch.nn.functional as F

from cascade._registry import Registry

_TINY = 1e-12  # smallest (a - b) used inside log1mexp; keeps d/dp log g finite at p = 0


def log1mexp(d: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(-d)) for d > 0, accurate for small and large d (Maechler 2012)."""
    d = d.clamp_min(_TINY)
    return torch.where(d < math.log(2.0), torch.log(-torch.expm1(-d)), torch.log1p(-torch.exp(-d)))


def log_sigmoid_diff(a: torch.Tensor | float, b: torch.Tensor | float) -> torch.Tensor:
    """log(sigmoid(a) - sigmoid(b)) for a >= b, in log space."""
    a_t = torch.as_tensor(a)
    b_t = torch.as_tensor(b, dtype=a_t.dtype, device=a_t.device)
    return F.logsigmoid(a_t) + F.logsigmoid(-b_t) + log1mexp(a_t - b_t)


def log_gate(p: torch.Tensor, *, alpha: float, centre: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(log g(p), log(1 - g(p))) for probabilities p in [0, 1], element-wise.

    g(p) = (f(p) - f(0)) / (f(1) - f(0)) with f(p) = sigmoid(alpha (p - centre)),
    so g(0) = 0 and g(1) = 1 exactly.
    """
    lo = -alpha * centre  # alpha (0 - c)
    hi = alpha * (1.0 - centre)  # alpha (1 - c)
    z = alpha * (p - centre)
    log_norm = log_sigmoid_diff(torch.tensor(hi, dtype=p.dtype), torch.tensor(lo, dtype=p.dtype)).to(p.device)
    log_g = log_sigmoid_diff(z, torch.full_like(z, lo)) - log_norm
    log_1mg = log_sigmoid_diff(torch.full_like(z, hi), z) - log_norm
    return log_g, log_1mg


def gate(p: torch.Tensor, *, alpha: float, centre: float = 0.5) -> torch.Tensor:
    """g(p) itself (for reports and tests)."""
    return log_gate(p, alpha=alpha, centre=centre)[0].exp()


class Loss:
    """Base class. Subclasses are dataclasses whose fields are the loss options."""

    name: ClassVar[str]
    min_exits: ClassVar[int] = 1
    #: TOML spelling -> field name, for options whose natural name is a Python keyword.
    aliases: ClassVar[dict[str, str]] = {}
    #: Pre-training a variant with this loss gets unless the suite says otherwise ("none", "base", "sum").
    default_pretrain: ClassVar[str] = "none"
    #: Options the harness computes and passes in (not settable in a suite), e.g. per-exit costs.
    harness_options: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def harness_values(cls, *, relative_exit_costs: Sequence[float]) -> dict[str, Any]:
        """Values of :attr:`harness_options` from what the harness knows (C_l / C_L in MACs)."""
        return {}

    @classmethod
    def needs_harness_values(cls, options: Mapping[str, Any]) -> bool:
        """Whether a loss with these (TOML) options uses :attr:`harness_options` (computing them costs a build)."""
        return bool(cls.harness_options)

    def __call__(self, logits: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check_exits(self, num_exits: int) -> None:
        if num_exits < self.min_exits:
            raise ValueError(f"loss {self.name!r} needs at least {self.min_exits} exits, the model has {num_exits}")

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer before each epoch (0-based)."""

    def start(self, epochs: int) -> None:
        """Called by the trainer once before training, with the number of epochs it will run."""

    def state(self) -> dict[str, Any]:
        """What the loss adapted during training (e.g. a temperature), recorded in the run's history."""
        return {}


LOSSES: Registry[type[Loss]] = Registry("loss")


@LOSSES.register("base")
@dataclass
class BaseLoss(Loss):
    """CE of the final exit only; intermediate heads (if any) get no gradient."""

    name: ClassVar[str] = "base"

    def __call__(self, logits: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits[-1], target)


@LOSSES.register("sum")
@dataclass
class SumLoss(Loss):
    """sum_l w_l CE(V_l) ("MSDNet" in the study); ``weights = "sdn"`` grows the exit weights as SDN does.

    SDN's schedule, from yigitcankaya/Shallow-Deep-Networks (``model_funcs.py``, ``sdn_train``): in
    1-based epoch e of E, ``cur_coeffs = min(max_coeffs, 0.01 + e * max_coeffs / E)`` for the internal
    classifiers and 1 for the final one, where ``max_coeffs`` (tau_l) are the classifiers' positions as a
    share of the network's cost (0.15, 0.3, ..., 0.9 there). Here tau_l = C_l / C_L in MACs, which the
    harness passes as ``exit_costs``.
    """

    name: ClassVar[str] = "sum"
    harness_options: ClassVar[tuple[str, ...]] = ("exit_costs",)
    weights: list[float] | str | None = None  # one weight per exit; None = all 1; "sdn" = SDN's growing weights
    exit_costs: list[float] | None = None  # C_l / C_L per exit (SDN's tau_l); from the harness
    _epoch: int = field(default=0, init=False, repr=False)
    _epochs: int = field(default=1, init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.weights, str) and self.weights != "sdn":
            raise ValueError(f"loss 'sum': weights must be a list of numbers or \"sdn\", got {self.weights!r}")

    @classmethod
    def harness_values(cls, *, relative_exit_costs: Sequence[float]) -> dict[str, Any]:
        return {"exit_costs": list(relative_exit_costs)}

    @classmethod
    def needs_harness_values(cls, options: Mapping[str, Any]) -> bool:
        return options.get("weights") == "sdn"

    def check_exits(self, num_exits: int) -> None:
        super().check_exits(num_exits)
        if isinstance(self.weights, list) and len(self.weights) != num_exits:
            raise ValueError(f"loss 'sum': weights has {len(self.weights)} entries, the model has {num_exits} exits")

    def start(self, epochs: int) -> None:
        self._epochs = max(epochs, 1)

    def set_epoch(self, epoch: int) -> None:
        self._epoch = epoch

    def current_weights(self, num_exits: int) -> list[float]:
        """The weight of each exit in the current epoch."""
        if self.weights == "sdn":
            taus = self.exit_costs or [(k + 1) / num_exits for k in range(num_exits)]
            e = self._epoch + 1  # SDN counts epochs from 1
            return [min(tau, 0.01 + e * tau / self._epochs) for tau in taus[:-1]] + [1.0]
        return list(self.weights) if isinstance(self.weights, list) else [1.0] * num_exits

    def __call__(self, logits: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        weights = self.current_weights(len(logits))
        return torch.stack([w * F.cross_entropy(z, target) for w, z in zip(weights, logits)]).sum()


@LOSSES.register("distill")
@dataclass
class DistillLoss(Loss):
    """Self-distillation from the final exit (Phuong & Lampert, "Distillation-based training for multi-exit
    architectures", ICCV 2019; mary-phuong/multiexit-distillation, ``DistillationBasedLoss`` and
    ``DistillationLossConstTemp``).

    loss = CE(z_L, y) + sum_{l<L} [(1 - C) CE(z_l, y) + C T^2 H(p_T, q_l)], with p_T = softmax(z_L / T)
    detached (the teacher) and q_l = softmax(z_l / T). Adaptive T (their default): T starts at ``T`` and,
    after every training step whose teacher's mean max-probability ``mean_b max_k p_T`` exceeds
    ``maxprob``, is multiplied by ``Tmult``. ``adaptive = false`` keeps T fixed. Their code also scales the
    final exit's CE by (1 - C); ``scale_final = true`` does that (default off: the final exit is trained
    with plain cross-entropy, as the paper's text says).
    """

    name: ClassVar[str] = "distill"
    min_exits: ClassVar[int] = 2
    aliases: ClassVar[dict[str, str]] = {"C": "c", "T": "t", "Tmult": "t_mult"}
    c: float = 0.5  # C, the weight of the distillation term
    maxprob: float = 0.5  # target mean max-probability of the tempered teacher
    t_mult: float = 1.05  # Tmult, the temperature's growth factor per step
    t: float = 1.0  # T: the starting temperature (adaptive) or the fixed one
    adaptive: bool = True  # grow T while the teacher is more confident than maxprob
    scale_final: bool = False  # multiply the final exit's CE by (1 - C) as their code does
    _t_now: float = field(default=float("nan"), init=False, repr=False)

    def __post_init__(self) -> None:
        checks = [
            ("C", 0.0 <= self.c <= 1.0, "in [0, 1]"),
            ("maxprob", 0.0 < self.maxprob <= 1.0, "in (0, 1]"),
            ("Tmult", math.isfinite(self.t_mult) and self.t_mult >= 1.0, "a finite number >= 1"),
            ("T", math.isfinite(self.t) and self.t > 0, "a finite number > 0"),
        ]
        for option, ok, allowed in checks:
            if not ok:
                raise ValueError(f"loss 'distill': {option} must be {allowed}")
        self._t_now = self.t

    def start(self, epochs: int) -> None:
        self._t_now = self.t

    def state(self) -> dict[str, Any]:
        return {"temperature": self._t_now}

    def __call__(self, logits: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        temp = self._t_now
        final = F.cross_entropy(logits[-1], target)
        loss = (1.0 - self.c) * final if self.scale_final else final
        teacher = F.softmax(logits[-1].detach() / temp, dim=1)
        for z in logits[:-1]:
            soft_ce = -(teacher * F.log_softmax(z / temp, dim=1)).sum(dim=1).mean()
            loss = loss + (1.0 - self.c) * F.cross_entropy(z, target) + self.c * temp**2 * soft_ce
        if self.adaptive and torch.is_grad_enabled() and float(teacher.amax(dim=1).mean()) > self.maxprob:
            self._t_now = temp * self.t_mult
        return loss


@LOSSES.register("soft")
@dataclass
class SoftCascadeLoss(Loss):
    """-log P*[y], P* = prod_l V_l renormalised over classes."""

    name: ClassVar[str] = "soft"
    min_exits: ClassVar[int] = 2
    renormalise: bool = True  # False gives -log prod_l V_l[y], which equals the sum of CEs

    def __call__(self, logits: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        log_prod = torch.stack([F.log_softmax(z, dim=1) for z in logits]).sum(0)  # (B, K)
        if self.renormalise:
            log_prod = log_prod - torch.logsumexp(log_prod, dim=1, keepdim=True)
        return -log_prod.gather(1, target[:, None]).mean()


@dataclass
class _GatedLoss(Loss):
    """Shared options of the firm losses: sharpness alpha (with warm-up), centre, lambda."""

    aliases: ClassVar[dict[str, str]] = {"lambda": "lam"}
    min_exits: ClassVar[int] = 2
    alpha: float = 128.0  # sharpness of the gate f(p) = sigmoid(alpha (p - centre))
    lam: float = 0.6  # weight of the penalty ("lambda" in TOML)
    centre: float = 0.5  # c, the probability at which the gate is half open
    alpha_warmup_epochs: int = 0  # reach alpha after this many epochs (0 = no warm-up)
    alpha_start: float = 1.0  # alpha at epoch 0 when warming up; grows geometrically
    _alpha_now: float = field(default=float("nan"), init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("alpha", "lam", "centre", "alpha_start"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{self.aliases_inverse().get(name, name)} must be finite, got {getattr(self, name)}")
        if self.alpha <= 0 or self.alpha_start <= 0:
            raise ValueError(f"alpha and alpha_start must be > 0, got {self.alpha}, {self.alpha_start}")
        if not 0.0 < self.centre < 1.0:
            raise ValueError(f"centre must be in (0, 1), got {self.centre}")
        if self.lam < 0:
            raise ValueError(f"lambda must be >= 0, got {self.lam}")
        if self.alpha_warmup_epochs < 0:
            raise ValueError(f"alpha_warmup_epochs must be >= 0, got {self.alpha_warmup_epochs}")
        self._alpha_now = self.alpha_at(0)

    @classmethod
    def aliases_inverse(cls) -> dict[str, str]:
        return {v: k for k, v in cls.aliases.items()}

    def alpha_at(self, epoch: int) -> float:
        """alpha_start * (alpha / alpha_start) ** (epoch / N), capped at alpha."""
        n = self.alpha_warmup_epochs
        if n == 0 or epoch >= n:
            return self.alpha
        return self.alpha_start * (self.alpha / self.alpha_start) ** (epoch / n)

    def set_epoch(self, epoch: int) -> None:
        self._alpha_now = self.alpha_at(epoch)

    def _log_gate(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return log_gate(p, alpha=self._alpha_now, centre=self.centre)


@LOSSES.register("firm")
@dataclass
class FirmCascadeLoss(_GatedLoss):
    """The study's element-wise firm cascade (see the module docstring)."""

    name: ClassVar[str] = "firm"
    default_pretrain: ClassVar[str] = "base"  # the study pre-trains backbone and final exit with base
    penalty_at: Literal["label", "max"] = "label"  # how the vector penalty (1 - g(V_1)) is reduced

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.penalty_at not in ("label", "max"):
            raise ValueError(f"penalty_at must be 'label' or 'max', got {self.penalty_at!r}")

    def __call__(self, logits: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        idx = target[:, None]
        log_v = [F.log_softmax(z, dim=1).gather(1, idx).squeeze(1) for z in logits]  # L x (B,)
        gates = [self._log_gate(lv.exp()) for lv in log_v]
        # Innermost term: g(V_L) V_L, then P*_l = g(V_l) V_l + (1 - g(V_l)) P*_{l+1}.
        log_p = gates[-1][0] + log_v[-1]
        for lv, (log_g, log_1mg) in zip(reversed(log_v[:-1]), reversed(gates[:-1])):
            log_p = torch.logaddexp(log_g + lv, log_1mg + log_p)
        if self.penalty_at == "label":
            penalty = gates[0][1].exp()
        else:
            conf = F.softmax(logits[0], dim=1).amax(dim=1)
            penalty = self._log_gate(conf)[1].exp()
        return (-log_p + self.lam * penalty).mean()


@LOSSES.register("firm-gated")
@dataclass
class GatedCascadeLoss(_GatedLoss):
    """Exit-probability mixture with an expected-cost penalty (see the module docstring)."""

    name: ClassVar[str] = "firm-gated"
    default_pretrain: ClassVar[str] = "sum"  # the gate needs trained exit heads to open
    harness_options: ClassVar[tuple[str, ...]] = ("exit_costs",)
    exit_costs: list[float] | None = None  # C_l / C_L per exit (cumulative cost share); None = all 1

    @classmethod
    def harness_values(cls, *, relative_exit_costs: Sequence[float]) -> dict[str, Any]:
        return {"exit_costs": list(relative_exit_costs)}

    def check_exits(self, num_exits: int) -> None:
        super().check_exits(num_exits)
        if self.exit_costs is not None and len(self.exit_costs) != num_exits:
            raise ValueError(
                f"loss 'firm-gated': exit_costs has {len(self.exit_costs)} entries, the model has {num_exits} exits"
            )

    def log_theta(self, logits: Sequence[torch.Tensor]) -> torch.Tensor:
        """log theta_l, shape (L, B): the probability of leaving at exit l."""
        log_reach = torch.zeros_like(logits[0][:, 0])
        out = []
        for z in logits[:-1]:
            conf = F.softmax(z, dim=1).amax(dim=1)
            log_q, log_1mq = self._log_gate(conf)
            out.append(log_q + log_reach)
            log_reach = log_reach + log_1mq
        out.append(log_reach)
        return torch.stack(out)

    def __call__(self, logits: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        log_theta = self.log_theta(logits)  # (L, B)
        log_vy = torch.stack([F.log_softmax(z, dim=1).gather(1, target[:, None]).squeeze(1) for z in logits])
        log_p = torch.logsumexp(log_theta + log_vy, dim=0)  # (B,)
        costs = self.exit_costs or [1.0] * len(logits)
        c = torch.tensor(costs, dtype=log_theta.dtype, device=log_theta.device)[:, None]
        penalty = (log_theta.exp() * c).sum(0)
        return (-log_p + self.lam * penalty).mean()


def loss_option_names(name: str) -> list[str]:
    """The option names (TOML spelling) that loss ``name`` accepts."""
    cls = LOSSES.get(name)
    inverse = {v: k for k, v in cls.aliases.items()}
    return [inverse.get(f.name, f.name) for f in dataclasses.fields(cast(Any, cls)) if f.init]


def build_loss(name: str, options: Mapping[str, Any] | None = None, *, num_exits: int | None = None) -> Loss:
    """Build loss ``name`` from TOML-spelled ``options`` and check it against the model's exits.

    Raises:
        UnknownNameError: unknown loss name (lists the known ones).
        ValueError: unknown option (lists the allowed ones) or a bad value.
    """
    cls = LOSSES.get(name)
    options = dict(options or {})
    allowed = loss_option_names(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"loss {name!r} has no option {unknown[0]!r}; allowed: {', '.join(allowed) or 'none'}")
    kwargs = {cls.aliases.get(k, k): v for k, v in options.items()}
    loss = cls(**kwargs)
    if num_exits is not None:
        loss.check_exits(num_exits)
    return loss
