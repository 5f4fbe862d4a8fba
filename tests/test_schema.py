"""Run-file schemas: every committed run file loads through the migrations without losing a field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.results.errors import StoreError
from bench.results.migrate import MIGRATIONS, SCHEMA_VERSION, upgrade, v1_to_v2
from bench.results.record import RunRecord, to_json
from bench.results.store import ResultStore
from bench.results.summary import summary_frame

from .conftest import REPO

RUN_FILES = sorted([*REPO.glob("results/*/runs/*/*.json"), *REPO.glob("tests/fixtures/*/runs/*/*.json")])


def _without_nulls(obj: object) -> object:
    """JSON with null-valued keys dropped (an optional part left out and one written as null are the same)."""
    if isinstance(obj, dict):
        return {k: _without_nulls(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_without_nulls(v) for v in obj]
    return obj


def test_every_version_step_has_one_named_migration() -> None:
    assert sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION))
    assert all(fn.__name__ == f"v{v}_to_v{v + 1}" for v, fn in MIGRATIONS.items())


def test_committed_run_files_load_upgraded_and_round_trip() -> None:
    assert len(RUN_FILES) > 100, "the committed results folders hold their run files"
    versions = set()
    for path in RUN_FILES:
        data = json.loads(path.read_text())
        versions.add(data["schema"])
        record = RunRecord.from_json(data, str(path))
        assert record.schema == SCHEMA_VERSION
        # nothing the file holds is lost on the way in (from_json keeps only the fields it knows)
        assert _without_nulls(record.to_json()) == _without_nulls(upgrade(data)), path
    assert 1 in versions  # the committed files predate schema 2: the migration is exercised


def test_v1_to_v2_names_the_eager_runtime() -> None:
    v1 = {
        "schema": 1,
        "latency": {
            "exit_paths": [{"exit": "p1"}, {"exit": "p1", "runtime": "onnxruntime"}],
            "cascade": [{"threshold": 0.6}],
        },
    }
    v2 = upgrade(v1)
    assert [p["runtime"] for p in v2["latency"]["exit_paths"]] == ["eager", "onnxruntime"]
    assert v2["latency"]["cascade"][0]["runtime"] == "eager" and v2["schema"] == 2
    assert "runtime" not in v1["latency"]["exit_paths"][0]  # upgrade works on a copy
    assert v1_to_v2({"schema": 1})["schema"] == 2  # a failed run has no latency


@pytest.mark.parametrize(("schema", "says"), [(99, "newer cascade-bench"), (0, "rerun"), ("1", "rerun")])
def test_unknown_schemas_are_refused_with_the_remedy(schema: object, says: str) -> None:
    with pytest.raises(StoreError, match=says):
        RunRecord.from_json({"schema": schema}, "runs/x.json")


def test_typed_latency_lookup_is_the_one_rule() -> None:
    data = json.loads(next(p for p in RUN_FILES if "mnist_cpu_latency" in str(p)).read_text())
    lat = RunRecord.from_json(data).latency
    assert lat is not None
    for runtime in lat.runtime_names:
        for entry in lat.entries(runtime):
            assert lat.at(entry.threshold, entry.batch_size, runtime) is entry
            assert lat.at(entry.threshold + 1e-12 if entry.threshold else None, entry.batch_size, runtime) is entry
        for path in lat.path_entries(runtime):
            assert lat.path_at(path.exit, path.batch_size, runtime) is path
    assert lat.at(0.6, 3) is None
    assert to_json(lat)["cascade"][0]["runtime"] == "eager"


@pytest.mark.parametrize("folder", sorted(p.parent.name for p in REPO.glob("results/*/summary.csv")))
def test_committed_summaries_are_what_the_code_computes_now(folder: str) -> None:
    """Every committed summary.csv equals the one computed from its run files by today's code (schema
    migrations and typed records change nothing a reader sees)."""
    root = REPO / "results" / folder
    frame = summary_frame(ResultStore(root).latest_runs())
    assert frame.to_csv(index=False) == (root / "summary.csv").read_text()


def test_every_committed_run_is_planned_by_its_folders_suite() -> None:
    """New options (losses, policies, train fields) never move the keys of runs already committed: each run file's
    key (or, for runs made before logging settings left the keys, its legacy key) is one its folder's suite.toml
    plans with the run's recorded overrides."""
    from bench.config.load import load_suite
    from bench.config.plan import expand_runs

    planned: dict[tuple[Path, tuple[str, ...]], set[str]] = {}
    missing = []
    for path in sorted((REPO / "results").glob("*/runs/*/*.json")):
        folder = path.parents[2]
        rec = json.loads(path.read_text())
        overrides = tuple(rec["config"].get("overrides", []))
        if (folder, overrides) not in planned:
            runs = expand_runs(load_suite(folder / "suite.toml", list(overrides)), list(overrides))
            planned[(folder, overrides)] = {r.key for r in runs} | {r.legacy_key for r in runs}
        if rec["key"] not in planned[(folder, overrides)]:
            missing.append(str(path.relative_to(REPO)))
    assert planned and not missing, missing
