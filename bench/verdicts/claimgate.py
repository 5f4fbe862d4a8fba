"""``bench check --claims FILE``: a gate on research results, not only on cost figures.

With ``--update``, the baseline records the verdict of every row of the claims file on the suite's results (the
claims engine, :mod:`bench.verdicts.engine`). A later ``bench check`` tests the same file on the new results and
fails when a row that **agreed** in the baseline no longer does (it now disagrees, is not significant, or cannot be
tested: "my method beats sum at 50 % of base MACs, at this n" no longer holds), or is gone. Rows that did not agree
in the baseline are shown, not gated: a claim that never held cannot regress.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.verdicts.engine import Row, evaluate, read_claims
from bench.verdicts.page import estimate


@dataclass(frozen=True)
class ClaimCheck:
    """One claims row: its verdict in the baseline and now."""

    key: str
    baseline: str
    current: str
    estimate: str

    @property
    def fails(self) -> bool:
        return self.baseline == "agrees" and self.current != "agrees"


def record(claims: str, folder: Path) -> dict[str, Any]:
    """The claims part of a baseline: the file as given and every row's verdict and estimate."""
    (table,) = evaluate(read_claims(claims), [folder])
    return {"file": claims, "verdicts": {row.key: _entry(row) for row in table.rows}}


def _entry(row: Row) -> dict[str, Any]:
    est = row.estimate
    mean = est.mean if est is not None and not math.isnan(est.mean) else None
    return {"verdict": row.verdict, "estimate": estimate(row), "mean": mean, "n": row.n}


def compare(base: dict[str, Any], current: dict[str, Any]) -> list[ClaimCheck]:
    """Every baseline row against the same row now (a row gone now counts as "missing")."""
    now = current["verdicts"]
    out = []
    for key, then in base["verdicts"].items():
        entry = now.get(key, {"verdict": "missing", "estimate": ""})
        out.append(ClaimCheck(key, then["verdict"], entry["verdict"], entry["estimate"]))
    return out


def markdown(checks: list[ClaimCheck], file: str) -> str:
    """The gate's table; failing rows first."""
    failing = [c for c in checks if c.fails]
    lines = [
        f"Claims gate ({file}): fails when a row that agreed in the baseline no longer does; "
        f"{len(failing)} of {sum(c.baseline == 'agrees' for c in checks)} guarded row(s) fail.",
        "",
        "| claim | baseline | now | estimate now | gate |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in sorted(checks, key=lambda c: not c.fails):
        gate = "FAILS" if c.fails else ("holds" if c.baseline == "agrees" else "not guarded")
        lines.append(f"| {c.key} | {c.baseline} | {c.current} | {c.estimate} | {gate} |")
    return "\n".join(lines) + "\n"
