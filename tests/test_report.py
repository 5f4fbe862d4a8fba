"""Reports and comparisons from the committed fixture results."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from bench.analyse.load import load_results
from bench.analyse.stats import holm
from bench.analyse.tables import build_tables
from bench.render.format import main_display
from bench.render.report import write_report
from bench.verdicts.compare import CompareError, compare

from .conftest import REPO

FIX = REPO / "tests" / "fixtures"
GOLDEN = REPO / "tests" / "golden"


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rep") / "results_a"
    shutil.copytree(FIX / "results_a", out)
    write_report(out, log=lambda s: None)
    return out


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; rerun with UPDATE_GOLDEN=1 if the change is intended"


def test_main_table_golden(report_dir: Path) -> None:
    check_golden("main.md", (report_dir / "tables" / "main.md").read_text())
    check_golden("vs_reference.md", (report_dir / "tables" / "vs_reference.md").read_text())


def test_report_sections_and_tables(report_dir: Path) -> None:
    text = (report_dir / "report.md").read_text()
    for heading in (
        "## Main results at threshold 0.6",
        "## Paired differences vs the reference variant",
        "## Cumulative cost per exit",
        "## Figures",
        "## Warnings",
    ):
        assert heading in text
    assert "n = 3 seeds (< 5)" in text
    for name in ("main", "vs_reference", "vs_cascade_reference", "exit_costs"):
        for ext in ("md", "csv", "tex"):
            assert (report_dir / "tables" / f"{name}.{ext}").stat().st_size > 0
    assert "\\begin{table}" in (report_dir / "tables" / "main.tex").read_text()


def test_every_figure_is_written(report_dir: Path) -> None:
    names = [
        "loss_curves",
        "accuracy_per_epoch",
        "accuracy_vs_threshold",
        "early_vs_threshold",
        "lambda_sweep",
        "headline_bars",
        "accuracy_vs_macs",
        "accuracy_vs_energy",
    ]
    for name in names:
        for ext in ("png", "pdf"):
            f = report_dir / "figures" / f"{name}.{ext}"
            assert f.is_file() and f.stat().st_size > 1000, f
        assert f"figures/{name}.png" in (report_dir / "report.md").read_text()


def test_statistics_follow_the_runs() -> None:
    res = load_results(FIX / "results_a")
    tables = build_tables(res)
    main = tables.main.set_index("variant")
    # the mean over seeds of the run files, recomputed here from the tidy summary
    frame = res.frame[res.frame["threshold"] == 0.6]
    for variant in main.index:
        assert main.loc[variant, "accuracy"] == pytest.approx(frame[frame["variant"] == variant]["accuracy"].mean())
    vs = tables.vs_reference
    assert set(vs["reference"]) == {"base"} and len(vs) == 2 * (len(main) - 1)
    assert (vs["p_holm"] >= vs["p"]).all()
    casc = tables.vs_cascade_reference
    assert set(casc["reference"]) == {"sum-p2"}
    display = main_display(res, tables)
    assert display.columns[4] == "accuracy (%)" and "±" in display.iloc[0, 4]


def test_compare_two_folders(tmp_path: Path) -> None:
    out = tmp_path / "cmp.md"
    frame = compare(FIX / "results_a", FIX / "results_b", console=Console(file=open(os.devnull, "w")), out=str(out))
    soft = frame[(frame["variant"] == "soft-p2") & (frame["metric"] == "accuracy")].iloc[0]
    assert soft["test"] == "paired" and soft["ratio B/A"] == pytest.approx(soft["B"] / soft["A"])
    base = frame[(frame["variant"] == "base") & (frame["metric"] == "accuracy")].iloc[0]
    assert base["ratio B/A"] == pytest.approx(1.0) and base["test"] == "identical"  # unchanged: no test
    macs = frame[(frame["variant"] == "base") & (frame["metric"] == "macs")].iloc[0]
    assert macs["test"] == "no variation" and math.isnan(macs["p_holm"])
    # Holm runs over the tested rows only
    tested = frame[frame["p"].notna()]
    assert list(tested["p_holm"]) == pytest.approx(holm(list(tested["p"])))
    assert set(frame.loc[frame["p"].isna(), "test"]) <= {"identical", "no variation", "exact", "n = 1"}
    text = out.read_text()
    assert "| dataset | digits (fingerprint c86b5be56d937f6b, sizes 1150/288/359) |" in text
    assert "training lengths differ for soft-p2: A 54 steps, B 108 steps" in text
    assert "latency b1 (µs/sample)" in text  # the report's unit, not seconds
    lat = frame[(frame["variant"] == "base") & (frame["metric"] == "latency_b1")].iloc[0]
    assert f"{lat['A'] * 1e6:.4g}" in text
    check_golden("compare.md", text.replace(str(FIX), "<fixtures>"))  # the same wherever the repo lives


def test_compare_refuses_different_datasets_unless_forced(tmp_path: Path) -> None:
    import json

    b = tmp_path / "fashion"
    shutil.copytree(FIX / "results_b", b)
    for f in (b / "runs").glob("*/*.json"):
        rec = json.loads(f.read_text())
        rec["dataset"], rec["data_fingerprint"] = "fashion_mnist", "0123456789abcdef"
        f.write_text(json.dumps(rec))
    quiet = Console(file=open(os.devnull, "w"))
    with pytest.raises(CompareError, match="not comparable: datasets differ: A digits .* B fashion_mnist"):
        compare(FIX / "results_a", b, console=quiet)
    out = tmp_path / "forced.md"
    compare(FIX / "results_a", b, console=quiet, out=str(out), force=True)
    assert "- datasets differ: A digits" in out.read_text()
    c = subprocess.run(
        [sys.executable, "-m", "bench.cli", "compare", str(FIX / "results_a"), str(b)], capture_output=True, text=True
    )
    assert c.returncode == 2 and "Pass --force" in c.stderr


def test_cli_report_and_compare(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command line in-process (bench.cli.main, what the ``bench`` script calls): exit codes and output."""
    from bench.cli import main

    folder = tmp_path / "a"
    shutil.copytree(FIX / "results_a", folder)
    assert main(["report", str(folder)]) == 0
    assert (folder / "report.md").is_file()
    monkeypatch.setenv("COLUMNS", "200")
    capsys.readouterr()
    assert main(["compare", str(FIX / "results_a"), str(FIX / "results_b")]) == 0
    assert "soft-p2" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "no runs/ folder" in capsys.readouterr().err


def test_report_content_follows_the_run_files(report_dir: Path) -> None:
    """Tables carry values recomputed here from the run records; the report names its figures' axes."""
    import pandas as pd

    from bench.results.store import ResultStore

    records = ResultStore(FIX / "results_a").latest_runs()
    base = [r for r in records if r.variant == "base"]
    costs = pd.read_csv(report_dir / "tables" / "exit_costs.csv")
    row = costs[(costs["variants"] == "base") & (costs["exit"] == "final")].iloc[0]
    assert row["MACs"] == base[0].cost.per_exit[-1].macs and row["FLOPs"] == 2 * row["MACs"]
    main = pd.read_csv(report_dir / "tables" / "main.csv").set_index("variant")
    acc = sum(r.at(0.6).accuracy for r in base) / len(base)
    assert main.loc["base", "accuracy"] == pytest.approx(acc)
    assert main.loc["base", "total_steps"] == base[0].training.total_steps
    md = (report_dir / "tables" / "main.md").read_text()
    assert f"{100 * acc:.2f} ±" in md


def test_figures_carry_axis_labels(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from bench.render import figures

    closed = []
    monkeypatch.setattr(figures.plt, "close", closed.append)
    res = load_results(FIX / "results_a")
    figures.threshold_curves(res, tmp_path)
    figures.accuracy_vs_cost(res, tmp_path)
    labels = [(ax.get_xlabel(), ax.get_ylabel()) for fig in closed for ax in fig.axes]
    assert ("threshold t (the evaluated values)", "cascade test accuracy (%)") in labels
    assert ("expected MACs per sample (M)", "cascade test accuracy (%)") in labels
    legend = [t.get_text() for fig in closed for t in (fig.legends[0].get_texts() if fig.legends else [])]
    assert set(res.variants) <= set(legend) and "Pareto front (all variants)" in legend
    monkeypatch.undo()
    for fig in closed:
        figures.plt.close(fig)


def test_figure_styles_are_unique_and_sizes_fit_a_journal(tmp_path: Path) -> None:
    import struct

    from bench.render import plotting

    pairs = [(plotting.style(i)["color"], plotting.style(i)["marker"]) for i in range(20)]
    assert len(set(pairs)) == 20  # issue 18: base and firm-p2[lambda=0.2] shared blue + circle
    assert all(plotting.style(i)["color"] != "#000000" for i in range(56))  # black is the Pareto front's
    assert len({(plotting.style(i)["color"], plotting.style(i)["marker"]) for i in range(56)}) == 56
    out = tmp_path / "rep"
    shutil.copytree(FIX / "results_a", out)
    write_report(out, log=lambda s: None)
    widths = {}
    for png in (out / "figures").glob("*.png"):
        w, _h = struct.unpack(">II", png.read_bytes()[16:24])
        widths[png.stem] = w / 200  # saved at 200 dpi
    assert widths["headline_bars"] == pytest.approx(7.0, abs=0.01)  # a page, was 2241 x 488 px
    assert widths["accuracy_vs_macs"] == pytest.approx(3.5, abs=0.01)  # one panel: a column
    assert set(widths.values()) <= {3.5, 7.0}, widths


def test_no_error_bars_at_one_seed_and_collapsed_variants_have_no_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import dataclasses

    from bench.render import figures, plotting

    res = load_results(FIX / "results_a")
    one = dataclasses.replace(res, records=[r for r in res.records if r.seed == 0])
    closed = []
    monkeypatch.setattr(figures.plt, "close", closed.append)
    figures.accuracy_vs_cost(one, tmp_path)
    figures.headline_bars(one, tmp_path)
    monkeypatch.undo()
    for fig in closed:
        for ax in fig.axes:
            for container in ax.containers:
                bars = getattr(container, "has_yerr", False) or getattr(container, "has_xerr", False)
                assert not bars, f"error bars drawn at n = 1 in {fig.texts or ax.get_title()}"
        figures.plt.close(fig)
    # a variant whose exit is never used at any threshold is drawn as points only
    rec = one.records_of("sum-p2")[0]
    frozen = [dataclasses.replace(t, early_share=0.0) for t in rec.thresholds]
    one.records[one.records.index(rec)] = dataclasses.replace(rec, thresholds=frozen)
    assert plotting.collapsed(one, "sum-p2") and not plotting.collapsed(one, "base")
    assert plotting._label(one, "sum-p2") == "sum-p2 (collapsed)"


def test_facets_by_loss_family_above_six_variants() -> None:
    import dataclasses

    from bench.render import plotting

    res = load_results(REPO / "results" / "mnist")
    assert len(res.variants) > plotting.FACET_ABOVE
    groups = plotting.facets(res)
    assert [title for title, _ in groups] == ["loss: sum", "loss: soft", "loss: firm"]
    assert all(vs[0] == "base" for _, vs in groups)  # the reference in every facet
    small = dataclasses.replace(res, records=[r for r in res.records if r.variant in ("base", "sum-p1")])
    assert plotting.facets(small) == [("", ["base", "sum-p1"])]


def test_report_names_its_data_and_has_no_negative_zero(tmp_path: Path) -> None:
    import json

    from bench.render.format import signed_zero_free

    assert signed_zero_free("-0.00") == "0.00" and signed_zero_free("-0.0 ± 0.1") == "0.0 ± 0.1"
    assert signed_zero_free("[-0.01, -0.00]") == "[-0.01, 0.00]" and signed_zero_free("-10.0") == "-10.0"
    out = tmp_path / "fashion"
    shutil.copytree(FIX / "results_a", out)
    for f in (out / "runs").glob("*/*.json"):  # a Fashion copy of a suite whose description still says MNIST
        rec = json.loads(f.read_text())
        rec["dataset"] = "fashion_mnist"
        rec["config"]["job"]["dataset"]["name"] = "fashion_mnist"
        f.write_text(json.dumps(rec))
    suite = (out / "suite.toml").read_text()
    (out / "suite.toml").write_text(
        suite.replace("tiny study CNN on digits, 3 seeds (test fixture)", "sum vs soft on MNIST")
    )
    text = write_report(out, log=lambda s: None).read_text()
    assert "- data: **fashion_mnist** (train 1,150 / val 288 / test 359; fingerprint c86b5be56d937f6b)" in text
    assert "the suite's description names mnist but the runs used fashion_mnist" in text
    assert "Suite description: sum vs soft on MNIST" in text
    assert " -0.0" not in text and "|-0.0" not in text
    costs = pd.read_csv(out / "tables" / "exit_costs.csv")
    assert costs["variants"].str.contains("firm-gated-p2").sum() == 2  # one architecture: p2 and final, once
    anytime = pd.read_csv(out / "tables" / "anytime.csv")
    sum_p2 = anytime[(anytime["variant"] == "sum-p2") & (anytime["exit"] == "p2")].iloc[0]
    recs = load_results(FIX / "results_a").records_of("sum-p2")
    assert sum_p2["test_accuracy"] == pytest.approx(sum(r.exits.test_accuracy[0] for r in recs) / len(recs))


def test_figures_a_paper_can_use(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A variant keeps its style across reports; thresholds are markers (no line poses as the trade-offs between
    them); epochs are integers; accuracy dots sit on an axis fitted to them; a folder without early exits draws no
    early-share figure."""
    import dataclasses

    from bench.render import figures, plotting

    a = plotting.stable_slots(["base", "sum", "soft"])
    b = plotting.stable_slots(["sum", "base", "mixed", "distill", "sdn"])  # the names first claim their colours
    assert a["sum"] == b["sum"] and a["base"] == b["base"]
    assert len({plotting.style(i)["color"] for i in a.values()}) == 3  # three variants, three colours
    closed = []
    monkeypatch.setattr(figures.plt, "close", closed.append)
    res = load_results(FIX / "results_a")
    figures.threshold_curves(res, tmp_path)
    figures.accuracy_per_epoch(res, tmp_path)
    figures.headline_bars(res, tmp_path)
    threshold_axes = [ax for fig in closed[:2] for ax in fig.axes if ax.get_xlabel().startswith("threshold")]
    assert threshold_axes and all(line.get_linestyle() == "None" for ax in threshold_axes for line in ax.get_lines())
    epoch_ax = closed[2].axes[0]
    assert all(float(t).is_integer() for t in epoch_ax.get_xticks())
    low, _ = closed[3].axes[0].get_ylim()
    assert low > 50  # accuracies of 90+ %: the axis is fitted, not drawn from 0
    base_only = dataclasses.replace(res, records=res.records_of("base"))
    closed.clear()
    assert [title for title, _ in figures.threshold_curves(base_only, tmp_path)] == [
        "Cascade accuracy against threshold"
    ]
    monkeypatch.undo()
    for fig in closed:
        figures.plt.close(fig)
