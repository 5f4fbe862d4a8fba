"""Results on disk: one JSON file per run, written atomically, with provenance.

Layout of an output folder (default ``results/<suite name>/``)::

    runs/<variant>/<key>.json      one file per run (status "ok" or "failed")
    checkpoints/<train key>.pt     trained weights + history (not for git); also kept in the shared
                                   checkpoint cache, so that any folder reuses any finished training
    exits/<key>.npz                per-sample exit outputs for re-analysis (not for git)
    summary.csv                    one row per run x threshold
    suite.toml                     the suite as run (with --set overrides applied)

Writes go to a temporary file in the same folder, are fsynced, then
``os.replace``d into place (asv / Sacred style): an interrupted run leaves the
old file or none, never a truncated one. Leftover ``*.tmp`` files are ignored.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import functools
import hashlib
import io
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import cascade
from bench.record import SCHEMA_VERSION, RunRecord, StoreError

__all__ = ["SCHEMA_VERSION", "ResultStore", "StoreError"]

_UMASK = os.umask(0)
os.umask(_UMASK)


def canonical_json(obj: Any) -> str:
    """Sorted, compact JSON; a value JSON cannot represent raises ``TypeError`` (never hashed as a repr)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


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


@functools.cache
def code_version() -> dict[str, Any]:
    """Package version, results version, git commit and dirty flag of the running code.

    A launcher that copies the code elsewhere (a cluster's staging folder, a lent GPU machine)
    sets ``$CASCADE_GIT_COMMIT`` to the commit it copied; that value wins, because a ``.git``
    travelling with such a copy can be stale, and the dirty flag is then unknown (``None``).
    ``git_commit_source`` says where the commit came from; where git there disagrees, its
    answer is kept as ``git_commit_local``.

    Asked once per process (when this module is imported): a long run keeps recording the commit
    of the code it runs, even when the checkout moves on while it runs.
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


code_version()  # at import: the code this process runs


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


class FolderLock:
    """An advisory lock on a results folder (``fcntl.flock`` on ``.lock``): one ``bench run`` at a time.

    The operating system releases it when the holding process ends, however it ends, so a stale
    lock cannot exist. The file records the holder's pid and host for the refusal message.
    """

    def __init__(self, root: Path) -> None:
        self.path = root / ".lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StoreError(
                f"{self.path.parent} is in use by a running bench run ({holder}); wait for it to finish, "
                "or give another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()}".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def prepare_folder(root: Path) -> None:
    """Create the output folder, or say in one line why it cannot be (a file in the way, no permission)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StoreError(f"--out {root}: a file of that name exists; give a folder") from None
    except NotADirectoryError:
        raise StoreError(f"--out {root}: a part of the path is a file, not a folder") from None
    except PermissionError:
        raise StoreError(f"--out {root}: no permission to create it") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise StoreError(f"--out {root}: the folder is not writable")


CACHE_ENV = "CASCADE_CHECKPOINT_CACHE"


def user_cache(env_var: str, folder: str) -> Path | None:
    """A per-user cache folder: ``$<env_var>`` (``off`` disables it), else
    ``$XDG_CACHE_HOME/cascade-bench/<folder>``, else ``~/.cache/cascade-bench/<folder>``."""
    env = os.environ.get(env_var)
    if env is not None:
        return None if env.strip().lower() in ("", "off", "none", "0", "false") else Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "cascade-bench" / folder


def default_checkpoint_cache() -> Path | None:
    """The shared checkpoint cache: ``$CASCADE_CHECKPOINT_CACHE`` (``off`` disables it), else
    ``$XDG_CACHE_HOME/cascade-bench/checkpoints``, else ``~/.cache/cascade-bench/checkpoints``."""
    return user_cache(CACHE_ENV, "checkpoints")


def _link_or_copy(src: Path, dst: Path) -> None:
    """Put ``src``'s bytes at ``dst`` atomically: a hard link where both share a file system, else a copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.{os.getpid()}.tmp"
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


class ResultStore:
    """One output folder.

    Run files that cannot be read (corrupt, another schema) are skipped by :meth:`iter_runs`
    and :meth:`completed` (a rerun replaces them); each is described once in :attr:`problems`,
    which ``bench run`` and the report show.
    """

    def __init__(self, root: str | Path, cache: str | Path | None = None) -> None:
        self.root = Path(root)
        self.cache = Path(cache) if cache is not None else None  # the shared checkpoint cache, or None
        self.problems: dict[Path, str] = {}

    def run_path(self, variant: str, key: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in variant)
        return self.root / "runs" / safe / f"{key}.json"

    def checkpoint_path(self, train_key: str) -> Path:
        return self.root / "checkpoints" / f"{train_key}.pt"

    def find_checkpoint(self, train_key: str) -> str | None:
        """Make the checkpoint of ``train_key`` available in this folder: "folder" when it was there,
        "cache" when it was copied (linked) from the shared cache, None when neither has it."""
        local = self.checkpoint_path(train_key)
        if local.is_file():
            return "folder"
        cached = self.cache / f"{train_key}.pt" if self.cache is not None else None
        if cached is not None and cached.is_file():
            _link_or_copy(cached, local)
            return "cache"
        return None

    def has_checkpoint(self, train_key: str) -> bool:
        """Whether the folder or the shared cache holds the checkpoint (nothing is copied)."""
        return self.checkpoint_path(train_key).is_file() or (
            self.cache is not None and (self.cache / f"{train_key}.pt").is_file()
        )

    def share_checkpoint(self, train_key: str) -> str | None:
        """Put this folder's checkpoint into the shared cache; the reason when that failed (a full or
        read-only cache does not fail the run), else None."""
        if self.cache is None:
            return None
        try:
            _link_or_copy(self.checkpoint_path(train_key), self.cache / f"{train_key}.pt")
        except OSError as e:
            return f"checkpoint not cached in {self.cache}: {e}"
        return None

    def exits_path(self, key: str) -> Path:
        return self.root / "exits" / f"{key}.npz"

    def write_run(self, record: RunRecord) -> Path:
        path = self.run_path(record.variant, record.key)
        atomic_write_json(path, record.to_json())
        return path

    def read_run(self, path: Path) -> RunRecord:
        """The record in ``path``; :class:`StoreError` naming the file when it cannot be read."""
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise StoreError(f"{path}: not valid JSON ({e}); delete it to rerun that run") from None
        return RunRecord.from_json(data, str(path))

    def _read_or_note(self, path: Path) -> RunRecord | None:
        try:
            return self.read_run(path)
        except StoreError as e:
            self.problems[path] = str(e)
            return None

    def iter_runs(self) -> Iterator[RunRecord]:
        """Every readable run record in the folder (temporary files skipped; unreadable ones noted)."""
        runs = self.root / "runs"
        if not runs.is_dir():
            return
        for path in sorted(runs.glob("*/*.json")):
            record = self._read_or_note(path)
            if record is not None:
                yield record

    def latest_runs(self) -> list[RunRecord]:
        """One record per (variant, seed): the most recently finished.

        A folder keeps the files of runs made with earlier settings (a changed threshold list, say);
        reports and ``summary.csv`` describe the latest run of each variant and seed.
        """
        latest: dict[tuple[str, int], RunRecord] = {}
        for rec in self.iter_runs():
            k = (rec.variant, rec.seed)
            if k not in latest or rec.finished >= latest[k].finished:
                latest[k] = rec
        return list(latest.values())

    def completed(self, variant: str, key: str) -> RunRecord | None:
        """The finished record of this run, else None (missing, failed, or unreadable: noted, then rerun)."""
        path = self.run_path(variant, key)
        if not path.is_file():
            return None
        record = self._read_or_note(path)
        return record if record is not None and record.ok else None


def save_exit_outputs(path: Path, val_logits: Sequence[torch.Tensor], val_y: torch.Tensor,
                      test_logits: Sequence[torch.Tensor], test_y: torch.Tensor) -> dict[str, np.ndarray]:  # fmt: skip
    """Per-sample, per-exit predictions and confidences for re-analysis (not committed); returns the arrays
    saved (``{split}_y``, ``{split}_pred``, ``{split}_maxprob``)."""
    arrays: dict[str, np.ndarray] = {}
    for split, logits, y in (("val", val_logits, val_y), ("test", test_logits, test_y)):
        probs = [torch.softmax(z.float(), 1) for z in logits]
        arrays[f"{split}_y"] = y.cpu().numpy().astype(np.int16)
        arrays[f"{split}_pred"] = torch.stack([p.argmax(1) for p in probs], 1).cpu().numpy().astype(np.int16)
        arrays[f"{split}_maxprob"] = torch.stack([p.amax(1) for p in probs], 1).cpu().numpy().astype(np.float32)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds like allow_pickle
    atomic_write_bytes(path, buf.getvalue())
    return arrays


# --------------------------------------------------------------------------- the tidy table

SUMMARY_FIRST = [
    "suite", "variant", "variant_base", "loss", "exits", "dataset", "policy", "seed", "threshold",
    "accuracy", "val_accuracy", "early_share",
]  # fmt: skip


def summary_frame(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Finished runs as one tidy DataFrame (one row per run x threshold): ``RunRecord.rows`` stacked."""
    rows = [row for rec in records if rec.ok for row in rec.rows()]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=SUMMARY_FIRST)
    rest = [c for c in frame.columns if c not in SUMMARY_FIRST]
    return frame[SUMMARY_FIRST + rest].sort_values(["variant", "seed", "threshold"], kind="stable")


def write_summary(store: ResultStore) -> Path:
    """Write ``summary.csv`` atomically and return its path."""
    frame = summary_frame(store.latest_runs())
    path = store.root / "summary.csv"
    atomic_write_bytes(path, frame.to_csv(index=False).encode())
    return path
