"""BranchyNet's Table I (LeNet row) against a results folder of ``suites/branchynet_lenet.toml``: the claims of
``claims/branchynet.toml`` (their numbers, each against ours with the engine's guards:
:mod:`bench.verdicts.engine`), then the cost table the paper did not report.

    bench reproduce results/branchynet_lenet --out results/branchynet_lenet/REPRODUCTION.md
"""

from __future__ import annotations

from pathlib import Path

from bench.analyse import stats
from bench.analyse.load import Results
from bench.config.plugins import NO_TRUST, FolderTrust
from bench.verdicts import page
from bench.verdicts.engine import evaluate, read_claims


def _iv(values: list[float]) -> stats.Interval | None:
    return stats.t_interval(values) if values else None


def cost_lines(results: Results) -> list[str]:
    lenet, blenet = results.records_of("lenet")[0], results.records_of("b-lenet")[0]
    thr = results.headline
    table = results.energy_table()
    assert lenet.cost is not None and blenet.cost is not None
    lines = [
        f"| network | MACs per sample (1 MAC = 2 FLOPs) | energy ({table}, MAC-equivalents) |",
        "| --- | --- | --- |",
        f"| LeNet | {lenet.cost.per_exit[-1].macs:,} | {lenet.cost.per_exit[-1].energy[table]['total']:,.0f} |",
    ]
    for c in blenet.cost.per_exit:
        lines.append(f"| B-LeNet, up to exit {c.exit} | {c.macs:,} | {c.energy[table]['total']:,.0f} |")
    macs = _iv([r.at(thr).macs_expected for r in results.records_of("b-lenet")])
    energy = _iv([r.at(thr).energy_expected[table] for r in results.records_of("b-lenet")])
    if macs and energy:
        lines.append(f"| B-LeNet at their threshold (expected) | {macs.mean:,.0f} | {energy.mean:,.0f} |")
    return lines


def render(folder: Path, trust: FolderTrust = NO_TRUST) -> str:
    """REPRODUCTION.md: the claims of claims/branchynet.toml on ``folder``, then the cost table."""
    claims = read_claims("branchynet")
    (table,) = evaluate(claims, [folder], trust, strict=False)
    lines = [page.render(claims.page, [table]).rstrip(), "", "## Cost (not reported in the paper)", ""]
    return "\n".join([*lines, *cost_lines(table.results)]) + "\n"
