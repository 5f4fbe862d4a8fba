"""Integrity: digests on every artefact, a cache that heals, writes that fail loudly, concurrent writers."""

from __future__ import annotations

import errno
import fnmatch
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import bench.execute.runner as runner
import bench.execute.training as training
from bench.cli import main
from bench.execute.runner import run_suite
from bench.results.artefacts import read_meta, sidecar_path
from bench.results.files import WriteError, atomic_write_bytes, atomic_write_files
from bench.results.store import ResultStore
from bench.results.verify import verify_folder

from .conftest import REPO
from .tiny import layered, tiny_suite

# One variant, one seed, no latency: a run takes about a second.
MINI_TABLES = {
    "suite": {"name": "mini", "seeds": [0]},
    "dataset": {"train_size": 200},
    "train": {"log_every": None},
    "evaluation": {"thresholds": [0.6], "latency": False, "count_macs": "none"},
}


def mini_suite(variants: list[dict[str, Any]] | None = None, **changes: Any) -> str:
    return tiny_suite(variants=variants or [{"name": "base", "loss": "base"}], **layered(MINI_TABLES, changes))


MINI = mini_suite()


@pytest.fixture
def mini(tmp_path: Path) -> Path:
    p = tmp_path / "mini.toml"
    p.write_text(MINI)
    return p


def run(suite: Path, out: Path, cache: Path | None, log: list[str] | None = None) -> runner.RunSummary:
    sink = log if log is not None else []
    return run_suite(suite, out_dir=out, progress=False, log=sink.append, checkpoint_cache=cache or False)


def leftovers(*roots: Path) -> list[Path]:
    """Temporary files a write left behind."""
    return [p for root in roots if root.exists() for p in root.rglob("*.tmp")]


# --------------------------------------------------------------------------- digests and the cache


def test_run_file_records_the_digests_of_its_artefacts(mini: Path, tmp_path: Path) -> None:
    out, cache = tmp_path / "a", tmp_path / "cache"
    assert run(mini, out, cache).ok
    (record,) = ResultStore(out).latest_runs()
    assert record.artefacts is not None and sorted(record.artefacts) == [
        f"checkpoints/{record.train_key}.pt",
        f"exits/{record.key}.npz",
    ]
    import hashlib

    for rel, digest in record.artefacts.items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest
    ckpt = out / "checkpoints" / f"{record.train_key}.pt"
    meta = read_meta(sidecar_path(ckpt))
    assert meta is not None and meta["sha256"] == record.artefacts[f"checkpoints/{record.train_key}.pt"]
    assert meta["bytes"] == ckpt.stat().st_size and len(meta["trained_by"]["training_code"]) == 16
    cached = cache / ckpt.name
    assert cached.read_bytes() == ckpt.read_bytes()
    assert os.stat(cached).st_ino != os.stat(ckpt).st_ino  # a copy, never a hard link
    assert read_meta(sidecar_path(cached)) == meta


def test_damaged_cache_entry_is_moved_aside_and_retrained(mini: Path, tmp_path: Path) -> None:
    """The regression of issue 27: a truncated cache entry failed the next folder and damaged the first."""
    cache = tmp_path / "cache"
    assert run(mini, tmp_path / "a", cache).ok
    (entry,) = cache.glob("*.pt")
    size = entry.stat().st_size
    with open(entry, "r+b") as f:
        f.truncate(size // 2)  # damage in place, as a full disk or a bad copy does
    log: list[str] = []
    count: list[int] = []
    real = training.train

    def counting(*a, **k):
        count.append(1)
        return real(*a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "train", counting)
        summary = run(mini, tmp_path / "b", cache, log)
    assert summary.ok and summary.done == 1 and count == [1]  # trained again, not failed
    (line,) = [w for w in log if "damaged checkpoint in the shared cache" in w]
    (moved,) = (cache / "damaged").glob("*.pt")
    assert str(moved) in line and moved.stat().st_size == size // 2  # moved aside, not deleted
    assert read_meta(sidecar_path(entry))["sha256"] != read_meta(sidecar_path(moved))["sha256"]
    for folder in ("a", "b"):  # the first folder was not touched by the damage (no shared inode)
        result = verify_folder(tmp_path / folder)
        assert result.ok and result.checked == 2, result.lines()


def test_damaged_artefact_in_a_folder_makes_its_run_stale(
    mini: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "a"
    assert run(mini, out, None).ok
    (npz,) = (out / "exits").glob("*.npz")
    data = bytearray(npz.read_bytes())
    data[100] ^= 0xFF
    npz.write_bytes(bytes(data))
    assert main(["verify", str(out)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{npz}: sha256 ") and "1 bad" in lines[1]
    store = ResultStore(out)
    assert store.latest_runs() == []  # never reported
    assert "stale" in next(iter(store.problems.values()))
    log: list[str] = []
    summary = run(mini, out, None, log)
    assert summary.done == 1 and summary.skipped == 0 and any(s.startswith("rerunning: ") for s in log)
    assert main(["verify", str(out)]) == 0


def test_a_checkpoint_that_does_not_load_is_moved_aside(mini: Path, tmp_path: Path) -> None:
    """A checkpoint from before digests (no sidecar) that is damaged: it does not load, so it is retrained."""
    out = tmp_path / "a"
    assert run(mini, out, None).ok
    (ckpt,) = (out / "checkpoints").glob("*.pt")
    sidecar_path(ckpt).unlink()
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    for run_file in (out / "runs").rglob("*.json"):
        run_file.unlink()  # so that the run is executed again and meets the checkpoint
    log: list[str] = []
    assert run(mini, out, None, log).ok
    assert any("does not load" in s and "moved to" in s for s in log)
    assert len(list((out / "checkpoints" / "damaged").glob("*.pt"))) == 1
    assert verify_folder(out).ok


def test_checkpoint_trained_by_other_code_is_reused_with_a_warning(mini: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert run(mini, tmp_path / "a", cache).ok
    log: list[str] = []
    assert run(mini, tmp_path / "b", cache, log).ok
    assert not [s for s in log if "other training code" in s]  # same code: silent
    (index,) = cache.glob("*.json")
    meta = json.loads(index.read_text())
    meta["trained_by"]["training_code"] = "0123456789abcdef"
    index.write_text(json.dumps(meta))
    log = []
    summary = run(mini, tmp_path / "c", cache, log)
    assert summary.ok and summary.from_cache == 1
    (line,) = [s for s in log if "other training code" in s]
    assert "0123456789abcdef" in line and "--no-cache" in line


# --------------------------------------------------------------------------- writes that fail


def _target(fd: int) -> str | None:
    """The file a temp file descriptor is about to become (``.<name>.<random>.tmp`` -> ``<name>``)."""
    try:
        tmp = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    m = re.match(r"^\.(.+)\.[^.]+\.tmp$", os.path.basename(tmp))
    return os.path.join(os.path.dirname(tmp), m.group(1)) if m else None


def inject(mp: pytest.MonkeyPatch, pattern: str, code: int) -> None:
    """Fail with ``code`` every fsync of a file whose final path matches ``pattern`` (the moment a full or
    failing disk reports), and every ``os.open`` of a lock file that does."""
    real_fsync, real_open = os.fsync, os.open

    def fsync(fd: int) -> None:
        target = _target(fd)
        if target is not None and fnmatch.fnmatch(target, pattern):
            raise OSError(code, os.strerror(code))
        real_fsync(fd)

    def open_(path, flags, mode=0o777, *a, **k):
        if str(path).endswith(".lock") and fnmatch.fnmatch(str(path), pattern):
            raise OSError(code, os.strerror(code))
        return real_open(path, flags, mode, *a, **k)

    mp.setattr(os, "fsync", fsync)
    mp.setattr(os, "open", open_)


#: Every place the harness writes (pattern relative to the folder or cache, error, needs the report).
WRITE_SITES = [
    ("run file", "out/runs/*/*.json", errno.ENOSPC, False),
    ("checkpoint", "out/checkpoints/*.pt", errno.EIO, False),
    ("checkpoint sidecar", "out/checkpoints/*.json", errno.ENOSPC, False),
    ("cache checkpoint", "cache/*.pt", errno.EROFS, False),
    ("cache index", "cache/*.json", errno.ENOSPC, False),
    ("cache lock", "cache/*.lock", errno.EACCES, False),
    ("exit outputs", "out/exits/*.npz", errno.ENOSPC, False),
    ("summary", "out/summary.csv", errno.EIO, False),
    ("suite copy", "out/suite.toml", errno.ENOSPC, False),
    ("folder lock", "out/.lock", errno.EROFS, False),
    ("table", "out/tables/main.tex", errno.ENOSPC, True),
    ("figure", "out/figures/*.pdf", errno.ENOSPC, True),
    ("report", "out/report.md", errno.EACCES, True),
]


@pytest.mark.parametrize(("site", "pattern", "code", "report"), WRITE_SITES, ids=[s[0] for s in WRITE_SITES])
def test_every_write_site_fails_loudly(
    site: str, pattern: str, code: int, report: bool, mini: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["run", str(mini), "--out", str(out), "--cache-dir", str(cache), "--no-progress"]
    with pytest.MonkeyPatch.context() as mp:
        inject(mp, str(tmp_path / pattern), code)
        rc = main(args + ([] if report else ["--no-report"]))
    text = capsys.readouterr()
    both = text.out + text.err
    assert rc != 0 and "Traceback" not in both
    reason = f"{os.strerror(code)} ({errno.errorcode[code]})"
    lines = [s for s in both.splitlines() if reason in s]
    assert lines and all("cannot write " in s for s in lines), both
    assert len(lines) == 1 or site == "checkpoint sidecar", lines  # one line per failed write
    last = both.strip().splitlines()[-1]
    if rc == 1:  # the run went on: its closing line counts the write error
        assert re.search(r"[1-9] write error\(s\)", last), last
    else:  # refused before any run: one error line
        assert rc == 2 and last.startswith("error: cannot write ")
    assert leftovers(out, cache) == []  # nothing half-written
    if (out / "tables").is_dir():  # a table's files are written as one set
        stems = {p.stem for p in (out / "tables").iterdir()}
        assert all({f"{s}.md", f"{s}.csv", f"{s}.tex"} <= {p.name for p in (out / "tables").iterdir()} for s in stems)
    # without the fault, the same command completes what is missing and the folder verifies
    assert main(args) == 0
    assert verify_folder(out).ok


def test_a_failing_pretraining_marker_is_a_write_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "s.toml"
    suite.write_text(
        mini_suite([{"name": "base", "loss": "base"}, {"name": "firm-p2", "loss": "firm", "exits": ["p2"]}])
    )
    with pytest.MonkeyPatch.context() as mp:
        inject(mp, str(tmp_path / "out/checkpoints/*.failed"), errno.ENOSPC)

        def diverge(*a, **k):
            raise FloatingPointError("loss is nan")

        mp.setattr(training, "train", diverge)
        rc = main(["run", str(suite), "--out", str(tmp_path / "out"), "--no-progress", "--no-report", "--no-cache"])
    both = "".join(capsys.readouterr())
    assert rc == 1 and "loss is nan" in both and ".failed: No space left on device (ENOSPC)" in both
    assert "write error(s)" in both.strip().splitlines()[-1]


def test_a_set_of_files_is_written_all_or_nothing(tmp_path: Path) -> None:
    a, b = tmp_path / "t.md", tmp_path / "t.tex"
    atomic_write_files({a: b"old md", b: b"old tex"})
    with pytest.MonkeyPatch.context() as mp:
        inject(mp, str(b), errno.ENOSPC)
        with pytest.raises(WriteError, match=f"cannot write {b}: No space left on device"):
            atomic_write_files({a: b"new md", b: b"new tex"})
    assert (a.read_bytes(), b.read_bytes()) == (b"old md", b"old tex") and leftovers(tmp_path) == []
    assert atomic_write_bytes(a, b"x") == "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    if sys.platform != "linux" or os.geteuid() != 0:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return r.returncode == 0


def test_a_full_disk_for_real(mini: Path, tmp_path: Path) -> None:
    """On a 300 KiB tmpfs: the run stops loudly with a non-zero exit, and nothing is half-written."""
    disk = tmp_path / "disk"
    if not _tmpfs(disk, "300k"):
        pytest.skip("cannot mount a tmpfs here (needs root on Linux)")
    try:
        suite = disk.parent / "smoke.toml"
        suite.write_text((REPO / "suites" / "smoke.toml").read_text())
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.cli",
                "run",
                str(suite),
                "--only",
                "base",
                "--out",
                str(disk / "out"),
                "--no-progress",
                "--no-cache",
                "--set",
                "evaluation.latency=false",  # what is written is the same; the timing only costs time
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        both = r.stdout + r.stderr
        assert r.returncode != 0 and "No space left on device (ENOSPC)" in both and "Traceback" not in both
        assert both.count("cannot write ") >= 1 and leftovers(disk) == []
        assert r.returncode == 2 or "write error(s)" in both.strip().splitlines()[-1]
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# --------------------------------------------------------------------------- concurrent writers


def test_two_processes_training_the_same_key_into_one_cache(tmp_path: Path) -> None:
    suite = tmp_path / "s.toml"
    suite.write_text(mini_suite(dataset={"train_size": 1200}, train={"epochs": 3}))
    cache = tmp_path / "cache"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.cli",
                "run",
                str(suite),
                "--out",
                str(tmp_path / name),
                "--no-progress",
                "--no-report",
                "--cache-dir",
                str(cache),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
            env=env,
        )
        for name in ("a", "b")
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    (entry,) = cache.glob("*.pt")
    meta = read_meta(sidecar_path(entry))
    assert meta is not None and not (cache / "damaged").exists() and leftovers(cache) == []
    import hashlib

    assert hashlib.sha256(entry.read_bytes()).hexdigest() == meta["sha256"]
    for name in ("a", "b"):
        result = verify_folder(tmp_path / name)
        assert result.ok and result.checked == 2, result.lines()
