"""Results on disk: one JSON file per run, written atomically, with provenance.

Layout of an output folder (default ``results/<suite name>/``)::

    runs/<variant>/<key>.json      one file per run (status "ok" or "failed")
    checkpoints/<train key>.pt     trained weights + history (not for git)
    exits/<key>.npz                per-sample exit outputs for re-analysis (not for git)
    summary.csv                    one row per run x threshold
    suite.toml                     the suite as run (with --set overrides applied)

Writes go to a temporary file in the same folder, are fsynced, then
``os.replace``d into place (asv / Sacred style): an interrupted run leaves the
old file or none, never a truncated one. Leftover ``*.tmp`` files are ignored.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

import cascade

SCHEMA_VERSION = 1
_UMASK = os.umask(0)
os.umask(_UMASK)


class StoreError(ValueError):
    """A results folder or file that cannot be read."""


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(obj: Any, n: int = 16) -> str:
    """Short sha256 of the canonical JSON of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:n]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via temp file + fsync + rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; results are ordinary files
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=False, default=str) + "\n").encode())


def atomic_torch_save(path: Path, obj: Any) -> None:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10, cwd=Path(__file__).resolve().parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_version() -> dict[str, Any]:
    """Package version, results version, git commit and dirty flag of the running code.

    A launcher that copies the code elsewhere (a cluster's staging folder, a lent GPU machine)
    sets ``$CASCADE_GIT_COMMIT`` to the commit it copied; that value wins, because a ``.git``
    travelling with such a copy can be stale, and the dirty flag is then unknown (``None``).
    ``git_commit_source`` says where the commit came from; where git there disagrees, its
    answer is kept as ``git_commit_local``.
    """
    commit = _git("rev-parse", "HEAD")
    dirty = None
    if commit is not None:
        status = _git("status", "--porcelain", "--untracked-files=no", "--", "cascade", "bench")
        dirty = bool(status) if status is not None else None
    out: dict[str, Any] = {
        "cascade_bench": cascade.__version__,
        "results_version": cascade.RESULTS_VERSION,
        "git_commit": commit,
        "git_dirty": dirty,
        "git_commit_source": "git" if commit is not None else "unavailable",
    }
    env = os.environ.get("CASCADE_GIT_COMMIT", "").strip()
    if env:
        out.update(git_commit=env, git_dirty=None, git_commit_source="env CASCADE_GIT_COMMIT")
        if commit is not None and commit != env:
            out["git_commit_local"] = commit
    return out


def provenance(device: str) -> dict[str, Any]:
    """Where and with what a run ran."""
    dev = torch.device(device)
    return {
        **code_version(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "device": device,
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or "cpu"),
        "threads": torch.get_num_threads(),
        "argv": sys.argv,
    }


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


class ResultStore:
    """One output folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def run_path(self, variant: str, key: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in variant)
        return self.root / "runs" / safe / f"{key}.json"

    def checkpoint_path(self, train_key: str) -> Path:
        return self.root / "checkpoints" / f"{train_key}.pt"

    def exits_path(self, key: str) -> Path:
        return self.root / "exits" / f"{key}.npz"

    def write_run(self, record: dict[str, Any]) -> Path:
        path = self.run_path(record["variant"], record["key"])
        atomic_write_json(path, record)
        return path

    def read_run(self, path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise StoreError(f"{path}: not valid JSON ({e}); delete it to rerun that run") from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA_VERSION:
            raise StoreError(f"{path}: schema {data.get('schema') if isinstance(data, dict) else '?'} "
                             f"is not {SCHEMA_VERSION}")  # fmt: skip
        return data

    def iter_runs(self) -> Iterator[dict[str, Any]]:
        """Every run record in the folder (temporary files skipped)."""
        runs = self.root / "runs"
        if not runs.is_dir():
            return
        for path in sorted(runs.glob("*/*.json")):
            yield self.read_run(path)

    def latest_runs(self) -> list[dict[str, Any]]:
        """One record per (variant, seed): the most recently finished.

        A folder keeps the files of runs made with earlier settings (a changed threshold list, say);
        reports and ``summary.csv`` describe the latest run of each variant and seed.
        """
        latest: dict[tuple[str, int], dict[str, Any]] = {}
        for rec in self.iter_runs():
            k = (rec["variant"], rec["seed"])
            if k not in latest or rec.get("finished", "") >= latest[k].get("finished", ""):
                latest[k] = rec
        return list(latest.values())

    def completed(self, variant: str, key: str) -> dict[str, Any] | None:
        path = self.run_path(variant, key)
        if not path.is_file():
            return None
        try:
            record = self.read_run(path)
        except StoreError:
            return None
        return record if record.get("status") == "ok" else None


# --------------------------------------------------------------------------- the tidy table

SUMMARY_FIRST = [
    "suite", "variant", "variant_base", "loss", "exits", "dataset", "policy", "seed", "threshold",
    "accuracy", "val_accuracy", "early_share",
]  # fmt: skip


def tidy_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per threshold of a finished run (the columns of ``summary.csv``)."""
    rows = []
    names = record["exits"]["names"]
    latency: dict[tuple[Any, int], float] = {}
    for item in (record.get("latency") or {}).get("cascade", []):
        latency[(item["threshold"], item["batch_size"])] = item["per_sample_median"]
    for t in record["thresholds"]:
        row: dict[str, Any] = {
            "suite": record["suite"],
            "variant": record["variant"],
            "variant_base": record["variant_base"],
            "loss": record["loss"],
            "exits": "+".join(record["exits_at"]) or "none",
            "dataset": record["dataset"],
            "policy": record["policy"],
            "seed": record["seed"],
            "threshold": t["threshold"],
            "accuracy": t["accuracy"],
            "val_accuracy": t["val_accuracy"],
            "early_share": t["early_share"],
        }
        for name, share in zip(names, t["exit_share"]):
            row[f"share_{name}"] = share
        for name, acc in zip(names, record["exits"]["test_accuracy"]):
            row[f"exit_accuracy_{name}"] = acc
        row["macs"] = t["macs_expected"]
        row["flops"] = t["flops_expected"]
        row["macs_counted"] = t.get("macs_counted")
        for table, value in t["energy_expected"].items():
            row[f"energy_{table}"] = value
        row["saved_vs_base"] = t["saved_vs_base"]
        row["saved_vs_full"] = t["saved_vs_full"]
        for table, value in t["energy_saved_vs_base"].items():
            row[f"energy_saved_vs_base_{table}"] = value
        for (thr, bs), value in latency.items():
            if thr == t["threshold"]:
                row[f"latency_s_per_sample_b{bs}"] = value
        row["params"] = record["cost"]["per_exit"][-1]["params"]
        row["total_steps"] = record["training"].get("total_steps")
        row["key"] = record["key"]
        rows.append(row)
    return rows


def summary_frame(store: ResultStore) -> Any:
    """All finished runs of a folder as one tidy DataFrame (one row per run x threshold)."""
    import pandas as pd

    rows = [row for rec in store.latest_runs() if rec.get("status") == "ok" for row in tidy_rows(rec)]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=SUMMARY_FIRST)
    rest = [c for c in frame.columns if c not in SUMMARY_FIRST]
    return frame[SUMMARY_FIRST + rest].sort_values(["variant", "seed", "threshold"], kind="stable")


def write_summary(store: ResultStore) -> Path:
    """Write ``summary.csv`` atomically and return its path."""
    frame = summary_frame(store)
    path = store.root / "summary.csv"
    atomic_write_bytes(path, frame.to_csv(index=False).encode())
    return path
