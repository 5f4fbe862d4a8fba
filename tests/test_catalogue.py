"""``bench names`` lists every registered name with its description and options, and the READMEs' lists of names
are the registries' (checked here, so a new loss or policy cannot be left out of them again)."""

from __future__ import annotations

import re

import pytest

from bench.cli import main
from bench.config.catalogue import KINDS, catalogue, first_line
from bench.config.engines import EXECUTORS, RUNTIMES
from cascade import DATASETS, HEADS, LOSSES, MODELS, POLICIES

from .conftest import REPO

REGISTRIES = {
    "loss": LOSSES,
    "policy": POLICIES,
    "model": MODELS,
    "head": HEADS,
    "dataset": DATASETS,
    "runtime": RUNTIMES,
    "executor": EXECUTORS,
}


def test_every_registered_name_is_listed_with_a_description() -> None:
    entries = catalogue()
    for kind in KINDS:
        listed = [e.name for e in entries if e.kind == kind]
        assert set(REGISTRIES[kind].names()) <= set(listed), kind
    assert all(e.description for e in entries), [e.name for e in entries if not e.description]
    options = {(e.kind, e.name): e.options for e in entries}
    assert options[("loss", "firm")][:2] == ("alpha=128.0", "lambda=0.6")  # TOML spelling, not the field's
    assert "temperatures" not in " ".join(options[("policy", "max-prob")])  # the harness fits those
    assert options[("head", "mlp")] == ("hidden=256",)
    assert options[("executor", "local")] == ("jobs=1",)


def test_bench_names_prints_one_kind(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["names", "policy"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in POLICIES.names()) and "study_cnn" not in out


def test_first_line_is_the_first_sentence() -> None:
    def documented() -> None:
        """One sentence. Another one."""

    assert first_line(documented) == "One sentence."
    assert first_line(documented, limit=8) == "One…"


def _listed(text: str, pattern: str) -> set[str]:
    """The names in the first match of ``pattern``'s group: backticked, or separated by '|'."""
    match = re.search(pattern, text, re.S)
    assert match, pattern
    found = re.findall(r"`([^`]+)`", match.group(1)) or [n.strip() for n in match.group(1).split("|")]
    return set(found)


@pytest.mark.parametrize(
    ("doc", "kind", "pattern"),
    [
        ("README.md", "loss", r"Losses \((.*?)\), exit policies"),
        ("README.md", "policy", r"exit policies \((.*?)\), models"),
        ("suites/README.md", "loss", r'\nloss = "firm" +# ([^\n]*)\n'),
        ("suites/README.md", "policy", r'\npolicy = "max-prob" +# ([^\n]*)\n'),
        ("suites/README.md", "dataset", r'\[dataset\]\nname = "mnist" +# ([^\n]*)\n'),
        ("suites/README.md", "head", r"head = \.\.\.: ([^(\n]*) \(exit heads\)"),
    ],
)
def test_the_readmes_list_every_registered_name(doc: str, kind: str, pattern: str) -> None:
    assert _listed((REPO / doc).read_text(), pattern) == set(REGISTRIES[kind].names())


def test_the_suite_format_lists_every_model_and_runtime() -> None:
    text = (REPO / "suites/README.md").read_text()
    models = _listed(text, r'\[model\]\nname = "study_cnn" +# ([^\n]*)\n')
    assert models == {*MODELS.names(), "torchvision:<name>"}
    runtimes = re.search(r"runtimes = \[\"eager\"\] +# eager first, then any of: ([^(\n]*)", text)
    assert runtimes and {"eager", *runtimes.group(1).replace(",", " ").split()} == set(RUNTIMES.names())
