"""Results on disk: one JSON file per run, written atomically, with provenance.

Layout of an output folder (default ``results/<suite name>/``)::

    runs/<variant>/<key>.json      one file per run (status "ok" or "failed")
    checkpoints/<train key>.pt     trained weights + history (not for git); a copy is kept in the shared
                                   checkpoint cache, so that any folder reuses any finished training
    checkpoints/<train key>.json   its sidecar: SHA-256, size, the code that trained it (bench.results.artefacts)
    exits/<key>.npz                per-sample exit outputs for re-analysis (not for git)
    summary.csv                    one row per run x threshold
    suite.toml                     the suite as run (with --set overrides applied)

Writes go to a temporary file in the same folder, are fsynced, then
``os.replace``d into place (asv / Sacred style): an interrupted run leaves the
old file or none, never a truncated one. Leftover ``*.tmp`` files are ignored.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.results.artefacts import (
    CheckpointCache,
    checkpoint_meta,
    code_change_note,
    move_aside,
    read_meta,
    sidecar_path,
    write_sidecar,
)
from bench.results.errors import StoreError
from bench.results.files import (
    OutsideError,
    WriteError,
    atomic_write_bytes,
    atomic_write_json,
    confined,
    mismatch,
)
from bench.results.migrate import SCHEMA_VERSION
from bench.results.record import RunRecord
from cascade.cache import user_cache

__all__ = ["SCHEMA_VERSION", "ResultStore", "StoreError", "WriteError"]

_UMASK = os.umask(0)
os.umask(_UMASK)


def canonical_json(obj: Any) -> str:
    """Sorted, compact JSON; a value JSON cannot represent raises ``TypeError`` (never hashed as a repr)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def safe_name(name: str) -> str:
    """A variant's name as a folder name: letters, digits and ``-_.=`` kept, anything else ``_``; a name of dots
    alone (``.``, ``..``) or an empty one becomes underscores, so no name can leave ``runs/``. Suites refuse names
    this changes (:func:`bench.config.validate`), so two variants never share a folder."""
    safe = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in name)
    return "_" * max(len(safe), 1) if set(safe) <= {"."} else safe


def config_hash(obj: Any, n: int = 16) -> str:
    """Short sha256 of the canonical JSON of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:n]


class FolderLock:
    """An advisory lock on a results folder (``fcntl.flock`` on ``.lock``): one ``bench run`` at a time.

    The operating system releases it when the holding process ends, however it ends, so a stale
    lock cannot exist. The file records the holder's pid and host for the refusal message.
    """

    def __init__(self, root: Path) -> None:
        self.path = root / ".lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
        except OSError as e:
            raise WriteError(self.path, e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StoreError(
                f"{self.path.parent} is in use by a running bench run ({holder}); wait for it to finish, "
                "or give another --out"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()}".encode())
        except OSError as e:
            os.close(fd)
            raise WriteError(self.path, e) from None
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


def default_checkpoint_cache() -> Path | None:
    """The shared checkpoint cache: ``$CASCADE_CHECKPOINT_CACHE`` (``off`` disables it), else
    ``$XDG_CACHE_HOME/cascade-bench/checkpoints``, else ``~/.cache/cascade-bench/checkpoints``."""
    return user_cache("checkpoints", CACHE_ENV)


class ResultStore:
    """One output folder.

    Run files that cannot be read (corrupt, another schema), and runs whose checkpoint or exit outputs
    no longer match the digests their run file records, are skipped by :meth:`iter_runs` and
    :meth:`completed` (a rerun replaces them); each is described once in :attr:`problems`, which
    ``bench run`` and the report show. Damaged checkpoints met on the way and checkpoints trained by
    other training code are described in :attr:`warnings`; writes that failed without failing the run
    (the shared cache) in :attr:`write_errors`.
    """

    def __init__(self, root: str | Path, cache: str | Path | None = None) -> None:
        self.root = Path(root)
        self.problems: dict[Path, str] = {}
        self.warnings: list[str] = []
        self.write_errors: list[str] = []
        # the shared cache, or None; the damaged entries it meets are named in this store's warnings
        self.cache = CheckpointCache(Path(cache), notes=self.warnings) if cache is not None else None

    def run_path(self, variant: str, key: str) -> Path:
        return self.root / "runs" / safe_name(variant) / f"{key}.json"

    def checkpoint_path(self, train_key: str) -> Path:
        return self.root / "checkpoints" / f"{train_key}.pt"

    def find_checkpoint(self, train_key: str) -> str | None:
        """Make a verified checkpoint of ``train_key`` available in this folder: "folder" when it was
        there, "cache" when it was copied from the shared cache, None when neither holds a sound one.

        A folder checkpoint that does not match its sidecar is moved to ``checkpoints/damaged/``; a
        damaged cache entry to the cache's ``damaged/``; each is named in :attr:`warnings`.
        """
        local = self.checkpoint_path(train_key)
        if local.is_file():
            for path in (local, sidecar_path(local)):  # a link out of the folder is refused, never read
                confined(self.root, str(path.relative_to(self.root)), f"{self.root}: checkpoint")
            meta = read_meta(sidecar_path(local))
            why = mismatch(local, meta["sha256"]) if meta is not None else None
            if why is None:
                self._note_code(f"checkpoint {local}", meta)
                return "folder"
            moved = self._move_local(train_key)
            source = self._from_cache(train_key)
            then = "replaced by the shared cache's copy" if source else "training it again"
            self.warnings.append(f"damaged checkpoint {local} moved to {moved} ({why}); {then}")
            return source
        return self._from_cache(train_key)

    def _from_cache(self, train_key: str) -> str | None:
        """Copy the shared cache's verified entry of ``train_key`` into the folder: "cache", or None."""
        if self.cache is None:
            return None
        local = self.checkpoint_path(train_key)
        meta = self.cache.fetch(train_key, local)
        if meta is None:
            return None
        write_sidecar(local, meta)
        self._note_code(f"checkpoint {train_key} from the shared cache", meta)
        return "cache"

    def _move_local(self, train_key: str) -> Path | None:
        """Move the folder's checkpoint of ``train_key`` (and its sidecar) to ``checkpoints/damaged/``."""
        local = self.checkpoint_path(train_key)
        return move_aside(local, local.parent / "damaged") if local.is_file() else None

    def _note_code(self, what: str, meta: dict[str, Any] | None) -> None:
        note = code_change_note(what, meta) if meta is not None and meta.get("trained_by") else None
        if note and note not in self.warnings:
            self.warnings.append(note)

    def discard_checkpoint(self, train_key: str, why: str, *, source: str = "folder") -> None:
        """Move a damaged checkpoint aside (never delete it); ``source`` "cache": the cache entry too."""
        local = self.checkpoint_path(train_key)
        moved = self._move_local(train_key)
        if moved is not None:
            self.warnings.append(f"damaged checkpoint {local} moved to {moved} ({why}); training it again")
        if source == "cache" and self.cache is not None:
            self.cache.discard(train_key, why)

    def has_checkpoint(self, train_key: str) -> bool:
        """Whether the folder or the shared cache holds the checkpoint (nothing is copied or verified)."""
        return self.checkpoint_path(train_key).is_file() or (self.cache is not None and self.cache.has(train_key))

    def save_checkpoint(self, train_key: str, data: bytes) -> str:
        """Write a checkpoint (``data``: its bytes, :func:`bench.results.tensors.torch_bytes`) and its sidecar, then
        put a copy in the shared cache; return its SHA-256.

        A cache that cannot be written does not fail the run: the reason goes to :attr:`write_errors`.
        """
        path = self.checkpoint_path(train_key)
        digest = atomic_write_bytes(path, data)
        meta = checkpoint_meta(digest, path.stat().st_size)
        write_sidecar(path, meta)
        if self.cache is not None:
            try:
                self.cache.put(train_key, path, meta)
            except WriteError as e:
                self.write_errors.append(f"checkpoint not cached: {e}")
        return digest

    def stale(self, record: RunRecord) -> str | None:
        """Why the artefacts of ``record`` no longer match the digests it records (None: they match or are absent)."""
        for rel, digest in (record.artefacts or {}).items():
            try:
                path = confined(self.root, rel, f"{self.run_path(record.variant, record.key)}: artefacts")
            except OutsideError as e:
                return str(e)
            if path.is_file() and (why := mismatch(path, digest)) is not None:
                return f"{path}: {why}"
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

    def _read_or_note(self, path: Path, verify: bool = True) -> RunRecord | None:
        try:
            record = self.read_run(path)
        except StoreError as e:
            self.problems[path] = str(e)
            return None
        return None if verify and not self._sound(record) else record

    def iter_runs(self, *, verify: bool = True) -> Iterator[RunRecord]:
        """Every readable run record in the folder (temporary files skipped; unreadable ones noted;
        ``verify``: runs whose artefacts do not match their digests noted and skipped too)."""
        runs = self.root / "runs"
        if not runs.is_dir():
            return
        for path in sorted(runs.glob("*/*.json")):
            record = self._read_or_note(path, verify)
            if record is not None:
                yield record

    def latest_runs(self) -> list[RunRecord]:
        """One record per (variant, seed): the most recently finished.

        A folder keeps the files of runs made with earlier settings (a changed threshold list, say);
        reports and ``summary.csv`` describe the latest run of each variant and seed.
        A variant and seed whose latest run is stale (damaged artefacts) is left out, not replaced by
        an older run.
        """
        latest: dict[tuple[str, int], RunRecord] = {}
        for rec in self.iter_runs(verify=False):
            k = (rec.variant, rec.seed)
            if k not in latest or rec.finished >= latest[k].finished:
                latest[k] = rec
        return [rec for rec in latest.values() if self._sound(rec)]

    def _sound(self, record: RunRecord) -> bool:
        """Whether ``record``'s artefacts match their digests; a stale run is noted in :attr:`problems`."""
        why = self.stale(record)
        if why is not None:
            path = self.run_path(record.variant, record.key)
            self.problems[path] = f"{path}: damaged artefact {why}; the run is stale and will run again"
        return why is None

    def completed(self, variant: str, key: str) -> RunRecord | None:
        """The finished record of this run, else None (missing, failed, or unreadable: noted, then rerun)."""
        path = self.run_path(variant, key)
        if not path.is_file():
            return None
        record = self._read_or_note(path)
        return record if record is not None and record.ok else None
