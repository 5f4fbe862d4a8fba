"""The claims engine: a claims file (:mod:`bench.verdicts.claimsfile`) tested on results folders.

    bench claims CLAIMS.toml RESULTS_DIR... [--out FILE.md]

For each folder and each claim (each of its points: an exit, a cost level), the metric is read per seed
(:mod:`bench.verdicts.readings`) and compared with the claim's comparator:

* **against a variant**: paired by seed, the difference variant - comparator, its 95 % t-interval, a two-sided
  paired t-test; the p-values of a folder's tested rows are Holm-corrected together (descriptive rows,
  published-number rows and refused rows stay out of the family). *agrees* when the corrected test is significant
  in the claimed direction, *disagrees* when it is significant the other way, *not significant* otherwise, with the
  smallest effect this n could detect at 80 % power (two-sided, at the page's alpha, from the differences' spread);
* **against a published number** (``target``): the variant's mean and 95 % t-interval; *agrees* when the mean is
  within ``tolerance`` of the number, *disagrees* when the interval excludes the number and the mean is beyond the
  tolerance, *not significant* (the interval cannot tell) otherwise.

The guards (:mod:`bench.verdicts.guards`) refuse a row (*untestable*, with the reason) or make it provisional (the
caveats, with their numbers, beside the verdict). Rows are data (:class:`Row`); :mod:`bench.verdicts.page` renders
them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from scipy import optimize
from scipy import stats as st

from bench.analyse import stats
from bench.analyse.load import Results, load_results
from bench.config.plugins import NO_TRUST, FolderTrust
from bench.results.record import RunRecord
from bench.verdicts import guards
from bench.verdicts.claimsfile import Claim, ClaimsError, ClaimsFile, load_claims
from bench.verdicts.readings import EXIT_WORDS, READINGS, Point, Reading

POWER = 0.8  # the power at which the detectable effect of a "not significant" row is stated


def read_claims(name_or_path: str | Path) -> ClaimsFile:
    """A claims file, checked against the engine's metrics (a shipped name or a path)."""
    return load_claims(name_or_path, READINGS)


@dataclass
class Row:
    """One tested (or described, or refused) point of one claim in one folder."""

    claim: Claim
    folder: str
    point: Point
    metric: str  # the metric as read, in words
    unit: str  # display unit of values and effects ("points" for percentages)
    compared: str  # what the variant was compared against, in words
    steps: str = ""  # training steps per seed of both sides
    estimate: stats.Interval | None = None  # the difference (display units), or the variant's own value (target)
    p: float = math.nan
    p_holm: float = math.nan
    n: int = 0
    verdict: str = ""  # agrees | disagrees | not significant | untestable | described | by construction
    detail: str = ""  # the refusal's reason, or the detectable effect of a non-significant row
    provisional: list[str] = field(default_factory=list)  # caveats of a verdict that stands
    notes: list[str] = field(default_factory=list)  # how values were read (exact curve, between thresholds, ...)
    tested: bool = False  # in the folder's Holm family
    exact: bool = False  # every seed's difference is the same: no t-test (the sign decides)
    sd: float = math.nan  # spread of the paired differences (display units), for the detectable effect

    @property
    def key(self) -> str:
        """The row's name in gates: ``claim-id`` or ``claim-id[point]``."""
        return f"{self.claim.id}[{self.point.label}]" if self.point.label else self.claim.id


@dataclass
class Table:
    """A claims file on one folder: its rows and the folder's settings."""

    folder: Path
    results: Results
    rows: list[Row]


def evaluate(
    claims: ClaimsFile, folders: list[Path], trust: FolderTrust = NO_TRUST, *, strict: bool = True
) -> list[Table]:
    """Every claim of ``claims`` on every folder (see the module). ``strict``: a variant or exit that no folder has
    is a named error (a typo in the claims file); otherwise its rows are untestable (a shipped file on some of its
    folders)."""
    return evaluate_loaded(claims, [(Path(f), load_results(f, trust)) for f in folders], strict=strict)


def evaluate_loaded(claims: ClaimsFile, loaded: list[tuple[Path, Results]], *, strict: bool = True) -> list[Table]:
    """:func:`evaluate` on folders already loaded (or results made by hand: the engine's tests)."""
    if strict:
        _check_names(claims, loaded)
    tables = []
    for folder, results in loaded:
        rows = [row for claim in claims.claims if _applies(claim, folder) for row in _rows(claims, claim, results)]
        _holm_and_verdicts(claims, rows)
        tables.append(Table(folder, results, rows))
    return tables


def _applies(claim: Claim, folder: Path) -> bool:
    return not claim.folders or folder.name in claim.folders


def _check_names(claims: ClaimsFile, loaded: list[tuple[Path, Results]]) -> None:
    """A variant, comparator or reference no folder holds, or an exit no run of it has, is a named error."""
    for claim in claims.claims:
        chosen = [r for f, r in loaded if _applies(claim, f)]
        for key in ("variant", "against", "reference"):
            name = getattr(claim, key)
            if name is not None and chosen and not any(name in r.variants for r in chosen):
                known = sorted({v for r in chosen for v in r.variants})
                raise ClaimsError(
                    f"{claims.path}: claim {claim.id!r}: {key} {name!r} has no runs in "
                    f"{', '.join(str(f) for f, _ in loaded)}; variants: {', '.join(known)}"
                )
        if claim.exit is not None and claim.exit not in EXIT_WORDS:
            runs = [rec for r in chosen for rec in r.records_of(claim.variant)]
            if runs and not any(rec.exits and claim.exit in rec.exits.names for rec in runs):
                names = sorted({n for rec in runs if rec.exits for n in rec.exits.names})
                raise ClaimsError(
                    f"{claims.path}: claim {claim.id!r}: exit {claim.exit!r} is not an exit of "
                    f"{claim.variant}; its exits: {', '.join(names)} (or one of "
                    f"{', '.join(EXIT_WORDS)})"
                )


def _rows(claims: ClaimsFile, claim: Claim, results: Results) -> list[Row]:
    reading = READINGS[claim.metric]
    mine = results.records_of(claim.variant)
    compared = _compared(claim)
    if not mine:
        point = Point()
        return [_refused(claim, results, point, reading, compared, f"no runs of {claim.variant} in this folder")]
    points = reading.points(claim, mine[0])
    if not points:
        return [_refused(claim, results, Point(), reading, compared, f"{claim.variant} has no exit {claim.exit!r}")]
    return [_row(claims, claim, results, point, reading, compared) for point in points]


def _compared(claim: Claim) -> str:
    if claim.against_threshold is not None:
        return f"{claim.variant} at t = {claim.threshold:g} vs {claim.against} at t = {claim.against_threshold:g}"
    if claim.against is not None:
        what = f" ({claim.comparator})" if claim.comparator else ""
        return f"{claim.variant} vs {claim.against}{what}"
    if claim.target is not None:
        return f"{claim.variant} vs the published {claim.target:g}" + (
            f" ± {claim.tolerance:g}" if claim.tolerance else ""
        )
    return claim.variant


def _refused(claim: Claim, results: Results, point: Point, reading: Reading, compared: str, why: str) -> Row:
    return Row(
        claim,
        results.out_dir.name,
        point,
        reading.label(claim, point, results.headline),
        _unit(reading),
        compared,
        verdict="untestable",
        detail=why,
    )


def _unit(reading: Reading) -> str:
    return "points" if reading.unit == "%" else reading.unit


def _row(claims: ClaimsFile, claim: Claim, results: Results, point: Point, reading: Reading, compared: str) -> Row:
    """One point of one claim in one folder: the values per seed, the guards, the estimate (not yet the verdict)."""
    row = _refused(claim, results, point, reading, compared, "")
    mine = results.records_of(claim.variant)
    theirs = results.records_of(claim.against) if claim.against else []
    if claim.against and not theirs:
        row.detail = f"no runs of {claim.against} in this folder"
        return row
    a, notes_a, why_a = _values(reading, mine, claim, point, results)
    other = claim if claim.against_threshold is None else dataclasses.replace(claim, threshold=claim.against_threshold)
    b, notes_b, why_b = _values(reading, theirs, other, point, results) if claim.against else ({}, [], "")
    row.notes = sorted(set(notes_a) | set(notes_b))
    row.steps = f"{guards.steps(mine):,}" + (f" vs {guards.steps(theirs):,}" if theirs else "")
    refusal = why_a or why_b or _refusal(claims, claim, reading, point, mine, theirs)
    if refusal:
        row.detail = refusal
        return row
    _estimate(row, reading, a, b, claim)
    if row.n < 2 and claim.kind == "claim":
        row.verdict, row.detail = "untestable", f"n = {row.n}: fewer than two paired seeds"
        return row
    exits = {claim.variant: (mine, reading.exits(mine[0], point))}
    if theirs:
        exits[claim.against or ""] = (theirs, reading.exits(theirs[0], point))
    timed = guards.noisy_timing(claim, [*mine, *theirs]) if reading.timed else ""
    notes = (
        guards.few_seeds(claims.page, row.n),
        guards.still_rising(claims.page, exits),
        guards.short_training(claims.page, claim, mine, guards.full_length(results.out_dir)),
        timed,
    )
    row.provisional = [note for note in notes if note]
    row.verdict = ""
    return row


def _values(
    reading: Reading, records: list[RunRecord], claim: Claim, point: Point, results: Results
) -> tuple[dict[int, float], list[str], str]:
    """{seed: display value}, how they were read, and why a run could not be read ("" when all could)."""
    out, notes = {}, []
    for record in records:
        value = reading.value(record, claim, point, results)
        if value.x is None:
            return {}, [], value.why
        out[record.seed] = value.x * reading.scale
        if value.why:
            notes.append(value.why)
    return out, notes, ""


def _refusal(
    claims: ClaimsFile, claim: Claim, reading: Reading, point: Point, mine: list[RunRecord], theirs: list[RunRecord]
) -> str:
    """The first guard that refuses the row ("" when none does)."""
    for records in (mine, theirs):
        if records and claim.kind == "claim":
            chance = guards.at_chance_exit(records, reading.exits(records[0], point))
            if chance:
                return chance
    if theirs and claim.kind == "claim":
        unequal = guards.unequal_steps(claim, mine, theirs)
        if unequal:
            return unequal
    if claim.metric in ("budget_accuracy", "budget_exit_share") and claim.kind == "claim":
        return guards.budget_binds(claims.page, mine, point.cost) or guards.budget_binds(
            claims.page, theirs, point.cost
        )
    return ""


def _estimate(row: Row, reading: Reading, a: dict[int, float], b: dict[int, float], claim: Claim) -> None:
    """The paired difference and its test, or the variant's own interval (target and descriptive rows)."""
    if claim.against is not None:
        test = stats.paired_test(a, b)
        row.estimate, row.n, row.p = test.diff, test.n, test.p_value
        row.sd = test.diff.std
        row.exact = test.note.startswith("exact")
        row.tested = claim.kind == "claim" and not row.exact
    else:
        row.estimate = stats.t_interval(list(a.values()))
        row.n = row.estimate.n


def _holm_and_verdicts(claims: ClaimsFile, rows: list[Row]) -> None:
    family = [r for r in rows if r.tested and r.verdict != "untestable" and not math.isnan(r.p)]
    for row, p in zip(family, stats.holm([r.p for r in family])):
        row.p_holm = p
    for row in rows:
        if row.verdict != "untestable":
            row.verdict, detail = _verdict(claims, row)
            row.detail = row.detail or detail


def _verdict(claims: ClaimsFile, row: Row) -> tuple[str, str]:
    claim, est = row.claim, row.estimate
    assert est is not None
    if claim.kind == "descriptive":
        return "described", ""
    if claim.kind == "construction":
        equal = abs(est.mean) < 1e-12 and (math.isnan(est.std) or est.std < 1e-12)
        holds = {"higher": est.mean >= 0, "lower": est.mean <= 0, "equal": equal}
        return ("by construction" if holds.get(claim.direction, True) else "violated (a bug)"), ""
    if claim.target is not None:
        return _target_verdict(claim, est)
    sign = 1 if claim.direction == "higher" else -1
    if row.exact:  # no spread: the sign decides
        if est.mean * sign > 0:
            return "agrees", "every seed's difference is the same"
        return "disagrees", "every seed's difference is the same" if est.mean else "exactly equal"
    if row.p_holm < claims.page.alpha:
        return ("agrees" if est.mean * sign > 0 else "disagrees"), ""
    mde = detectable_effect(row.sd, row.n, claims.page.alpha)
    return "not significant", f"n = {row.n} detects {mde:.2f} {row.unit} at {POWER:.0%} power"


def _target_verdict(claim: Claim, est: stats.Interval) -> tuple[str, str]:
    assert claim.target is not None
    off = est.mean - claim.target
    if abs(off) <= claim.tolerance:
        return "agrees", f"within ± {claim.tolerance:g} of the published {claim.target:g}"
    if math.isnan(est.low) or est.low <= claim.target <= est.high:
        return "not significant", f"the 95 % interval holds the published {claim.target:g}"
    return "disagrees", f"{off:+.3g} from the published {claim.target:g}, outside the 95 % interval"


def detectable_effect(sd: float, n: int, alpha: float, power: float = POWER) -> float:
    """The smallest mean paired difference a two-sided paired t-test at ``alpha`` detects with ``power``, for
    differences of standard deviation ``sd`` over ``n`` seeds (noncentral t; NaN for n < 2)."""
    if n < 2 or math.isnan(sd):
        return math.nan
    if sd == 0:
        return 0.0
    df = n - 1
    crit = st.t.ppf(1 - alpha / 2, df)

    def shortfall(delta: float) -> float:
        nc = delta * math.sqrt(n) / sd
        lower = float(st.nct.cdf(-crit, df, nc))  # NaN far in the tail, where it is 0
        return float(st.nct.sf(crit, df, nc)) + (0.0 if math.isnan(lower) else lower) - power

    return float(optimize.brentq(shortfall, 0.0, 2 * (crit + 3) * sd / math.sqrt(n)))  # power ~1 at the top
