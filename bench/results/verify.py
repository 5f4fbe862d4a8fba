"""``bench verify DIR``: every artefact of a results folder checked against the digests its run files
and checkpoint sidecars record (see :mod:`bench.results.artefacts`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.results.artefacts import read_meta, sidecar_path
from bench.results.files import OutsideError, confined, mismatch
from bench.results.store import ResultStore, StoreError


@dataclass
class VerifyResult:
    """What :func:`verify_folder` found."""

    root: Path
    checked: int = 0  # files whose digest was compared
    bad: list[str] = field(default_factory=list)  # one line per damaged file or unreadable run file
    missing: int = 0  # files a run file lists that are absent (not damage: checkpoints stay out of git)
    undigested: int = 0  # finished runs whose file predates digests

    @property
    def ok(self) -> bool:
        return not self.bad

    def lines(self) -> list[str]:
        """One line per bad file, then the closing count."""
        extra = f", {self.missing} listed file(s) absent (not checked)" if self.missing else ""
        old = f", {self.undigested} run file(s) without digests (written before them)" if self.undigested else ""
        return [*self.bad, f"{self.root}: {self.checked} file(s) checked, {len(self.bad)} bad{extra}{old}"]


def verify_folder(root: str | Path) -> VerifyResult:
    """Check every run file's artefacts and every checkpoint's sidecar in ``root``."""
    root = Path(root)
    if not (root / "runs").is_dir():
        raise StoreError(f"{root}: not a results folder (no runs/ inside)")
    store = ResultStore(root)
    result = VerifyResult(root)
    listed: set[Path] = set()
    for record in store.iter_runs(verify=False):
        if record.artefacts is None:
            result.undigested += record.ok
        for rel, digest in (record.artefacts or {}).items():
            try:
                path = confined(root, rel, f"{store.run_path(record.variant, record.key)}: artefacts")
            except OutsideError as e:
                result.bad.append(str(e))
                continue
            listed.add(path)
            if not path.is_file():
                result.missing += 1
                continue
            result.checked += 1
            if (why := mismatch(path, digest)) is not None:
                result.bad.append(f"{path}: {why} (run file {store.run_path(record.variant, record.key)})")
    result.bad += list(store.problems.values())  # unreadable run files
    for ckpt in sorted((root / "checkpoints").glob("*.pt")):
        try:
            for path in (ckpt, sidecar_path(ckpt)):
                confined(root, str(path.relative_to(root)), f"{root}: checkpoints")
        except OutsideError as e:
            result.bad.append(str(e))
            continue
        meta = read_meta(sidecar_path(ckpt))
        if meta is None or ckpt.resolve() in listed:
            continue
        result.checked += 1
        if (why := mismatch(ckpt, meta["sha256"])) is not None:
            result.bad.append(f"{ckpt}: {why} (sidecar {sidecar_path(ckpt).name})")
    return result
