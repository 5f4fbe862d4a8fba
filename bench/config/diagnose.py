"""Every mistake of a suite in one pass (``bench validate``), each once, at the key where it was made.

Validation (:func:`bench.config.validate.parse_suite`) stops at the first error. To find the others, the key an
error names is taken out of the suite (its default applies) and validation runs again, until the suite validates.
Taking a key out can cause errors of its own that are not the user's mistakes: an emptied list ("is empty"), a
name of a variant taken out with its duplicate, options of a model whose name was misspelt. Those are follow-ons
and are not reported:

* an error at a key that already had one, or inside it, is a follow-on;
* a misspelt ``model`` or ``dataset`` makes every check that depends on it a follow-on (the model's options, each
  variant's exits and model options; the dataset decides the model's input); a variant's misspelt ``loss`` or
  ``policy`` makes its options follow-ons;
* a list whose wrong items were taken out is not "empty" by the user's mistake.

Keys keep the indices the user wrote: when an item of a list (a threshold, a variant) is taken out, the items
after it are still reported under their own index.
"""

from __future__ import annotations

import copy
import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config.load import read_suite_data
from bench.config.suite import SuiteError
from bench.config.validate import parse_suite

#: ``variants[3] (name) with {...}`` at the start of a key: the variant's index, then the rest.
_VARIANT = re.compile(r"^variants\[(\d+)\](?: \([^)]*\))?(?: with \{.*?\})?")
#: A key's last part when it is a list item: ``evaluation.thresholds[2]`` -> (``evaluation.thresholds``, 2).
_ITEM = re.compile(r"^(.*)\[(\d+)\]$")

#: What a wrong key makes into follow-ons besides itself (patterns over normalised keys; {v} is the variant).
_DEPENDENTS = {
    "model.name": ("model", "model.*", "variants[*].exits*", "variants[*].model_options*"),
    "model": ("model.*", "variants[*].exits*", "variants[*].model_options*"),
    "dataset.name": ("dataset", "dataset.*", "model", "model.*", "variants[*].exits*"),
    "dataset": ("dataset.*", "model", "model.*", "variants[*].exits*"),
    "{v}.loss": ("{v}.loss_options*", "{v}.exits", "{v}.pretrain"),
    "{v}.policy": ("{v}.policy_options*",),
}


def normalise(key: str) -> str:
    """``variants[3] (sum) with {...}.exits[0]`` -> ``variants[3].exits[0]``: one spelling per key."""
    m = _VARIANT.match(key)
    return f"variants[{m.group(1)}]{key[m.end() :]}" if m else key


@dataclass
class _Ledger:
    """The errors found so far: which keys are wrong (and what depends on them), and which list items are gone."""

    wrong: list[str] = field(default_factory=list)  # normalised keys whose errors, and errors inside, are follow-ons
    exact: list[str] = field(default_factory=list)  # keys whose own errors (not those inside them) are follow-ons
    dependents: list[str] = field(default_factory=list)  # fnmatch patterns of keys that depend on a wrong one
    alive: dict[str, list[int]] = field(default_factory=dict)  # list key -> original indices still present

    def original(self, key: str) -> str:
        """``key`` with every list index as the user wrote it (items taken out before it counted back in)."""
        head, scope, rest = "", "", key
        m = _VARIANT.match(key)
        if m:
            i = self._index("variants", int(m.group(1)))
            scope = f"variants[{i}]"
            head = scope + m.group(0)[len(f"variants[{m.group(1)}]") :]  # keeps " (name) with {...}"
            rest = key[m.end() :].lstrip(".")
        parts = rest.split(".") if rest else []
        for n, part in enumerate(parts):
            item = _ITEM.match(part)
            if item:
                list_key = ".".join([*([scope] if scope else []), *parts[:n], item.group(1)])
                parts[n] = f"{item.group(1)}[{self._index(list_key, int(item.group(2)))}]"
        return ".".join([*([head] if head else []), *parts])

    def _index(self, list_key: str, i: int) -> int:
        alive = self.alive.get(list_key)
        return alive[i] if alive is not None and i < len(alive) else i

    def follows(self, error: SuiteError) -> bool:
        key = normalise(error.key)
        if any(key == k or key.startswith((f"{k}.", f"{k}[")) for k in self.wrong):
            return True
        return key in self.exact or any(fnmatch.fnmatchcase(key, pattern) for pattern in self.dependents)

    def note(self, error: SuiteError) -> None:
        """Make ``error``'s key, and what depends on it, follow-ons from now on."""
        key = normalise(error.key)
        self.wrong.append(key)
        item = _ITEM.match(key)
        if item:  # "is empty" once its wrong items are gone
            self.exact.append(item.group(1))
        m = re.match(r"^(variants\[\d+\])(\..*)?$", key)
        template = f"{{v}}{m.group(2) or ''}" if m else key
        for dep in _DEPENDENTS.get(template, ()):
            pattern = dep.replace("{v}", m.group(1) if m else "")
            self.dependents.append(pattern.replace("[", "[[]"))

    def remove(self, data: dict[str, Any], key: str) -> bool:
        """Delete what ``key`` names from ``data`` (a whole table for a misspelt model or dataset name; a
        variant's options with its misspelt loss or policy); False when it names nothing that can be deleted."""
        norm = normalise(key)
        if norm in ("model.name", "dataset.name", "model", "dataset"):
            table = norm.split(".")[0]
            return data.pop(table, None) is not None or _remove_key(data, key, self)
        m = re.match(r"^variants\[(\d+)\]\.(loss|policy)$", norm)
        if m and isinstance(data.get("variants"), list) and int(m.group(1)) < len(data["variants"]):
            variant = data["variants"][int(m.group(1))]
            if isinstance(variant, dict):
                variant.pop(f"{m.group(2)}_options", None)
        if _remove_key(data, key, self):
            return True
        whole = _VARIANT.match(key)  # a key that cannot go alone (a name): its whole variant, or its whole table
        if whole:
            return _remove_key(data, whole.group(0), self)
        return data.pop(norm.split(".")[0].split("[")[0], None) is not None


def suite_errors(
    path: str | Path, overrides: Sequence[str] = (), imports: Sequence[str] = (), *, limit: int = 50
) -> list[SuiteError]:
    """Every independent error of a suite, each once, at the key where it was made (see the module); an empty
    list: the suite is valid."""
    path = Path(path)
    try:
        data = read_suite_data(path, overrides, imports)
    except SuiteError as e:
        return [e]
    errors: list[SuiteError] = []
    ledger = _Ledger()
    for _ in range(20 * limit):  # each round takes one key out
        try:
            parse_suite(copy.deepcopy(data), file=path)
            return errors
        except SuiteError as e:
            found = SuiteError(e.file, ledger.original(e.key), e.message) if e.key else e
            if not ledger.follows(found):
                errors.append(found)
            ledger.note(found)
            if len(errors) >= limit or not e.key or not ledger.remove(data, e.key):
                return errors
    return errors


def _remove_key(data: dict[str, Any], key: str, ledger: _Ledger) -> bool:
    """Delete the entry a :class:`SuiteError` key names (``train.lr``, ``variants[1] (x).sweep.a.b``,
    ``evaluation.thresholds[2]``), noting taken-out list items in ``ledger``; False when it names nothing."""
    node: Any = data
    scope: list[str] = []  # the path walked so far, variant indices as the user wrote them
    m = _VARIANT.match(key)
    if m:
        variants = data.get("variants")
        i = int(m.group(1))
        if not isinstance(variants, list) or i >= len(variants):
            return False
        key = key[m.end() :].lstrip(".")
        if not key:
            _drop_item(variants, i, "variants", ledger)
            return True
        node, scope = variants[i], [f"variants[{ledger._index('variants', i)}]"]
    parts = key.split(".") if key else []
    while parts and isinstance(node, dict):
        for j in range(len(parts), 0, -1):  # dotted keys inside a table ("loss_options.lambda" in a sweep)
            name = ".".join(parts[:j])
            idx = _ITEM.match(name)
            if idx and isinstance(node.get(idx.group(1)), list) and int(idx.group(2)) < len(node[idx.group(1)]):
                if j == len(parts):
                    _drop_item(node[idx.group(1)], int(idx.group(2)), ".".join([*scope, idx.group(1)]), ledger)
                    return True
                node, parts = node[idx.group(1)][int(idx.group(2))], parts[j:]
                scope.append(name)
                break
            if name in node:
                if j == len(parts):
                    del node[name]
                    return True
                node, parts = node[name], parts[j:]
                scope.append(name)
                break
        else:
            return False
    return False


def _drop_item(items: list[Any], i: int, list_key: str, ledger: _Ledger) -> None:
    """Delete ``items[i]`` and remember which original index it had."""
    alive = ledger.alive.setdefault(list_key, list(range(len(items))))
    del items[i]
    del alive[i]
