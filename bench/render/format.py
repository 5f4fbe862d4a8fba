"""Text formatting shared by every table: an interval, a p-value, a DataFrame as markdown, LaTeX or a rich
table, and each statistics table as strings for display.

Light on purpose (pandas and rich only): ``bench compare`` and ``bench check`` use it without matplotlib.
"""

from __future__ import annotations

import math
import re

import pandas as pd
from rich.markup import escape
from rich.table import Table

from bench.analyse.load import Results
from bench.analyse.tables import RATIO, Tables
from bench.results.metrics import MAIN_METRICS, METRICS, MetricKey


def latency_model_display(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for c in out.columns:
        if c.endswith("(µs)"):
            out[c] = out[c].map(lambda v: "" if math.isnan(v) else f"{v:.1f}")
        elif c.startswith("speedup") or c == RATIO:
            out[c] = out[c].map(lambda v: "" if math.isnan(v) else f"{v:.2f}")
    return out


def runtime_display(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for c in out.columns:
        if c.endswith("(µs)"):
            out[c] = out[c].map(lambda v: "" if pd.isna(v) else f"{v:.1f}")
        elif c.startswith("speedup") or c.endswith("÷ roofline"):
            out[c] = out[c].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    return out.fillna("")


def anytime_display(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "variant": frame["variant"],
            "exit": frame["exit"],
            "cost (% of base MACs)": [signed_zero_free(f"{100 * c:.1f}") for c in frame["cost_fraction"]],
            "n": frame["n"],
            "exit accuracy, all samples (%)": [
                fmt_interval(m, lo, hi, 100, 2, span=1.0)
                for m, lo, hi in zip(frame["test_accuracy"], frame["acc_low"], frame["acc_high"])
            ],
        }
    )


def signed_zero_free(text: str) -> str:
    """``-0.00`` -> ``0.00`` (a value that rounds to zero has no sign); other text unchanged."""
    return _NEG_ZERO.sub(r"\1", text)


_NEG_ZERO = re.compile(r"(?<![\d.])-(0(?:\.0+)?)(?![\d.])")


def fmt_interval(
    mean: float,
    low: float,
    high: float,
    scale: float = 1.0,
    digits: int = 2,
    *,
    span: float | None = None,
    brackets: bool = False,
) -> str:
    """The one interval format: ``mean ± half-width`` (or ``mean [low, high]`` with ``brackets``), values
    times ``scale`` at ``digits`` decimals; ``n/a`` without a mean, the mean alone without an interval
    (one seed). An interval wider than the metric's whole range ``span`` (raw units, e.g. 1 for a
    fraction) says "(n too small)" instead of printing a meaningless number."""
    if mean is None or math.isnan(mean):
        return "n/a"
    m = f"{mean * scale:.{digits}f}"
    if low is None or math.isnan(low):
        return signed_zero_free(m)
    if span is not None and (high - low) / 2 > span:
        return signed_zero_free(f"{m} (n too small)")
    if brackets:
        return signed_zero_free(f"{m} [{low * scale:.{digits}f}, {high * scale:.{digits}f}]")
    return signed_zero_free(f"{m} ± {(high - low) / 2 * scale:.{digits}f}")


def main_display(results: Results, tables: Tables) -> pd.DataFrame:
    """The main table as strings: 'mean ± CI half-width' per metric."""
    frame = tables.main
    cols: dict[str, list[str]] = {"variant": [], "loss": [], "exits": [], "n": []}
    shown = [METRICS[m] for m in MAIN_METRICS] + [
        MetricKey("latency", batch=b).metric_spec() for b in results.latency_batches()
    ]
    for _, row in frame.iterrows():
        cols["variant"].append(str(row["variant"]))
        cols["loss"].append(str(row["loss"]))
        cols["exits"].append(str(row["exits"]))
        cols["n"].append(str(row["n"]))
        for m in shown:
            label = m.label
            if m.name == "energy":
                label = f"energy ({results.energy_table()}, M {results.energy_unit()})"
            span = 1.0 if m.unit == "fraction" else None
            text = fmt_interval(row[m.name], row[f"{m.name}_low"], row[f"{m.name}_high"], m.scale, m.digits, span=span)
            if m.name == "accuracy" and row.get("accuracy_significant"):
                text += " *"
            cols.setdefault(label, []).append(text)
        cols.setdefault(METRICS["total_steps"].label, []).append(f"{row['total_steps']:.0f}")
    return pd.DataFrame(cols)


def comparison_display(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return pd.DataFrame(
            columns=["variant", "reference", "steps", "metric", "n", "Δ (points)", "95% CI", "p", "p (Holm)", "sig."]
        )
    out = pd.DataFrame(
        {
            "variant": frame["variant"],
            "reference": frame["reference"],
            "steps": frame["steps"],
            "metric": frame["metric"],
            "n": frame["n"],
            "Δ (points)": [signed_zero_free(f"{d:+.2f}").replace("+0.00", "0.00") for d in frame["diff"]],
            "95% CI": [
                "n/a" if math.isnan(lo) else signed_zero_free(f"[{lo:+.2f}, {hi:+.2f}]")
                for lo, hi in zip(frame["diff_low"], frame["diff_high"])
            ],
            "p": ["exact" if x else fmt_p(p) for p, x in zip(frame["p"], frame["exact"])],
            "p (Holm)": ["exact" if x else fmt_p(p) for p, x in zip(frame["p_holm"], frame["exact"])],
            "sig.": ["*" if s else "" for s in frame["significant"]],
        }
    )
    return out


def budget_display(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "variant": frame["variant"],
            f"budget ({frame['unit'].iloc[0]})": frame["budget"],
            "n": frame["n"],
            "test accuracy (%)": [
                fmt_interval(m, lo, hi, 100, 2, span=1.0)
                for m, lo, hi in zip(frame["test_accuracy"], frame["acc_low"], frame["acc_high"])
            ],
            "test cost (% of base MACs)": [
                fmt_interval(m, lo, hi, 100, 1)
                for m, lo, hi in zip(frame["test_cost_fraction"], frame["cost_low"], frame["cost_high"])
            ],
            "feasible": ["yes" if f else "no (cheapest point)" for f in frame["feasible"]],
        }
    )


def fmt_p(p: float) -> str:
    """The one p-value format: three decimals, ``<0.001`` below that, ``n/a`` without a test."""
    if p is None or math.isnan(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def markdown(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False) if not frame.empty else "_(none)_"


def latex(frame: pd.DataFrame, caption: str) -> str:
    if frame.empty:
        return ""
    return frame.to_latex(index=False, escape=True, caption=caption)


def rich_table(frame: pd.DataFrame, title: str) -> Table:
    table = Table(title=title, show_lines=False)
    for col in frame.columns:
        table.add_column(str(col), overflow="fold")
    for _, row in frame.iterrows():
        table.add_row(*[escape(str(v)) for v in row])  # variant names like "firm[lambda=0.2]" are not markup
    return table
