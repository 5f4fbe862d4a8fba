"""The claims engine's rows as a markdown page: per folder, what it ran (length, seeds, overrides), then one line
per claim point with what it was read against, the estimate, the tests, the verdict and its guards."""

from __future__ import annotations

import math
from collections.abc import Sequence

from bench.render.format import fmt_p
from bench.verdicts.claimsfile import Page
from bench.verdicts.engine import Row, Table
from bench.verdicts.guards import epochs_of, steps

LEGEND = (
    "Verdicts: **agrees** / **disagrees**: the Holm-corrected paired test is significant in / against the claimed "
    "direction (for a published number: our mean is within its tolerance / our 95 % interval excludes it); "
    "**not significant**: with the smallest effect these seeds could detect at 80 % power; **untestable**: these "
    "runs cannot test the claim, with the reason; *provisional*: the verdict stands with the caveats named beside "
    "it (few seeds, runs still learning, runs shorter than the suite's or the paper's length). Described rows and "
    "published-number rows are estimates, outside the Holm family."
)


def render(page: Page, tables: Sequence[Table], *, heading: str = "#") -> str:
    """The page: title, introduction, what each variant is, the legend, then one section per folder."""
    lines = [f"{heading} {page.title}", ""]
    if page.intro:
        lines += [page.intro.strip(), ""]
    if page.variants:
        lines += ["| variant | what it is |", "| --- | --- |"]
        lines += [f"| {name} | {what} |" for name, what in page.variants.items()]
        lines += [""]
    lines += [LEGEND, ""]
    for table in tables:
        lines += section(table, heading=heading + "#")
    return "\n".join(lines).rstrip() + "\n"


def section(table: Table, *, heading: str = "##") -> list[str]:
    """One folder's settings and claims table."""
    res = table.results
    dataset = res.records[0].dataset if res.records else "?"
    model = res.suite.model.name if res.suite else "?"
    lines = [f"{heading} {table.folder.name} ({dataset}, {model})", "", *settings(table), ""]
    lines += [
        "| claim | source | statement | compared | read on | steps | estimate (95 % CI) | n | p | p (Holm) | "
        "verdict | guards and notes |",
        "| --- " * 12 + "|",
    ]
    lines += [_line(row) for row in table.rows]
    return [*lines, ""]


def settings(table: Table) -> list[str]:
    """What the folder's runs were: how many, which seeds, how long they trained, the overrides, the code."""
    res = table.results
    seeds = sorted({r.seed for r in res.records})
    overrides = sorted({o for r in res.records for o in r.config.get("overrides", [])})
    commits = sorted({str(r.provenance.get("git_commit", "?"))[:7] for r in res.records})
    lengths = sorted({epochs_of(r) for r in res.records})
    per_stage = sorted({own for own, _ in lengths})
    lines = [
        f"- `{table.folder}`: {len(res.records)} runs of {len(res.variants)} variants, seeds {seeds}, code "
        f"{', '.join(commits)}",
        f"- length: {', '.join(map(str, per_stage))} epoch(s) per stage; overrides: "
        f"{', '.join(f'`{o}`' for o in overrides) or 'none'}",
        "- steps per seed (pre-training included): "
        + ", ".join(f"{v} {steps(res.records_of(v)):,}" for v in res.variants),
    ]
    if res.failed:
        lines.append(f"- failed runs: {', '.join(sorted({f'{r.variant} seed {r.seed}' for r in res.failed}))}")
    if res.problems:
        lines.append(f"- unusable run files: {len(res.problems)} ({res.problems[0]})")
    return lines


def _line(row: Row) -> str:
    c = row.claim
    source = c.source.paper + (f", {c.source.where}" if c.source.where else "")
    read_on = row.metric
    verdict = f"**{row.verdict}**" if row.verdict in ("agrees", "disagrees") else row.verdict
    if row.provisional and row.verdict in ("agrees", "disagrees", "not significant"):
        verdict += " (*provisional*)"
    parts = [row.detail] if row.verdict == "untestable" else [row.detail, *row.provisional, *row.notes, c.note]
    guards = "; ".join(part for part in parts if part)
    p = fmt_p(row.p) if row.tested else ("exact" if row.exact else "")
    holm = fmt_p(row.p_holm) if row.tested else ""
    cells = [
        c.id,
        source,
        c.statement,
        row.compared,
        read_on,
        row.steps,
        estimate(row),
        str(row.n or ""),
        p,
        holm,
        verdict,
        guards,
    ]
    return "| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |"


def estimate(row: Row) -> str:
    """``+0.69 [+0.41, +0.97] points`` for a difference, ``99.12 [98.80, 99.43] %`` for a value."""
    est = row.estimate
    if est is None or math.isnan(est.mean):
        return "n/a"
    if row.claim.against is not None:
        sign = "+"
        unit = row.unit
    else:
        sign = ""
        unit = "%" if row.unit == "points" else row.unit
    digits = 3 if abs(est.mean) < 1 and unit not in ("%", "points") else 2
    body = f"{est.mean:{sign}.{digits}f}"
    if not math.isnan(est.low):
        body += f" [{est.low:{sign}.{digits}f}, {est.high:{sign}.{digits}f}]"
    return f"{body} {unit}".rstrip()
