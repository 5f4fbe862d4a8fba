"""Claims files: a paper's claims as data (TOML), each read against its own comparator (docs/claims.md).

A claims file has one ``[page]`` table (the page's title and the guards' settings) and a ``[[claims]]`` entry per
claim: where it comes from, what it says, what is compared (a variant against another variant of the same folder,
paired by seed, or against a published number), the metric and where it is read (an exit, a threshold, cost levels,
a runtime and batch size), the claimed direction, and the conditions it needs (equal training steps, the paper's
training length). Files are read through the typed loader (:mod:`bench.results.typed`); an unknown key, metric or
value is a :class:`ClaimsError` that names the file and the claim id. The shipped files live beside this module
(``bench/verdicts/claims/<name>.toml``) and are addressed by name.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from bench.results.errors import StoreError
from bench.results.typed import TypedDataError, load_typed

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

#: The folder of the shipped claims files.
SHIPPED = Path(__file__).with_name("claims")


class ClaimsError(StoreError):
    """A claims file that cannot be read or used: names the file and, where it applies, the claim id."""


@dataclass(frozen=True)
class Source:
    """Where a claim was made."""

    paper: str  # authors and venue, e.g. "Wolczyk et al., NeurIPS 2021"
    where: str = ""  # the table, figure or section, e.g. "Table 1"


@dataclass(frozen=True)
class Claim:
    """One claim, as it is tested (docs/claims.md describes every key)."""

    id: str  # unique in the file; names the row in pages and gates
    statement: str  # the claim in words
    source: Source
    variant: str  # the variant the claim is about
    metric: str  # a metric of bench.verdicts.readings.READINGS
    against: str | None = None  # the comparator: another variant of the same folder, paired by seed
    target: float | None = None  # or a published number, in the metric's display unit
    tolerance: float = 0.0  # |ours - target| within this: agrees
    # what the claim says of the variant against its comparator ("equal": a construction row, the same exactly)
    direction: Literal["higher", "lower", "equal", "none"] = "higher"
    kind: Literal["claim", "descriptive", "construction"] = "claim"  # descriptive: shown, not tested
    comparator: str = ""  # what the comparator is, in words (printed with the row)
    exit: str | None = None  # an exit's name, or each | early | first | final (one row per exit named)
    threshold: float | None = None  # the operating point (default: the folder's headline threshold)
    against_threshold: float | None = None  # the comparator read at this threshold (against defaults to variant)
    cost: list[float] = field(default_factory=list)  # cost levels (fractions of the base network's MACs) or budgets
    runtime: str = "eager"  # latency and speedup: the runtime timed
    batch: int = 1  # latency and speedup: the batch size timed
    device: str = "cpu"  # latency and speedup: the device type the runs were timed on (cpu, cuda)
    reference: str | None = None  # speedup: the network timed against (default: the variant's own full network)
    transform: str | None = None  # budget_threshold: "entropy_nats" turns an entropy confidence into nats
    equal_steps: bool = True  # the comparison needs equal training steps (false: declared unequal, stated)
    paper_epochs: int | None = None  # the paper's training length; shorter runs are named in the verdict
    folders: list[str] = field(default_factory=list)  # only these results folders (by name); default: all given
    note: str = ""  # printed with the row


@dataclass(frozen=True)
class Page:
    """The page's title and the guards that make a verdict provisional or refuse it."""

    title: str
    intro: str = ""  # markdown under the title
    alpha: float = 0.05  # significance level of the Holm-corrected family of one folder's tested claims
    min_seeds: int = 5  # fewer paired seeds: the verdict is provisional
    max_last_epoch_rise: float = 0.25  # points: a compared exit that rose more in the last epoch is still learning
    budget_slack: float = 0.05  # a budget whose chosen points cost less than budget - slack does not bind
    variants: dict[str, str] = field(default_factory=dict)  # what each variant is (and where from), for the page


@dataclass(frozen=True)
class ClaimsFile:
    page: Page
    claims: list[Claim]
    path: str = ""


def resolve(name_or_path: str | Path) -> Path:
    """A claims file: a path, or the name of a shipped one (``study``, ``methods``, ``branchynet``, ``msdnet``)."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return path
    shipped = SHIPPED / f"{name_or_path}.toml"
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in SHIPPED.glob("*.toml"))
    raise ClaimsError(f"{name_or_path}: no such claims file, nor a shipped one ({', '.join(names)})")


def load_claims(name_or_path: str | Path, metrics: dict[str, Any]) -> ClaimsFile:
    """Read and check a claims file (see the module) against ``metrics`` (name -> reading,
    :data:`bench.verdicts.readings.READINGS`); :class:`ClaimsError` names the file and the claim."""
    path = resolve(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClaimsError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ClaimsError(f"{path}: not a readable TOML file ({e})") from None
    _no_unknown_keys(path, data)
    try:
        parsed = load_typed(ClaimsFile, {**data, "path": str(path)}, str(path))
    except TypedDataError as e:
        raise ClaimsError(_with_claim_id(str(e), data)) from None
    seen: set[str] = set()
    for claim in parsed.claims:
        if claim.id in seen:
            raise ClaimsError(f"{path}: claim {claim.id!r}: the id is used twice")
        seen.add(claim.id)
        check_claim(path, claim, metrics)
    return parsed


def _with_claim_id(message: str, data: dict[str, Any]) -> str:
    """``claims[3].metric: ...`` -> ``claims[3] (id 'x').metric: ...``, so that the user finds the claim."""
    for i, claim in enumerate(data.get("claims") or []):
        tag = f"claims[{i}]"
        if tag in message and isinstance(claim, dict):
            return message.replace(tag, f"{tag} (id {claim.get('id')!r})", 1)
    return message


def _no_unknown_keys(path: Path, data: dict[str, Any]) -> None:
    tables: list[tuple[str, Any, type]] = [("page", data.get("page"), Page)]
    claims = [c for c in data.get("claims") or [] if isinstance(c, dict)]
    tables += [(f"claims[{i}] (id {c.get('id')!r})", c, Claim) for i, c in enumerate(claims)]
    tables += [(f"{where}.source", t.get("source"), Source) for where, t, cls in tables[1:]]
    unknown = sorted(set(data) - {"page", "claims"})
    if unknown:
        raise ClaimsError(f"{path}: {unknown[0]}: unknown table; a claims file holds [page] and [[claims]]")
    for where, table, cls in tables:
        if not isinstance(table, dict):
            continue
        allowed = [f.name for f in fields(cls)]
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ClaimsError(f"{path}: {where}.{key}: unknown key{hint}; allowed: {', '.join(allowed)}")


def check_claim(path: Path, claim: Claim, metrics: dict[str, Any]) -> None:
    """What one claim must say: a known metric (``metrics``: name -> its reading, which checks its own keys), a
    comparator, a direction, values in range."""
    where = f"{path}: claim {claim.id!r}"
    if claim.metric not in metrics:
        close = difflib.get_close_matches(claim.metric, list(metrics), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ClaimsError(f"{where}: metric {claim.metric!r} is unknown{hint}; metrics: {', '.join(metrics)}")
    if claim.kind == "claim" and (claim.against is None) == (claim.target is None):
        raise ClaimsError(f"{where}: give either against (a variant) or target (a published number)")
    if claim.kind == "claim" and claim.against is not None and claim.direction == "none":
        raise ClaimsError(
            f"{where}: a tested claim against a variant states its direction (higher or lower); a row without one "
            "is kind = 'descriptive'"
        )
    for key in ("threshold", "against_threshold"):
        value = getattr(claim, key)
        if value is not None and not 0 <= value <= 1:
            raise ClaimsError(f"{where}: {key} {value} is out of range; allowed: [0, 1]")
    if claim.tolerance < 0 or claim.batch < 1:
        raise ClaimsError(f"{where}: tolerance must be >= 0 and batch >= 1")
    if claim.against_threshold is not None and (claim.against is None or claim.threshold is None):
        raise ClaimsError(
            f"{where}: against_threshold needs threshold and against (the variant itself, read at another threshold)"
        )
    problem = metrics[claim.metric].check(claim)
    if problem:
        raise ClaimsError(f"{where}: {problem}")
