"""Whether two runtimes' cascades decided alike: every differing sample counted, and those where rounding can tip
the decision (a confidence within 1e-6 of the threshold, or two top classes within 1e-6) told apart as ties.

Runtime-neutral: the harness checks every runtime against eager PyTorch with it (``latency.runtimes``), and
``bench export`` checks the exported files the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from cascade.exits import EarlyExitResult, ExitPolicy, dynamic_forward, transformed_logits
from cascade.models._base import MultiExitModel


def agreement(
    a: EarlyExitResult, b: EarlyExitResult, logits: Sequence[torch.Tensor], policy: ExitPolicy, *, tie: float = 1e-6
) -> dict[str, int]:
    """How two runtimes' cascades on the same samples compare; ``logits``: every exit's logits (one runtime).

    A sample on which they differ is a *tie* when, at the first exit where their decisions part, the
    policy's confidence is within ``tie`` of the threshold, or the two top class probabilities are within
    ``tie`` of each other (rounding can then tip either way); every other difference is ``other``.
    """
    differ = (a.exit_index != b.exit_index) | (a.predictions != b.predictions)
    logits = transformed_logits(logits, policy)  # as the policy judges them (calibrated, ...)
    ties = 0
    threshold = getattr(policy, "threshold", None)
    for i in differ.nonzero().flatten().tolist():
        level = int(min(a.exit_index[i], b.exit_index[i]))
        z = logits[level][i : i + 1].double()
        p = torch.softmax(z, 1)[0].sort(descending=True).values
        close_top = float(p[0] - p[1]) <= tie
        close_threshold = threshold is not None and abs(float(policy.confidence(z)[0]) - threshold) <= tie
        ties += bool(close_top or close_threshold)
    n_differ = int(differ.sum())
    return {"samples": len(differ), "differ": n_differ, "ties": ties, "other": n_differ - ties}


@torch.no_grad()
def check_against_eager(
    model: MultiExitModel,
    run: Callable[[torch.Tensor, ExitPolicy], EarlyExitResult],
    x: torch.Tensor,
    policy: ExitPolicy,
    batch: int,
    logits: Sequence[torch.Tensor] | None = None,
) -> tuple[dict[str, int], EarlyExitResult]:
    """Another runtime's cascade (``run`` on torch batches) against eager :func:`dynamic_forward` over ``x`` in
    batches of ``batch``: their :func:`agreement` and the other runtime's result. ``logits``: every exit's
    eager logits on ``x``, when the caller has them already."""
    starts = range(0, len(x), batch)
    eager = EarlyExitResult.concat([dynamic_forward(model, x[i : i + batch], policy) for i in starts])
    other = EarlyExitResult.concat([run(x[i : i + batch], policy) for i in starts])
    return agreement(eager, other, logits if logits is not None else model(x).logits, policy), other
