"""What ``bench list`` shows: every run file of a folder and its status, as plain rows (no pandas, no torch: a
folder is listed in the time it takes to read its files)."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from rich.table import Table

from bench.results.store import ResultStore, StoreError

COLUMNS = ("variant", "seed", "status", "test acc @ headline", "early", "seconds", "key")


def run_rows(out_dir: Path) -> list[dict[str, str]]:
    """Every run file of a folder and its status (superseded: an older run of the same variant and seed)."""
    if not (out_dir / "runs").is_dir():
        raise StoreError(f"{out_dir}: no runs/ folder; is this a results folder written by `bench run`?")
    store = ResultStore(out_dir)
    current = {r.key for r in store.latest_runs()}
    rows = []
    for rec in store.iter_runs():
        acc = early = ""
        if rec.ok:
            t = rec.at(rec.headline_threshold)
            acc, early = f"{t.accuracy:.2%}", f"{t.early_share:.1%}"
            status = "ok"
        else:
            status = f"{rec.status}: {rec.error_message[:60]}"
        if rec.key not in current:
            status = f"superseded ({status})"
        values = (rec.variant, str(rec.seed), status, acc, early, f"{rec.seconds:.1f}", rec.key)
        rows.append(dict(zip(COLUMNS, values)))
    for path, problem in store.problems.items():
        values = (path.parent.name, "", f"unreadable: {problem}", "", "", "", path.stem)
        rows.append(dict(zip(COLUMNS, values)))
    return rows


def runs_table(rows: list[dict[str, str]], title: str) -> Table:
    table = Table(title=title, show_lines=False)
    for col in COLUMNS:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*[escape(row[c]) for c in COLUMNS])  # variant names like "firm[lambda=0.2]" are not markup
    return table
