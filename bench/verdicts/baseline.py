"""The baseline of ``bench check``: the document a results folder gives (per variant and seed, accuracy and compute
saved at the checked threshold, latency where timed, the context it was made in, and the verdicts of a claims file),
and its typed reading (:mod:`bench.results.typed`): a missing, malformed or mistyped file is a
:class:`BaselineError` naming the file and the field."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.analyse.load import load_results
from bench.results.metrics import METRICS, MetricKey
from bench.results.provenance import code_version, now
from bench.results.typed import TypedDataError, load_typed
from bench.verdicts.compare import describe
from cascade.errors import UserError

BASELINE_SCHEMA = 1
#: The gated metrics: (metric in bench.results.metrics.METRICS, the [check] margin that applies to it)
GATED = (("accuracy", "max_accuracy_drop"), ("saved_vs_base", "max_savings_drop"))


class BaselineError(ValueError, UserError):
    """A missing or malformed baseline file."""


def baseline_from_results(out_dir: Path, threshold: float, command: str) -> dict[str, Any]:
    """The baseline document of a results folder (latency per timed batch size where the runs timed it)."""
    results = load_results(out_dir)
    variants: dict[str, Any] = {}
    for variant in results.variants:
        seeds: dict[str, dict[str, Any]] = {}
        for rec in results.records_of(variant):
            entry: dict[str, Any] = {m: METRICS[m].value_at(rec, threshold) for m, _ in GATED}
            timed = rec.latency
            for runtime in timed.runtime_names if timed is not None else []:
                assert timed is not None
                keys = {b: MetricKey("latency", runtime=runtime, batch=b) for b in timed.batch_sizes}
                lat = {str(b): key.metric_spec().value_at(rec, threshold) for b, key in keys.items()}
                field = MetricKey("latency", runtime=runtime).baseline_field()
                entry[field] = {b: v for b, v in lat.items() if not math.isnan(v)}
            seeds[str(rec.seed)] = entry
        variants[variant] = {"seeds": seeds}
    side = describe(results)
    return {
        "context": {"model": side.model, "dataset": side.dataset, "overrides": side.overrides, "steps": side.steps},
        "schema": BASELINE_SCHEMA,
        "suite": results.suite.name if results.suite else out_dir.name,
        "threshold": threshold,
        "created": now(),
        "command": command,
        "code": code_version(),
        "variants": variants,
    }


@dataclass(frozen=True)
class BaselineVariant:
    # seed -> metric -> value: the gated metrics (GATED) as numbers, latency as {batch: seconds per sample}
    seeds: dict[str, dict[str, float | dict[str, float]]]


@dataclass(frozen=True)
class Baseline:
    """A baseline file, as :func:`read_baseline` accepts it (every value typed; no NaN passes as a number)."""

    schema: int
    suite: str
    threshold: float
    variants: dict[str, BaselineVariant]
    created: str = ""
    command: str = ""
    code: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] | None = None
    claims: dict[str, Any] | None = None  # bench check --claims: the file and every row's verdict


def read_baseline(path: Path, suite_name: str) -> dict[str, Any]:
    """A baseline's JSON, read through the typed loader (:mod:`bench.results.typed`): a missing, malformed or
    mistyped file is a :class:`BaselineError` naming the file and the field."""
    if not path.is_file():
        raise BaselineError(
            f"baseline {path} not found; create it on purpose with: bench check SUITE --baseline {path} --update"
        )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BaselineError(f"baseline {path} is not valid JSON ({e}); regenerate it with --update") from None
    if not isinstance(data, dict) or data.get("schema") != BASELINE_SCHEMA:
        raise BaselineError(
            f"baseline {path}: expected schema {BASELINE_SCHEMA} with a 'variants' table; regenerate it with --update"
        )
    try:
        baseline = load_typed(Baseline, data, f"baseline {path}")
    except TypedDataError as e:
        raise BaselineError(f"{e}; regenerate it with --update") from None
    if baseline.suite != suite_name:
        raise BaselineError(f"baseline {path} is for suite {baseline.suite!r}, not {suite_name!r}")
    for name, v in baseline.variants.items():
        for seed, values in v.seeds.items():
            lacking = [m for m, _ in GATED if not isinstance(values.get(m), float)]
            if lacking:
                raise BaselineError(
                    f"baseline {path}: variants.{name}.seeds.{seed}: lacks the number(s) "
                    f"{', '.join(lacking)}; regenerate it with --update"
                )
    return data
