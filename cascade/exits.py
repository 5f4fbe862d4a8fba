"""Exit policies and real dynamic early-exit inference.

A policy looks at one exit's logits for the samples still in the batch and
says which of them leave. Policies are registered by name:

* ``max-prob`` (the study): confidence = max_k softmax(z)_k; leave when
  confidence > t. t = 0 sends every sample out at the first exit, t = 1 none.
* ``entropy`` (BranchyNet, Teerapittayanon et al. 2016): confidence =
  1 - H(softmax(z)) / log K, in [0, 1]; leave when confidence > t (low entropy).
* ``patience`` (PABEE, Zhou et al. 2020): leave when the prediction has stayed
  the same for ``patience`` consecutive exits (it never leaves at exit 1).

Threshold policies take ``calibrate = "temperature"``: each exit's logits are divided by a
temperature fitted on the validation split (:mod:`cascade.calibration`) before the confidence is
computed; the harness fits them and passes ``temperatures``. A policy may transform each exit's
logits (:meth:`ExitPolicy.transform`, with the per-sample state); the decision and the prediction
both read the transformed logits, in :func:`dynamic_forward` and :func:`masked_decisions` alike.

:func:`dynamic_forward` really removes the samples that left from the batch
before running the next segment, so later segments run only on the rest.
Its predictions and exit choices equal those of :func:`masked_decisions`
applied to the full computation (every exit on every sample); tests check it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from cascade._registry import Registry
from cascade.models._base import MultiExitModel
from cascade.state import rows
from cascade.ztw import ensemble_logits

State = dict[str, torch.Tensor]


class ExitPolicy:
    """Decides, exit by exit, which samples leave. Subclasses are small dataclasses."""

    name: ClassVar[str]
    has_threshold: ClassVar[bool] = True
    #: Options the harness computes and passes in (not settable in a suite), e.g. fitted temperatures.
    harness_options: ClassVar[tuple[str, ...]] = ()

    def transform(self, logits: torch.Tensor, level: int, state: State) -> tuple[torch.Tensor, State]:
        """The logits exit ``level`` (0-based) is judged and predicts by; the default leaves them as they are."""
        return logits, state

    def keeps_logits(self, level: int) -> bool:
        """Whether :meth:`transform` returns exit ``level``'s logits as they are (batch 1 in ONNX Runtime then
        decides on its numpy output without a tensor): true only where the class keeps the default."""
        return type(self).transform is ExitPolicy.transform

    def extra_macs(self, level: int, num_classes: int) -> int:
        """Multiply-adds per sample that :meth:`transform` adds at exit ``level`` (counted in the exit costs)."""
        return 0

    def init_state(self, batch: int, device: torch.device) -> State:
        """Per-sample state carried from exit to exit (indexed by the batch dimension)."""
        return {}

    def decide(self, logits: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """(mask of samples that leave here, new state) for one intermediate exit."""
        raise NotImplementedError

    def confidence(self, logits: torch.Tensor) -> torch.Tensor:
        """The per-sample score compared with the threshold (threshold policies only)."""
        raise NotImplementedError

    def leaves_one(self, values: Sequence[float]) -> bool | None:
        """Whether one sample with (transformed) logits ``values`` leaves, decided in Python floats without
        dispatching a tensor operator; None where the policy has no such rule (the tensor :meth:`decide` runs).
        Batch 1's fast path (:func:`exit_of_one`); within :data:`TIE_BAND` of the threshold it returns None,
        so it never decides otherwise than :meth:`decide`."""
        return None


POLICIES: Registry[type[ExitPolicy]] = Registry("exit policy")
#: how close to the threshold a confidence computed in Python floats must be for the tensor rule to decide
#: instead: far above float32's rounding of a softmax or entropy over <= PYTHON_DECISION_CLASSES classes, so the
#: batch-1 fast path decides exactly as :meth:`ExitPolicy.decide` (a threshold set at a sample's own confidence
#: included)
TIE_BAND = 1e-5
CALIBRATIONS = ("none", "temperature")


@dataclass(frozen=True)
class ThresholdPolicy(ExitPolicy):
    """Leave when the policy's confidence score exceeds ``threshold``."""

    threshold: float = 0.6  # leave when confidence > threshold
    calibrate: str = "none"  # "temperature": each exit's logits / T_l, T_l fitted on validation
    temperatures: tuple[float, ...] = ()  # T_l per exit (from the harness when calibrate = "temperature")
    harness_options: ClassVar[tuple[str, ...]] = ("temperatures",)

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.calibrate not in CALIBRATIONS:
            raise ValueError(f"calibrate must be one of {', '.join(map(repr, CALIBRATIONS))}, got {self.calibrate!r}")
        if any(not t > 0 for t in self.temperatures):
            raise ValueError(f"temperatures must be > 0, got {list(self.temperatures)}")

    def transform(self, logits: torch.Tensor, level: int, state: State) -> tuple[torch.Tensor, State]:
        if self.calibrate == "none":
            return logits, state
        if level >= len(self.temperatures):
            raise ValueError(
                f"policy {self.name!r} with calibrate = {self.calibrate!r} has {len(self.temperatures)} "
                f"temperatures, exit {level + 1} needs one: fit them on the validation split "
                "(cascade.calibration.fit_temperatures)"
            )
        return logits / self.temperatures[level], state

    def decide(self, logits: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        return self.confidence(logits) > self.threshold, state

    def keeps_logits(self, level: int) -> bool:
        return self.calibrate == "none" and type(self).transform is ThresholdPolicy.transform

    def leaves_one(self, values: Sequence[float]) -> bool | None:
        confidence = self.confidence_of(values)
        if confidence is None or abs(confidence - self.threshold) <= TIE_BAND:
            return None  # too close to call across float precisions: the tensor rule decides, as everywhere
        return confidence > self.threshold

    def confidence_of(self, values: Sequence[float]) -> float | None:
        """:meth:`confidence` of one sample's logits as Python floats (None: not implemented)."""
        return None


@POLICIES.register("max-prob")
@dataclass(frozen=True)
class MaxProbPolicy(ThresholdPolicy):
    """confidence = the largest softmax probability (the study's rule)."""

    name: ClassVar[str] = "max-prob"

    def confidence(self, logits: torch.Tensor) -> torch.Tensor:
        return F.softmax(logits, dim=1).amax(dim=1)

    def confidence_of(self, values: Sequence[float]) -> float | None:
        top = max(values)
        return 1.0 / sum(math.exp(v - top) for v in values)  # softmax's largest entry


@POLICIES.register("ztw-ensemble")
@dataclass(frozen=True)
class ZTWEnsemblePolicy(MaxProbPolicy):
    """Zero-Time-Waste's exit rule: at intermediate exit k the geometric weighted ensemble of exits 0..k
    (:mod:`cascade.ztw`) predicts, and its max-probability is the confidence; the last exit is the network's
    own. The weights and biases are fitted on the training split by the harness (``ensemble_weights``,
    ``ensemble_biases``), the network frozen."""

    name: ClassVar[str] = "ztw-ensemble"
    harness_options: ClassVar[tuple[str, ...]] = ("temperatures", "ensemble_weights", "ensemble_biases")
    ensemble_weights: tuple[tuple[float, ...], ...] = ()  # per intermediate exit k: k + 1 log-weights
    ensemble_biases: tuple[tuple[float, ...], ...] = ()  # per intermediate exit k: one bias per class

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.calibrate != "none":
            raise ValueError("policy 'ztw-ensemble' is calibrated by its own fitted weights; leave calibrate unset")
        if len(self.ensemble_weights) != len(self.ensemble_biases) or any(
            len(w) != k + 1 for k, w in enumerate(self.ensemble_weights)
        ):
            raise ValueError("ensemble_weights must hold k + 1 weights for intermediate exit k, one bias row each")

    def transform(self, logits: torch.Tensor, level: int, state: State) -> tuple[torch.Tensor, State]:
        if not self.ensemble_weights:
            raise ValueError(
                "policy 'ztw-ensemble' has no fitted ensemble: fit it on the training split "
                "(cascade.ztw.fit_ensemble) and pass ensemble_weights, ensemble_biases"
            )
        if level >= len(self.ensemble_weights):  # the network's own last exit, as in ZTW
            return logits, state
        state = {**state, f"ztw_log_probs_{level}": F.log_softmax(logits, dim=1)}
        members = [state[f"ztw_log_probs_{i}"] for i in range(level + 1)]
        weights = torch.tensor(self.ensemble_weights[level], dtype=logits.dtype, device=logits.device)
        bias = torch.tensor(self.ensemble_biases[level], dtype=logits.dtype, device=logits.device)
        return ensemble_logits(members, weights, bias), state

    def extra_macs(self, level: int, num_classes: int) -> int:
        return (level + 1) * num_classes if level < len(self.ensemble_weights) else 0


@POLICIES.register("entropy")
@dataclass(frozen=True)
class EntropyPolicy(ThresholdPolicy):
    """confidence = 1 - H / log K."""

    name: ClassVar[str] = "entropy"

    def confidence(self, logits: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits, dim=1)
        entropy = -(log_p.exp() * log_p).sum(dim=1)
        return 1.0 - entropy / math.log(logits.shape[1])

    def confidence_of(self, values: Sequence[float]) -> float | None:
        top = max(values)
        weights = [math.exp(v - top) for v in values]
        total = sum(weights)
        # H = -sum p log p with p = w / total and log p = (v - top) - log total
        entropy = math.log(total) - sum(w * (v - top) for w, v in zip(weights, values)) / total
        return 1.0 - entropy / math.log(len(values))


@POLICIES.register("patience")
@dataclass(frozen=True)
class PatiencePolicy(ExitPolicy):
    """PABEE: leave when the prediction stayed the same for ``patience`` consecutive exits."""

    name: ClassVar[str] = "patience"
    has_threshold: ClassVar[bool] = False
    patience: int = 1  # consecutive exits that must agree with the previous one

    def __post_init__(self) -> None:
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")

    def init_state(self, batch: int, device: torch.device) -> State:
        return {
            "pred": torch.full((batch,), -1, dtype=torch.long, device=device),
            "count": torch.zeros(batch, dtype=torch.long, device=device),
        }

    def decide(self, logits: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        pred = logits.argmax(dim=1)
        count = torch.where(pred == state["pred"], state["count"] + 1, torch.zeros_like(state["count"]))
        return count >= self.patience, {"pred": pred, "count": count}


def build_policy(name: str, **options: Any) -> ExitPolicy:
    """Build policy ``name``; threshold policies take ``threshold`` (and ``calibrate``, ``temperatures``),
    ``patience`` takes ``patience``."""
    return POLICIES.get(name)(**options)


def transformed_logits(logits: Sequence[torch.Tensor], policy: ExitPolicy) -> list[torch.Tensor]:
    """Every exit's logits as ``policy`` judges them (:meth:`ExitPolicy.transform`), on the full batch."""
    state = policy.init_state(logits[0].shape[0], logits[0].device)
    out = []
    for level, z in enumerate(logits):
        t, state = policy.transform(z, level, state)
        out.append(t)
    return out


@dataclass(frozen=True)
class EarlyExitResult:
    """Outcome of cascade inference on a batch."""

    predictions: torch.Tensor  # (B,) predicted class of each sample
    exit_index: torch.Tensor  # (B,) 0-based exit each sample left at
    num_exits: int

    @classmethod
    def concat(cls, parts: Sequence[EarlyExitResult]) -> EarlyExitResult:
        """The results of consecutive batches as one."""
        return cls(
            torch.cat([p.predictions for p in parts]), torch.cat([p.exit_index for p in parts]), parts[0].num_exits
        )

    @property
    def counts(self) -> torch.Tensor:
        """(L,) number of samples that left at each exit."""
        return torch.bincount(self.exit_index, minlength=self.num_exits)

    @property
    def early_share(self) -> float:
        """Share of samples that left before the last exit."""
        return float((self.exit_index < self.num_exits - 1).float().mean()) if len(self.exit_index) else 0.0


class Pieces(Protocol):
    """A multi-exit model as one runtime runs it: exit k is segment k, then head k (:mod:`cascade.runtime`).

    The cascade loop (:func:`run_cascade`) is written once against this: eager PyTorch (:class:`EagerPieces`), ONNX
    Runtime's sessions (:class:`cascade.ort.OrtCascade`) and any runtime a plugin adds run the same decisions, by
    the policy's own code on torch views of their logits.
    """

    num_exits: int
    device: torch.device  # where the decisions run (the logits' device as torch tensors)

    def segment(self, level: int, h: Any) -> Any:
        """Segment ``level`` on the state ``h`` (:mod:`cascade.state`) of the samples still running."""
        ...

    def head(self, level: int, h: Any, previous: Any) -> Any:
        """Exit ``level``'s raw logits in the runtime's own type; ``previous``: exit ``level - 1``'s, for a cascading
        head (ZTW)."""
        ...

    def logits(self, raw: Any) -> torch.Tensor:
        """Raw logits as a (B, K) torch tensor, without a copy where the runtime allows."""
        ...

    def rows(self, h: Any, keep: torch.Tensor) -> Any:
        """The samples a (B,) boolean mask keeps, of a state or of raw logits, in the runtime's own type."""
        ...


class EagerPieces:
    """A :class:`MultiExitModel` as :class:`Pieces`: PyTorch runs it as it is (the ``eager`` runtime)."""

    def __init__(self, model: MultiExitModel, device: torch.device) -> None:
        self.model, self.device = model, device
        self.num_exits = model.num_exits
        self._segments = model.exit_segments

    def segment(self, level: int, h: Any) -> Any:
        return self._segments[level](h)

    def head(self, level: int, h: Any, previous: Any) -> torch.Tensor:
        return self.model.head_logits(level, h, previous)

    def logits(self, raw: torch.Tensor) -> torch.Tensor:
        return raw

    def rows(self, h: Any, keep: torch.Tensor) -> Any:
        return rows(h, keep)


def dynamic_forward(model: MultiExitModel, x: torch.Tensor, policy: ExitPolicy) -> EarlyExitResult:
    """Cascade inference that really skips work: samples that left are dropped from the batch.

    Args:
        model: a multi-exit model in eval mode.
        x: input batch (B, ...).
        policy: the exit rule.

    :func:`run_cascade` on the model as PyTorch runs it. Runs without autograd (a caller already under
    ``torch.no_grad`` pays no context switch; the decorator costs a few microseconds per call at batch 1).
    """
    if torch.is_grad_enabled():
        with torch.no_grad():
            return run_cascade(EagerPieces(model, x.device), x, policy)
    return run_cascade(EagerPieces(model, x.device), x, policy)


def run_until(pieces: Pieces, x: Any, exit_index: int) -> list[Any]:
    """Every exit's raw logits up to ``exit_index`` on the whole batch (what obtaining that exit costs)."""
    out: list[Any] = []
    h = x
    for level in range(exit_index + 1):
        h = pieces.segment(level, h)
        out.append(pieces.head(level, h, out[-1] if out else None))
    return out


def run_cascade(pieces: Pieces, x: Any, policy: ExitPolicy) -> EarlyExitResult:
    """The one cascade loop of every runtime: segment k runs only on the samples that did not leave at exits
    0..k-1; each exit's logits are judged by ``policy`` (transformed, then decided) as torch tensors.

    Its predictions and exits equal :func:`masked_decisions` on every exit's logits (tests check it, per runtime).
    """
    batch = int(x.shape[0])
    if batch == 1:
        return _cascade_one(pieces, x, policy)
    num_exits, device = pieces.num_exits, pieces.device
    predictions = torch.empty(batch, dtype=torch.long, device=device)
    exit_index = torch.empty(batch, dtype=torch.long, device=device)
    remaining = torch.arange(batch, device=device)  # original positions of the samples still running
    state = policy.init_state(batch, device)
    h, raw = x, None
    for level in range(num_exits):
        h = pieces.segment(level, h)
        raw = pieces.head(level, h, raw)  # (b, K) for the b samples still running
        logits, state = policy.transform(pieces.logits(raw), level, state)
        if level == num_exits - 1:
            predictions[remaining] = logits.argmax(dim=1)
            exit_index[remaining] = level
            break
        leave, state = policy.decide(logits, state)
        n_leave = int(leave.sum())  # one host sync per exit; it decides how much work follows
        if n_leave == 0:  # nobody leaves: go on with the batch as it is (no copies)
            continue
        if n_leave == len(remaining):  # everybody leaves: nothing more runs
            predictions[remaining] = logits.argmax(dim=1)
            exit_index[remaining] = level
            break
        left = remaining[leave]
        predictions[left] = logits[leave].argmax(dim=1)
        exit_index[left] = level
        stay = ~leave
        h, raw, remaining = pieces.rows(h, stay), pieces.rows(raw, stay), remaining[stay]
        state = {k: v[stay] for k, v in state.items()}
    return EarlyExitResult(predictions, exit_index, num_exits)


#: the most classes for which batch 1 decides in Python floats (``tolist`` and a K-term loop): below it this
#: beats the 3-4 tensor operators of the decision and the argmax (the two are level near K = 100;
#: docs/measurements.md); above it the tensor path runs
PYTHON_DECISION_CLASSES = 64


def exit_of_one(
    policy: ExitPolicy, logits: torch.Tensor | np.ndarray, state: State, last: bool
) -> tuple[int | None, State]:
    """For one sample's (1, K) transformed logits: (its predicted class if it leaves at this exit, else None;
    the new state). The last exit always answers. Decided in Python floats where the policy can
    (:meth:`ExitPolicy.leaves_one`) and the logits are few and finite, else by the tensor rule. ``logits`` may
    be a numpy array (ONNX Runtime's output), made a tensor only where the tensor rule decides."""
    values = logits.tolist()[0] if logits.shape[1] <= PYTHON_DECISION_CLASSES else None  # no select operator
    if values is not None and not math.isfinite(sum(values)):
        values = None  # NaN / inf: torch's rules (NaN compares false, argmax picks it) decide
    if not last:
        leave = policy.leaves_one(values) if values is not None else None
        if leave is None:
            leave_t, state = policy.decide(torch.as_tensor(logits), state)
            leave = bool(leave_t[0])
        if not leave:
            return None, state
    if values is None:
        return int(torch.as_tensor(logits).argmax(dim=1)), state
    return values.index(max(values)), state  # the first largest (all finite here), as torch.argmax


def _cascade_one(pieces: Pieces, x: Any, policy: ExitPolicy) -> EarlyExitResult:
    """:func:`run_cascade` for one sample: no index bookkeeping, the first exit that says "leave" answers, the
    decision in Python floats (:func:`exit_of_one`), on the runtime's own logits where the policy keeps them as they
    are (batch 1 is where early exit is deployed: benchmarks/bench_runtimes.py measures what this saves)."""
    num_exits = pieces.num_exits
    state = policy.init_state(1, pieces.device)
    h, raw = x, None
    for level in range(num_exits):
        h = pieces.segment(level, h)
        raw = pieces.head(level, h, raw)
        logits = raw
        if not policy.keeps_logits(level):
            logits, state = policy.transform(pieces.logits(raw), level, state)  # (1, K)
        predicted, state = exit_of_one(policy, logits, state, level == num_exits - 1)
        if predicted is not None:
            return one_result(predicted, level, num_exits, pieces.device)
    raise AssertionError("unreachable: the last exit always answers")


def one_result(predicted: int, level: int, num_exits: int, device: torch.device) -> EarlyExitResult:
    """The :class:`EarlyExitResult` of one sample (:class:`OneSampleResult`)."""
    return OneSampleResult(predicted, level, num_exits, device)


class OneSampleResult(EarlyExitResult):
    """One sample's result, from batch 1's fast path: its class and exit as Python ints (``predicted``,
    ``level``: what a caller serving one request wants), the ``(1,)`` tensors of :class:`EarlyExitResult`
    made on first use: two tensor allocations per sample were a third of what a batch-1 cascade spent beyond its
    exit paths (benchmarks/bench_runtimes.py; docs/measurements.md)."""

    predicted: int
    level: int
    device: torch.device

    def __init__(self, predicted: int, level: int, num_exits: int, device: torch.device) -> None:
        # straight into the instance dict: the frozen dataclass's __setattr__ check is most of the cost
        self.__dict__.update(num_exits=num_exits, predicted=predicted, level=level, device=device)

    @functools.cached_property
    def predictions(self) -> torch.Tensor:
        return torch.full((1,), self.predicted, dtype=torch.long, device=self.device)

    @functools.cached_property
    def exit_index(self) -> torch.Tensor:
        return torch.full((1,), self.level, dtype=torch.long, device=self.device)


@torch.no_grad()
def masked_decisions(logits: Sequence[torch.Tensor], policy: ExitPolicy) -> EarlyExitResult:
    """The cascade's choices computed from every exit's logits on the full batch (reference)."""
    num_exits = len(logits)
    batch = logits[0].shape[0]
    device = logits[0].device
    exit_index = torch.full((batch,), num_exits - 1, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    state = policy.init_state(batch, device)
    logits = transformed_logits(logits, policy)
    for level, z in enumerate(logits[:-1]):
        leave, state = policy.decide(z, state)
        first = leave & ~done
        exit_index[first] = level
        done |= leave
    all_preds = torch.stack([z.argmax(dim=1) for z in logits], dim=1)  # (B, L)
    predictions = all_preds.gather(1, exit_index[:, None]).squeeze(1)
    return EarlyExitResult(predictions, exit_index, num_exits)
