"""Zero-Time-Waste's geometric weighted ensemble of exits (Wolczyk et al., NeurIPS 2021).

Their code (gmum/Zero-Time-Waste, ``ztw_cv/architectures/early_exits/ztw.py``,
``GeometricWeightedEnsemble``, ``ZTWEnsembling``): at intermediate exit k (0-based, every exit but the
network's own last one) the ensemble of exits 0..k gives, in log space,

    e_k = mean_{i <= k} exp(w_{k,i}) log softmax(z_i) + b_k

with one learned log-weight per member and one bias per class; its softmax is the exit's prediction and
its max-probability the confidence the threshold is compared with. The ensembles are trained after the
network, with the network frozen, on the training split (cross-entropy of e_k). Here each ensemble is
fitted by full-batch L-BFGS to the minimum of that same objective, from w = 0, b = 0 (their code: SGD
steps from w ~ N(0, 0.01)), which is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def ensemble_logits(log_probs: Sequence[torch.Tensor], log_weights: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """e_k for the k + 1 members ``log_probs`` (each (B, K)): a (B, K) tensor of log-space scores.

    The weighted sum is one matrix product (B*K x (k+1) by (k+1)), so dispatch-level MAC counting sees its
    (k + 1) K multiply-adds per sample.
    """
    stacked = torch.stack(list(log_probs), dim=2)  # (B, K, k+1)
    batch, classes, members = stacked.shape
    scale = (log_weights.exp() / members).reshape(members, 1)
    return torch.mm(stacked.reshape(batch * classes, members), scale).reshape(batch, classes) + bias


def fit_ensemble(
    logits: Sequence[torch.Tensor], y: torch.Tensor, *, max_iter: int = 200
) -> tuple[list[list[float]], list[list[float]]]:
    """(log-weights, biases) of the ensemble at every intermediate exit, fitted on (``logits``, ``y``).

    Args:
        logits: every exit's logits on the training split, the network's last exit included (not ensembled).
        y: the labels.
    """
    if len(logits) < 2:
        raise ValueError("the ZTW ensemble needs at least one intermediate exit")
    if len(y) == 0:
        raise ValueError("cannot fit the ZTW ensemble on no samples")
    log_probs = [F.log_softmax(z.detach().double().cpu(), dim=1) for z in logits[:-1]]
    labels = y.cpu()
    weights, biases = [], []
    for k in range(len(log_probs)):
        w = torch.zeros(k + 1, dtype=torch.float64, requires_grad=True)
        b = torch.zeros(log_probs[0].shape[1], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")
        members = log_probs[: k + 1]

        def closure(
            members: Sequence[torch.Tensor] = members,
            w: torch.Tensor = w,
            b: torch.Tensor = b,
            opt: torch.optim.Optimizer = opt,
        ) -> torch.Tensor:
            opt.zero_grad()
            loss = F.cross_entropy(ensemble_logits(members, w, b), labels)
            loss.backward()
            return loss

        opt.step(closure)
        weights.append(w.detach().tolist())
        biases.append(b.detach().tolist())
    return weights, biases
