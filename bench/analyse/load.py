"""A results folder loaded for analysis: its finished run records, the suite that shaped them,
and per-seed metric values. Rendering (tables, figures, reports) is elsewhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.config.load import FolderCodeError, load_folder_suite
from bench.config.plan import select_variants
from bench.config.plugins import NO_TRUST, FolderTrust
from bench.config.suite import ReportSpec, Suite, SuiteError
from bench.results.metrics import by_seed
from bench.results.record import RunRecord
from bench.results.store import ResultStore, StoreError
from bench.results.summary import summary_frame


@dataclass
class Results:
    """Finished runs of one folder plus the suite settings that shaped them."""

    out_dir: Path
    records: list[RunRecord]
    frame: pd.DataFrame  # the tidy summary (run x threshold)
    suite: Suite | None
    failed: list[RunRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # run files that could not be read

    @property
    def report_spec(self) -> ReportSpec:
        return self.suite.report if self.suite else ReportSpec()

    @property
    def headline(self) -> float:
        if self.suite:
            return self.suite.evaluation.headline_threshold
        return self.records[0].headline_threshold if self.records else 0.6

    @property
    def variants(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.records:
            seen.setdefault(r.variant, None)
        return list(seen)

    def records_of(self, variant: str) -> list[RunRecord]:
        return [r for r in self.records if r.variant == variant]

    def energy_table(self) -> str:
        return self.records[0].energy_table if self.records else "eyeriss"

    def energy_unit(self) -> str:
        if not self.records or self.records[0].cost is None:
            return ""
        return self.records[0].cost.energy_tables[self.energy_table()]["unit"]

    def by_seed(self, variant: str, metric: str, threshold: float | None = None) -> dict[int, float]:
        """{seed: value} of ``metric`` (a name in :data:`bench.results.metrics.METRICS`) for ``variant``."""
        return by_seed(self.records_of(variant), metric, self.headline if threshold is None else threshold)

    def subset(self, patterns: Sequence[str]) -> Results:
        """Only the variants ``--only`` patterns select (:func:`bench.config.plan.select_variants`)."""
        if not patterns:
            return self
        keep = select_variants([(r.variant, r.variant_base) for r in [*self.records, *self.failed]], patterns)
        frame = self.frame[self.frame["variant"].isin(keep)] if "variant" in self.frame else self.frame
        return dataclasses.replace(
            self,
            records=[r for r in self.records if r.variant in keep],
            frame=frame,
            failed=[r for r in self.failed if r.variant in keep],
        )

    def steps(self, variant: str) -> int:
        """Training steps per seed of ``variant`` (pre-training included), the most common value over seeds."""
        values = [r.total_steps for r in self.records_of(variant)]
        return max(set(values), key=values.count) if values else 0

    def latency_batches(self) -> list[int]:
        return sorted({b for r in self.records if r.latency for b in r.latency.batch_sizes})


def recorded_plugins(records: Sequence[RunRecord]) -> list[str]:
    """The plugin paths the folder's runs recorded (each resolved against the suite file that named it)."""
    found: dict[str, None] = {}
    for r in records:
        listed = r.config.get("plugins", [])
        if isinstance(listed, list):
            found.update((p, None) for p in listed if isinstance(p, str))
    return list(found)


def load_results(out_dir: str | Path, trust: FolderTrust = NO_TRUST) -> Results:
    """Read a results folder written by ``bench run``; unreadable run files are listed, not fatal.

    The folder's ``suite.toml`` is read as data: no plugin it names is imported unless ``trust`` allows it
    (:func:`bench.config.load.load_folder_suite`); a suite that no longer validates leaves ``suite`` None.
    """
    out = Path(out_dir)
    if not (out / "runs").is_dir():
        raise StoreError(f"{out}: no runs/ folder; is this a results folder written by `bench run`?")
    store = ResultStore(out)
    records = store.latest_runs()
    ok = [r for r in records if r.ok]
    failed = [r for r in records if not r.ok]
    order = {}
    suite = None
    suite_file = out / "suite.toml"
    if suite_file.is_file():
        overrides = ok[0].config.get("overrides", []) if ok else []
        if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
            raise StoreError(f"{out}: runs record config.overrides {overrides!r}; expected a list of strings")
        try:
            suite = load_folder_suite(out, overrides, trust, recorded_plugins(records))
            order = {v.name: i for i, v in enumerate(suite.variants)}
        except FolderCodeError:
            raise
        except SuiteError:
            suite = None
    ok.sort(key=lambda r: (order.get(r.variant_base, 99), r.variant, r.seed))
    return Results(out, ok, summary_frame(records), suite, failed, list(store.problems.values()))
