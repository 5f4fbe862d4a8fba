"""The study-claims table: verdict rules and a run on the committed fixtures."""

from __future__ import annotations

from bench.report import load_results
from bench.study import Claim, _verdicts, claims_for, render

from .conftest import REPO


def claim(claim: str, comparison: str, metric: str, diff: float, p_holm: float) -> Claim:
    return Claim("d", claim, comparison, metric, diff, diff - 1, diff + 1, 3, p_holm, p_holm)


def test_tradeoff_verdicts() -> None:
    rows = [
        claim("1 trade-off", "a vs b", "accuracy", +2.0, 0.01),  # better accuracy
        claim("1 trade-off", "a vs b", "early_share", -1.0, 0.40),  # early not significantly lower
        claim("1 trade-off", "c vs d", "accuracy", -3.0, 0.01),  # worse accuracy
        claim("1 trade-off", "c vs d", "early_share", +1.0, 0.50),
        claim("1 trade-off", "e vs f", "accuracy", +2.0, 0.01),  # mixed: better accuracy, fewer early exits
        claim("1 trade-off", "e vs f", "early_share", -9.0, 0.01),
        claim("2 p2 beats p1", "x", "accuracy", +1.0, 0.2),
        claim("3 early falls with t", "y", "early_share", +30.0, 0.001),
        claim("4 early rises with lambda", "z", "early_share", -5.0, 0.01),
    ]
    _verdicts(rows)
    assert [r.verdict for r in rows] == [
        "confirmed", "confirmed", "refuted", "refuted", "not significant (or mixed)", "not significant (or mixed)",
        "not significant", "confirmed", "refuted",
    ]  # fmt: skip


def test_claims_on_fixture_results() -> None:
    res = load_results(REPO / "tests" / "fixtures" / "results_a")
    claims = claims_for(res, "fixture")
    kinds = {c.claim for c in claims}
    assert {"1 trade-off", "3 early falls with t", "4 early rises with lambda"} <= kinds
    early = [c for c in claims if c.claim.startswith("3")]
    assert all(c.diff >= 0 for c in early)  # early exits can only fall as t rises (max-prob)
    text = render([REPO / "tests" / "fixtures" / "results_a"])
    assert "## Claims" in text and "## Cost view at t = 0.6" in text and "firm-gated-p2" in text
