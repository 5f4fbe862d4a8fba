"""The source study's claims (``claims/study.toml``), tested by the claims engine on results folders, with the
study's descriptive tables (results/STUDY.md).

    bench study results/mnist results/noisy_mnist ... --out results/STUDY.md

After the claims (each read against its own comparator, at equal training steps, with the engine's guards:
:mod:`bench.verdicts.engine`), two descriptions per folder, not tests: accuracy at matched early-exit shares on the
exact curves (50 / 80 / 90 % early), and the cost view at the headline threshold (MACs, energy and latency saved).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.analyse import stats
from bench.analyse.curves import MATCHED_SHARES
from bench.analyse.load import Results
from bench.config.plugins import NO_TRUST, FolderTrust
from bench.render.format import fmt_interval
from bench.verdicts import page
from bench.verdicts.engine import evaluate, read_claims


def has_curves(results: Results, *variants: str) -> bool:
    return all(r.curve is not None for v in variants for r in results.records_of(v))


def matched_rows(results: Results, dataset: str) -> list[dict[str, Any]]:
    """Per variant with recorded curves: exact area and accuracy at matched early shares (mean, CI)."""
    rows = []
    for v in results.variants:
        recs = results.records_of(v)
        if not recs[0].exits_at or not has_curves(results, v):
            continue
        row: dict[str, Any] = {
            "dataset": dataset,
            "variant": v,
            "n": len(recs),
            "steps": results.steps(v),
            "area": stats.t_interval([float(r.curve["area"]) for r in recs if r.curve]),
        }
        row["final_exit"] = stats.t_interval([r.exits.test_accuracy[-1] for r in recs if r.exits])
        for share in MATCHED_SHARES:
            row[f"at_{share:g}"] = stats.t_interval([float(r.curve["matched"][f"{share:g}"]) for r in recs if r.curve])
        rows.append(row)
    return rows


def cost_rows(results: Results, dataset: str) -> list[dict[str, Any]]:
    thr = results.headline
    table = results.energy_table()
    rows = []
    for v in results.variants:
        recs = results.records_of(v)
        acc = stats.t_interval(list(results.by_seed(v, "accuracy", thr).values()))
        early = stats.t_interval(list(results.by_seed(v, "early_share", thr).values()))
        saved = stats.t_interval(list(results.by_seed(v, "saved_vs_base", thr).values()))
        esaved = stats.t_interval(list(results.by_seed(v, "energy_saved", thr).values()))
        lat: dict[int, list[float]] = {}
        for r in recs:
            for batch in r.latency.batch_sizes if r.latency else []:
                item = r.latency.at(thr, batch) if r.latency else None
                if item is not None:
                    lat.setdefault(batch, []).append(1 - item.dynamic["median"] / item.full["median"])
        row = {
            "dataset": dataset,
            "variant": v,
            "n": len(recs),
            "accuracy": acc,
            "early": early,
            "macs_saved": saved,
            "energy_saved": esaved,
            "energy_table": table,
            "latency_saved": {b: stats.t_interval(vals) for b, vals in sorted(lat.items())},  # per batch size
        }
        rows.append(row)
    return rows


def _iv(iv: stats.Interval, scale: float = 100, digits: int = 1) -> str:
    return fmt_interval(iv.mean, iv.low, iv.high, scale, digits)


def render(folders: Sequence[Path], trust: FolderTrust = NO_TRUST) -> str:
    """results/STUDY.md: the claims of claims/study.toml on ``folders``, then the matched-share and cost tables."""
    claims = read_claims("study")
    tables = evaluate(claims, list(folders), trust, strict=False)
    matched: list[dict[str, Any]] = []
    costs: list[dict[str, Any]] = []
    for table in tables:
        matched += matched_rows(table.results, table.folder.name)
        costs += cost_rows(table.results, table.folder.name)
    lines = [page.render(claims.page, tables).rstrip(), "", *_matched_table(matched), *_cost_table(costs)]
    return "\n".join(lines).rstrip() + "\n"


def _matched_table(matched: list[dict[str, Any]]) -> list[str]:
    if not matched:
        return []
    shares = [f"at_{s:g}" for s in MATCHED_SHARES]
    lines = [
        "## Accuracy at matched early-exit shares (exact curves)",
        "",
        "Described, not tested. Cascade test accuracy (%) when the threshold is set so that the stated share of test "
        "samples leaves early (linear between the exact curve's points), the exact area (mean accuracy over early "
        "shares 0-100 %), and the final exit's own accuracy (every sample through it). Mean ± 95 % t-interval "
        "half-width over seeds.",
        "",
        "| folder | variant | n | steps | final exit (%) | area (%) | "
        + " | ".join(f"{100 * s:g} % early" for s in MATCHED_SHARES)
        + " |",
        "| --- " * (6 + len(shares)) + "|",
    ]
    for r in matched:
        lines.append(
            f"| {r['dataset']} | {r['variant']} | {r['n']} | {r['steps']} | {_iv(r['final_exit'], digits=2)} | "
            f"{_iv(r['area'], digits=2)} | " + " | ".join(_iv(r[k], digits=2) for k in shares) + " |"
        )
    return [*lines, ""]


def _cost_table(costs: list[dict[str, Any]]) -> list[str]:
    batches = sorted({b for r in costs for b in r["latency_saved"]})
    lines = [
        "## Cost view at t = 0.6 (what the study did not measure)",
        "",
        "Described, not tested. Mean ± 95 % t-interval half-width over seeds. MACs and energy saved are against the "
        "base network (same backbone, no exit heads); latency saved is measured: 1 - time(dynamic forward) / "
        "time(full network) on the test set, same model, same machine.",
        "",
        "| folder | variant | n | accuracy (%) | early (%) | MACs saved (%) | energy saved (%, "
        f"{costs[0]['energy_table'] if costs else ''}) |" + "".join(f" latency saved b{b} (%) |" for b in batches),
        "| --- " * (7 + len(batches)) + "|",
    ]
    for r in costs:
        lines.append(
            f"| {r['dataset']} | {r['variant']} | {r['n']} | {_iv(r['accuracy'], digits=2)} | {_iv(r['early'])} | "
            f"{_iv(r['macs_saved'])} | {_iv(r['energy_saved'])} |"
            + "".join(f" {_iv(r['latency_saved'][b]) if b in r['latency_saved'] else 'n/a'} |" for b in batches)
        )
    return lines
