"""The ``[[variants]]`` of a suite: each variant's names, options and exits checked, every point of its sweep
checked as the run it becomes, and its training overrides validated as ``[train]`` is."""

from __future__ import annotations

import dataclasses
import itertools
import typing
from collections.abc import Mapping
from typing import Any, cast

from bench.config.coerce import build_table, check_name, check_range, coerce, unknown_key
from bench.config.modelcheck import check_model as _check_model
from bench.config.suite import ModelSpec, SuiteError, TrainSpec, VariantSpec
from bench.results.store import safe_name
from cascade._registry import UnknownNameError
from cascade.exits import POLICIES
from cascade.losses import LOSSES, build_loss, loss_option_names
from cascade.models import MODELS
from cascade.training import ConfigError, TrainConfig


def validate_train_overrides(file: Any, key: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(TrainSpec)
    out = {}
    names = train_keys()
    for k, v in overrides.items():
        if k not in names:
            raise unknown_key(file, f"{key}.{k}", k, names)
        out[k] = coerce(v, hints[k], file, f"{key}.{k}")
    check_train(file, key, out)
    return out


def train_keys() -> list[str]:
    return [*TrainConfig.run_fields(), "equal_budget"]


def check_train(file: Any, key: str, values: Mapping[str, Any]) -> TrainSpec:
    """Build a :class:`TrainSpec` from coerced values; the trainer's own checks name the key."""
    try:
        return TrainSpec(**values)
    except ConfigError as e:
        raise SuiteError(file, f"{key}.{e.field}", e.message) from None


def check_frozen_backbone(file: Any, where: str, v: VariantSpec, train: TrainSpec, model: ModelSpec) -> None:
    """freeze_backbone trains only exit heads, so it needs exits and a pre-trained backbone."""
    if not v.train.get("freeze_backbone", train.freeze_backbone):
        return
    key = f"{where}.train.freeze_backbone" if "freeze_backbone" in v.train else "train.freeze_backbone"
    if not v.exits:
        raise SuiteError(
            file,
            key,
            f"variant {v.name!r} has no intermediate exits, so nothing would train; "
            "set freeze_backbone in the [variants.train] of the variants with exits instead",
        )
    if v.resolved_pretrain == "none" and not model.options.get("weights"):
        raise SuiteError(
            file,
            key,
            f"variant {v.name!r} would freeze a randomly initialised backbone; give it "
            "pretrain = 'base' (or 'sum'), or a model with pre-trained weights "
            "(model.options.weights)",
        )


def _check_option_types(file: Any, key: str, cls: Any, options: Mapping[str, Any]) -> None:
    """Each option's value has the type its dataclass field declares (a string is not a bool); checked only: the
    values enter run keys as written, so an integer given for a number keeps its key."""
    hints = typing.get_type_hints(cls)
    aliases = getattr(cls, "aliases", {})
    for opt, value in options.items():
        name = aliases.get(opt, opt)
        if name in hints:
            coerce(value, hints[name], file, f"{key}.{opt}")


def _check_variant(file: Any, key: str, v: VariantSpec, suite_model: ModelSpec, model_args: dict[str, Any]) -> None:
    if not v.name or v.name.startswith(".") or safe_name(v.name) != v.name:
        raise SuiteError(
            file,
            f"{key}.name",
            f"{v.name!r}: a variant name names its folder runs/<name>/: use letters, "
            "digits and '-_.=', not starting with '.'",
        )
    check_name(file, f"{key}.loss", LOSSES, v.loss)
    check_name(file, f"{key}.policy", POLICIES, v.policy)
    allowed = loss_option_names(v.loss)
    for opt in v.loss_options:
        if opt not in allowed:
            raise unknown_key(file, f"{key}.loss_options.{opt}", opt, allowed)
    for opt in LOSSES.get(v.loss).harness_options:
        if opt in v.loss_options:
            raise SuiteError(file, f"{key}.loss_options.{opt}", "is computed by the harness; remove it")
    _check_option_types(file, f"{key}.loss_options", LOSSES.get(v.loss), v.loss_options)
    policy_cls = POLICIES.get(v.policy)
    policy_allowed = [
        f.name
        for f in dataclasses.fields(cast(Any, policy_cls))
        if f.name != "threshold" and f.name not in policy_cls.harness_options
    ]
    for opt in v.policy_options:
        if opt in policy_cls.harness_options:
            raise SuiteError(file, f"{key}.policy_options.{opt}", "is computed by the harness; remove it")
        if opt not in policy_allowed:
            raise unknown_key(file, f"{key}.policy_options.{opt}", opt, policy_allowed)
    _check_option_types(file, f"{key}.policy_options", policy_cls, v.policy_options)
    model_allowed = MODELS.get(suite_model.name).option_names()
    for opt in v.model_options:
        if opt not in model_allowed:
            raise unknown_key(file, f"{key}.model_options.{opt}", opt, model_allowed)
    if len(set(v.exits)) != len(v.exits):
        raise SuiteError(file, f"{key}.exits", f"duplicate exit positions in {list(v.exits)}")
    model_cls = MODELS.get(suite_model.name)
    for i in range(len(v.exits)):  # one exit more at a time, so the error names the exit that is wrong
        try:
            _check_model(model_cls, v.exits[: i + 1], {**suite_model.options, **v.model_options, **model_args})
        except (TypeError, ValueError, UnknownNameError) as e:  # an option naming an unknown head, say
            raise SuiteError(file, f"{key}.exits[{i}]", str(e)) from None
    if {**suite_model.options, **v.model_options}.get("cascading_heads") and len(v.exits) < 2:
        raise SuiteError(
            file,
            f"{key}.exits",
            "cascading_heads needs at least two intermediate exits (the second "
            f"reads the first's logits); got {list(v.exits)}",
        )
    min_exits = LOSSES.get(v.loss).min_exits
    if len(v.exits) + 1 < min_exits:
        example = list(model_cls.example_exits[: min_exits - 1]) or [
            "<a module name of the backbone: bench cost SUITE lists them>"
        ]
        raise SuiteError(
            file, f"{key}.exits", f"loss {v.loss!r} needs at least {min_exits - 1} intermediate exit(s), e.g. {example}"
        )
    if v.pretrain in ("base", "sum") and not v.exits:
        raise SuiteError(file, f"{key}.pretrain", "pre-training only applies to variants with intermediate exits")
    for name, val in (("pretrain_epochs", v.pretrain_epochs), ("epochs", v.epochs)):
        if val is not None:
            check_range(file, f"{key}.{name}", val >= 0, "an integer >= 0", val)
    check_range(file, f"{key}.epochs_factor", v.epochs_factor >= 1, "an integer >= 1", v.epochs_factor)
    if v.epochs is not None and v.epochs_factor != 1:
        raise SuiteError(file, f"{key}.epochs_factor", "give either epochs or epochs_factor, not both")
    for skey, values in v.sweep.items():
        if not isinstance(values, list) or not values:
            raise SuiteError(file, f"{key}.sweep.{skey}", f"needs at least one value: a non-empty list, got {values!r}")


SWEEPABLE = ("epochs", "pretrain_epochs", "exits", "policy", "pretrain")


def _apply(variant: VariantSpec, key: str, value: Any, file: Any, where: str) -> VariantSpec:
    """Set dotted ``key`` (``loss_options.lambda``, ``train.lr``, ``epochs``) on a variant."""
    head, _, tail = key.partition(".")
    if head in ("loss_options", "policy_options", "train", "model_options") and tail:
        table = dict(getattr(variant, head))
        table[tail] = value
        changes: dict[str, Any] = {head: table}
        return dataclasses.replace(variant, **changes)
    if head in SWEEPABLE and not tail:
        hints = typing.get_type_hints(VariantSpec)
        return dataclasses.replace(variant, **{head: coerce(value, hints[head], file, where)})
    allowed = [
        *SWEEPABLE,
        "loss_options.<option>",
        "policy_options.<option>",
        "train.<field>",
        "model_options.<option>",
    ]
    raise SuiteError(file, where, f"cannot sweep or set {key!r}; allowed: {', '.join(allowed)}")


def sweep_points(variant: VariantSpec) -> list[dict[str, Any]]:
    """The cartesian product of a variant's sweep (one empty point when there is none)."""
    keys = list(variant.sweep)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(variant.sweep[k] for k in keys))]


def expand_variant(variant: VariantSpec, file: Any = None) -> list[tuple[VariantSpec, dict[str, Any]]]:
    """(resolved variant without sweep, its sweep values) for each sweep point."""
    out = []
    for point in sweep_points(variant):
        v = dataclasses.replace(variant, sweep={})
        for k, val in point.items():
            v = _apply(v, k, val, file, f"sweep.{k}")
        out.append((v, point))
    return out


def _parse_variant(
    file: Any, i: int, raw: Any, train: TrainSpec, model: ModelSpec, model_args: dict[str, Any]
) -> VariantSpec:
    """One ``[[variants]]`` entry, with every point of its sweep checked as the run it becomes."""
    key = f"variants[{i}]"
    if isinstance(raw, dict) and isinstance(raw.get("name"), str):
        key = f"variants[{i}] ({raw['name']})"
    v = build_table(VariantSpec, raw, file, key)
    if v.train:
        v = dataclasses.replace(v, train=validate_train_overrides(file, f"{key}.train", v.train))
    _check_variant(file, key, v, model, model_args)
    for resolved, point in expand_variant(v, file):
        where = f"{key} with {point}" if point else key
        _check_variant(file, where, resolved, model, model_args)
        if resolved.train:
            validate_train_overrides(file, f"{where}.train", resolved.train)
        check_frozen_backbone(file, where, resolved, train, model)
        try:
            build_loss(resolved.loss, dict(resolved.loss_options), num_exits=len(resolved.exits) + 1)
        except (TypeError, ValueError) as e:
            raise SuiteError(file, f"{where}.loss_options", str(e)) from None
        try:
            POLICIES.get(resolved.policy)(**resolved.policy_options)
        except (TypeError, ValueError) as e:
            raise SuiteError(file, f"{where}.policy_options", str(e)) from None
    return v


def parse_variants(
    file: Any, raw_variants: Any, train: TrainSpec, model: ModelSpec, model_args: dict[str, Any]
) -> tuple[VariantSpec, ...]:
    if not isinstance(raw_variants, list) or not raw_variants:
        raise SuiteError(file, "variants", "needs at least one [[variants]] entry")
    variants: list[VariantSpec] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_variants):
        v = _parse_variant(file, i, raw, train, model, model_args)
        if v.name in seen:
            raise SuiteError(
                file,
                f"variants[{i}] ({v.name}).name",
                f"duplicate variant name {v.name!r} (also variants[{seen[v.name]}])",
            )
        seen[v.name] = i
        variants.append(v)
    return tuple(variants)
