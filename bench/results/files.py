"""Files written atomically, copied without sharing, and checked by digest.

Every file the harness writes goes through :func:`atomic_write_bytes` (temp file in the same
folder, fsync, ``os.replace``; asv / Sacred style) or :func:`copy_file`: an interrupted or failed
write leaves the old file or none, never a truncated one, and a failure is a :class:`WriteError`
that names the path and the operating system's reason (``ENOSPC``, ``EROFS``, ``EIO``, ``EACCES``).
"""

from __future__ import annotations

import errno as _errno
import fcntl
import functools
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.results.errors import StoreError

_UMASK = os.umask(0)
os.umask(_UMASK)
#: ``ioctl`` request of a copy-on-write clone (Linux ``FICLONE``; ``fcntl.FICLONE`` from Python 3.12).
_FICLONE = getattr(fcntl, "FICLONE", 0x40049409)
_CHUNK = 1 << 20


class WriteError(StoreError, OSError):
    """A file the harness could not write: the path and the system's reason, in one line."""

    def __init__(self, path: str | Path, error: OSError) -> None:
        code = _errno.errorcode.get(error.errno or 0, "")
        reason = error.strerror or str(error)
        super().__init__(f"cannot write {path}: {reason}" + (f" ({code})" if code else ""))
        self.path = Path(path)
        self.errno = error.errno


def _staged(path: Path, data: bytes) -> Path:
    """``data`` in a fsynced temp file beside ``path`` (removed again when writing it fails)."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; results are ordinary files
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise WriteError(path, e) from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def atomic_write_files(files: dict[Path, bytes]) -> None:
    """Write several files as a set: all are staged first, then renamed into place, so a failure while
    writing (a full disk) leaves every one of them as it was (a table's .md, .csv and .tex agree)."""
    staged: dict[Path, Path] = {}
    try:
        for path, data in files.items():
            staged[path] = _staged(path, data)
        for path, tmp in staged.items():
            try:
                os.replace(tmp, path)
            except OSError as e:
                raise WriteError(path, e) from None
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path`` via temp file + fsync + rename; return the SHA-256 of ``data``."""
    atomic_write_files({path: data})
    return hashlib.sha256(data).hexdigest()


def atomic_write_json(path: Path, obj: Any) -> str:
    return atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=False, default=str) + "\n").encode())


def copy_file(src: Path, dst: Path) -> None:
    """Put ``src``'s bytes at ``dst`` atomically: a reflink (copy-on-write) where the file system offers
    one, else a copy; never a hard link, which would share damage between the two names."""
    tmp = dst.parent / f".{dst.name}.{os.getpid()}.tmp"
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            try:
                fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
            except OSError:
                shutil.copyfileobj(fin, fout, _CHUNK)
            fout.flush()
            os.fsync(fout.fileno())
        os.replace(tmp, dst)
    except OSError as e:
        raise WriteError(dst, e) from None
    finally:
        tmp.unlink(missing_ok=True)


class OutsideError(StoreError):
    """A path read from a file (a run file's artefacts, an export manifest) that leads out of its folder."""


def confined(root: Path, rel: str, where: str) -> Path:
    """``root / rel`` for a path ``rel`` read from ``where``, resolved (links followed), which must stay inside
    ``root``: an absolute path, ``..`` or a link that leads out is an :class:`OutsideError` that names it and
    reads nothing (no digest of an outside file is ever computed or printed)."""
    base = root.resolve()
    try:
        path = (base / rel).resolve()
    except (OSError, RuntimeError, ValueError) as e:  # a link loop, a NUL byte
        raise OutsideError(f"{where}: path {rel!r} cannot be resolved ({e})") from None
    if path != base and base not in path.parents:
        raise OutsideError(f"{where}: path {rel!r} leads outside {root}; refused (a folder's files stay inside it)")
    return path


@functools.lru_cache(maxsize=4096)
def _digest(path: str, ident: tuple[int, int, int, int]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    """SHA-256 of the file's bytes (remembered per device, inode, size and modification time)."""
    st = path.stat()
    return _digest(str(path), (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))


def mismatch(path: Path, expected: str) -> str | None:
    """Why ``path`` does not hold the bytes of digest ``expected`` (None: it does)."""
    actual = sha256_file(path)
    return None if actual == expected else f"sha256 {actual[:12]}... where {expected[:12]}... was recorded"
