"""The tensor files of a results folder: checkpoints (``torch.save``, written atomically) and per-sample exit outputs
(``.npz``), kept apart from the run files so that reading a folder (``bench list``, ``bench verify``) needs neither
torch nor numpy."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.results.files import atomic_write_bytes


def torch_bytes(obj: Any) -> bytes:
    """``obj`` as ``torch.save`` writes it (a checkpoint's bytes, for :meth:`ResultStore.save_checkpoint`)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save_exit_outputs(
    path: Path,
    val_logits: Sequence[torch.Tensor],
    val_y: torch.Tensor,
    test_logits: Sequence[torch.Tensor],
    test_y: torch.Tensor,
) -> tuple[dict[str, np.ndarray], str]:
    """Per-sample, per-exit predictions and confidences for re-analysis (not committed); returns the arrays
    saved (``{split}_y``, ``{split}_pred``, ``{split}_maxprob``) and the file's SHA-256."""
    arrays: dict[str, np.ndarray] = {}
    for split, logits, y in (("val", val_logits, val_y), ("test", test_logits, test_y)):
        probs = [torch.softmax(z.float(), 1) for z in logits]
        arrays[f"{split}_y"] = y.cpu().numpy().astype(np.int16)
        arrays[f"{split}_pred"] = torch.stack([p.argmax(1) for p in probs], 1).cpu().numpy().astype(np.int16)
        arrays[f"{split}_maxprob"] = torch.stack([p.amax(1) for p in probs], 1).cpu().numpy().astype(np.float32)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds like allow_pickle
    return arrays, atomic_write_bytes(path, buf.getvalue())
