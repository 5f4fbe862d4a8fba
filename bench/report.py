"""Reports: data first (DataFrames), rendering last."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.store import ResultStore, summary_frame


def list_runs(out_dir: Path, console: Console) -> None:
    store = ResultStore(out_dir)
    if not (out_dir / "runs").is_dir():
        from bench.store import StoreError

        raise StoreError(f"{out_dir}: no runs/ folder; is this a results folder written by `bench run`?")
    table = Table(title=f"runs in {out_dir}")
    for col in ("variant", "seed", "status", "test acc @ headline", "seconds", "key"):
        table.add_column(col)
    for rec in store.iter_runs():
        head = rec["config"]["evaluation"]["headline_threshold"]
        acc = ""
        if rec.get("status") == "ok":
            rows = [t for t in rec["thresholds"] if t["threshold"] in (head, None)]
            acc = f"{rows[0]['accuracy']:.2%}" if rows else ""
        status = rec["status"] if rec["status"] == "ok" else f"[red]{rec['status']}: {rec['error']['message'][:60]}[/]"
        table.add_row(rec["variant"], str(rec["seed"]), status, acc, f"{rec.get('seconds', 0):.1f}", rec["key"])
    console.print(table)


def print_run_table(out_dir: Path, console: Console) -> None:
    frame = summary_frame(ResultStore(out_dir))
    if frame.empty:
        console.print("no finished runs")
        return
    console.print(frame.groupby("variant")[["accuracy", "early_share", "saved_vs_base"]].mean().to_string())


def print_cost(suite_path: str, overrides: Sequence[str], *, variant: str | None, table: str | None, console: Console) -> None:
    raise NotImplementedError


def write_report(out_dir: Path, log: Callable[[str], None] = print) -> Any:
    raise NotImplementedError
