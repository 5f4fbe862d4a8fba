"""Confidence calibration of each exit: temperature scaling and the expected calibration error.

* Temperature scaling (Guo, Pleiss, Sun, Weinberger, "On Calibration of Modern Neural Networks",
  ICML 2017; their code: gpleiss/temperature_scaling, ``ModelWithTemperature.set_temperature``): one
  scalar T per exit, softmax(z / T), fitted by minimising the negative log-likelihood on held-out data
  (here always the validation split). Their code runs LBFGS on T; the NLL is convex in the inverse
  temperature b = 1 / T, so a bounded scalar search on b (scipy's ``minimize_scalar``) finds the same
  minimum deterministically. T > 1 softens an over-confident exit; the argmax never changes.
* Expected calibration error (Naeini et al. 2015; Guo et al. 2017, eq. 3): the samples are put into
  ``bins`` equal-width bins of confidence max_k p_k (bin m holds confidence in ((m-1)/M, m/M]) and
  ECE = sum_m |B_m| / n * |accuracy(B_m) - mean confidence(B_m)|.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

ECE_BINS = 15  # Guo et al.'s number of bins
_INVERSE_T_RANGE = (1e-3, 100.0)  # b = 1 / T searched in this range (T from 0.01 to 1000)


def expected_calibration_error(logits: torch.Tensor, y: torch.Tensor, bins: int = ECE_BINS) -> float:
    """ECE of softmax(``logits``) against labels ``y``, in [0, 1] (NaN for no samples)."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if len(y) == 0:
        return float("nan")
    probs = F.softmax(logits.double(), dim=1)
    conf, pred = probs.max(dim=1)
    correct = (pred == y).double()
    # bin m (1-based) holds confidence in ((m - 1) / M, m / M]; confidence is > 0 for a softmax
    index = (torch.ceil(conf * bins).long() - 1).clamp(0, bins - 1)
    n = len(y)
    ece = 0.0
    for m in range(bins):
        inside = index == m
        count = int(inside.sum())
        if count:
            ece += count / n * abs(float(correct[inside].mean()) - float(conf[inside].mean()))
    return ece


def nll_at(logits: torch.Tensor, y: torch.Tensor, temperature: float) -> float:
    """Mean negative log-likelihood of softmax(logits / temperature)."""
    return float(F.cross_entropy(logits.double() / temperature, y))


def fit_temperature(logits: torch.Tensor, y: torch.Tensor) -> float:
    """The temperature T > 0 that minimises the NLL of softmax(logits / T) on (logits, y)."""
    from scipy.optimize import minimize_scalar  # noqa: PLC0415  # a third of a second to import: only when fitting

    if len(y) == 0:
        raise ValueError("cannot fit a temperature on no samples (is the validation split empty?)")
    z = logits.detach().double().cpu()
    labels = y.cpu()
    result = minimize_scalar(
        lambda b: nll_at(z, labels, 1.0 / b), bounds=_INVERSE_T_RANGE, method="bounded", options={"xatol": 1e-6}
    )
    return float(1.0 / result.x)


def fit_temperatures(logits: Sequence[torch.Tensor], y: torch.Tensor) -> list[float]:
    """One temperature per exit (every exit's logits on the validation split)."""
    return [fit_temperature(z, y) for z in logits]
