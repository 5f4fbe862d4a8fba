"""Artefact integrity: checkpoint sidecars with SHA-256 digests and the shared checkpoint cache.

The rules (DVC's content hashes and git's object checks are the models); docs/integrity.md says more:

* Every checkpoint ``checkpoints/<train key>.pt`` has a sidecar ``checkpoints/<train key>.json``
  (``sha256``, ``bytes``, ``trained_by``: the code that trained it, ``created``); every run file lists
  the digests of its checkpoint and exit outputs under ``artefacts`` (paths relative to the folder).
* Every load verifies: a checkpoint whose bytes do not match its sidecar, or that does not load, is
  moved aside to ``damaged/`` (never deleted) and the training reruns.
* The shared cache holds *copies* (a reflink where the file system offers one), never hard links: a
  hard link shares the inode, so damage in place (a truncation, an editor saving over the file, a
  bad block) in one folder damaged every folder and the cache at once.
* A cache entry is written and read under an exclusive ``flock`` on ``<train key>.lock``, so two
  processes that train the same key at the same moment both finish and leave one valid entry.
* An entry records the digest of the ``cascade`` package's source (the code that trains). A train key
  holds ``cascade.RESULTS_VERSION``, not the code, so an entry made by other training code is still
  reused, with a warning (``--no-cache`` retrains, and is what CI uses).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.results.files import WriteError, atomic_write_json, copy_file, mismatch, sha256_file
from bench.results.provenance import now, trained_by, training_code_digest


def sidecar_path(checkpoint: Path) -> Path:
    """``<name>.json`` beside ``<name>.pt``: the checkpoint's digest and the code that trained it."""
    return checkpoint.with_suffix(".json")


def read_meta(path: Path) -> dict[str, Any] | None:
    """A sidecar or cache index entry, or None when absent or unreadable (an unreadable one verifies nothing)."""
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and isinstance(meta.get("sha256"), str) else None


def checkpoint_meta(digest: str, size: int, by: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"sha256": digest, "bytes": size, "trained_by": trained_by() if by is None else by, "created": now()}


def write_sidecar(checkpoint: Path, meta: dict[str, Any]) -> None:
    atomic_write_json(sidecar_path(checkpoint), meta)


def move_aside(path: Path, folder: Path) -> Path:
    """Move ``path`` (and its sidecar) into ``folder`` under a time-stamped name; return the new path."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    dest = folder / f"{path.stem}.{stamp}{path.suffix}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        if sidecar_path(path).is_file():
            os.replace(sidecar_path(path), sidecar_path(dest))
    except OSError as e:
        raise WriteError(dest, e) from None
    return dest


def code_change_note(what: str, meta: dict[str, Any]) -> str | None:
    """A warning line when ``meta`` was written by other training code than this process runs, else None."""
    by = meta.get("trained_by") or {}
    theirs = by.get("training_code")
    if theirs == training_code_digest():
        return None
    commit = f", commit {str(by['git_commit'])[:12]}" if by.get("git_commit") else ""
    return (
        f"{what} was trained by other training code (cascade/ digest {theirs or 'not recorded'}{commit}) than "
        f"this process runs ({training_code_digest()}); reused because its train key matches: pass --no-cache "
        "(or --force) if the change alters training"
    )


@dataclass
class CheckpointCache:
    """The shared checkpoint cache: ``<train key>.pt`` and its index entry ``<train key>.json`` per key;
    damaged entries go to ``damaged/``; ``<train key>.lock`` serialises the writers and readers of a key."""

    root: Path
    notes: list[str] = field(default_factory=list)  # one line per damaged entry met

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    @contextlib.contextmanager
    def locked(self, key: str) -> Iterator[None]:
        lock = self.root / f"{key}.lock"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise WriteError(lock, e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def fetch(self, key: str, dest: Path) -> dict[str, Any] | None:
        """Copy the entry of ``key`` to ``dest``, verified, and return its index entry; None when there is
        none, or when it is damaged (then it is moved to ``damaged/`` and :attr:`notes` names it)."""
        src = self.path(key)
        if not src.is_file():
            return None
        with self.locked(key):
            if not src.is_file():
                return None
            meta = read_meta(sidecar_path(src))
            if meta is None:  # an entry from before digests: adopted with the digest of its bytes now
                meta = checkpoint_meta(sha256_file(src), src.stat().st_size, by={})
            copy_file(src, dest)
            why = mismatch(dest, meta["sha256"])
            if why is None:
                return meta
            dest.unlink(missing_ok=True)
            self._move_aside(key, why)
            return None

    def put(self, key: str, src: Path, meta: dict[str, Any]) -> None:
        """Store a copy of ``src`` and its index entry (each replaced atomically, both under the key's lock)."""
        with self.locked(key):
            copy_file(src, self.path(key))
            write_sidecar(self.path(key), meta)

    def discard(self, key: str, why: str) -> None:
        """Move the entry of ``key`` to ``damaged/`` (it matched its digest but does not load)."""
        with self.locked(key):
            if self.path(key).is_file():
                self._move_aside(key, why)

    def _move_aside(self, key: str, why: str) -> None:
        moved = move_aside(self.path(key), self.root / "damaged")
        self.notes.append(f"damaged checkpoint in the shared cache moved to {moved} ({why}); training it again")
