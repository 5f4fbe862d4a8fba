"""Provenance: which code, library versions and machine produced a run or a checkpoint."""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import cascade


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


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


@functools.cache
def training_code_digest() -> str:
    """First 16 hex digits of the SHA-256 over the ``cascade`` package's ``.py`` files (paths and bytes):
    the code that builds, trains and scores a network (``bench`` only plans, measures and reports)."""
    root = Path(cascade.__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def trained_by() -> dict[str, Any]:
    """What a checkpoint records of the code that trained it."""
    cv = code_version()
    return {
        "training_code": training_code_digest(),
        "git_commit": cv["git_commit"],
        "git_dirty": cv["git_dirty"],
        "results_version": cv["results_version"],
        "cascade_bench": cv["cascade_bench"],
    }
