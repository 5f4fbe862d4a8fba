"""``bench export``: a trained multi-exit model as files a deployment serves without PyTorch.

Writes, for one run of a results folder (a variant and a seed), in one of three formats (``--format``):

* ``onnx`` (the default): ``segment_<k>.onnx`` and ``head_<k>.onnx`` for every exit k (dynamic batch axis;
  :mod:`cascade.ort`), the decision in the serving code between them;
* ``onnx-graph``: ``cascade.onnx``, the whole cascade with its policy as one ONNX graph (:mod:`cascade.onnx_graph`:
  inputs ``x`` and ``threshold``; outputs ``logits``, ``class``, ``exit``, ``confidence``), one call per batch;
* ``executorch``: ``cascade.pte``, an ExecuTorch program whose methods ``segment_<k>`` and ``head_<k>`` are
  XNNPACK-delegated, at batch 1 (:mod:`cascade.executorch_runtime`), the decision in the serving code;

and in every format
* ``cascade.json``: the format, the exit order and names, the exit policy and its threshold, the class names, the
  input shape and the normalisation to apply to images in [0, 1], the opset, the SHA-256 of every
  file, and where the model came from (folder, run and train keys, seed, test accuracy).

The checkpoint is found (and verified by digest) in the folder or the shared checkpoint cache. After
writing, the exported cascade is run with ONNX Runtime on the test split and its decisions compared
with eager PyTorch's (:func:`cascade.agreement.agreement`); docs/deploy.md serves the files with
onnxruntime and numpy alone.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.analyse.load import Results, load_results, recorded_plugins
from bench.config.load import load_folder_suite
from bench.config.plan import build_for, expand_runs
from bench.config.plugins import NO_TRUST, FolderTrust
from bench.execute.evaluate import fitted_options
from bench.execute.sanity import as_evaluated
from bench.execute.training import get_data
from bench.results.files import atomic_write_bytes, atomic_write_json, confined, mismatch
from bench.results.provenance import now
from bench.results.record import RunRecord
from bench.results.store import ResultStore, StoreError, canonical_json, default_checkpoint_cache
from bench.results.typed import load_typed
from cascade.agreement import check_against_eager
from cascade.exits import POLICIES, EarlyExitResult, build_policy, dynamic_forward, run_cascade
from cascade.models._base import takes_previous
from cascade.ort import OPSET, OrtCascade, SessionSettings, export_model

EXPORT_FORMAT = 3  # 3: the file formats (kind); 2: typed manifest with the digest of its file list (files_sha256)
READABLE_FORMATS = (2, 3)  # a format-2 manifest is an onnx export
#: what ``bench export --format`` writes
KINDS = ("onnx", "onnx-graph", "executorch")


@dataclass(frozen=True)
class ExportSummary:
    """What ``bench export`` wrote and how the exported cascade compares with eager on the test split."""

    out: Path
    files: list[str]
    record: RunRecord
    check: dict[str, Any]  # the manifest's check: samples, decisions differing from eager, ties, accuracies
    test_accuracy: float  # of the exported cascade (ONNX Runtime) at the exported threshold


def pick_run(results: Results, variant: str, seed: int | None) -> RunRecord:
    """The finished run of ``variant`` (at ``seed``, default the lowest) in a loaded results folder."""
    results_dir = results.out_dir
    recs = results.records_of(variant) if variant in results.variants else []
    if not recs:
        raise StoreError(
            f"{results_dir}: no finished run of variant {variant!r}; variants: {', '.join(results.variants) or 'none'}"
        )
    if seed is None:
        return min(recs, key=lambda r: r.seed)
    for r in recs:
        if r.seed == seed:
            return r
    raise StoreError(
        f"{results_dir}: variant {variant!r} has no run with seed {seed}; seeds: {', '.join(str(r.seed) for r in recs)}"
    )


def export_run(
    results_dir: str | Path,
    *,
    variant: str,
    out: str | Path,
    seed: int | None = None,
    threshold: float | None = None,
    checkpoint_cache: str | Path | bool | None = True,
    trust: FolderTrust = NO_TRUST,
    kind: str = "onnx",
) -> ExportSummary:
    """Export one run's trained model in format ``kind`` (:data:`KINDS`) plus ``cascade.json`` (see the module)."""
    if kind not in KINDS:
        raise StoreError(f"export format {kind!r}; known: {', '.join(KINDS)}")
    folder, out = Path(results_dir), Path(out)
    results = load_results(folder, trust)
    record = pick_run(results, variant, seed)
    if not (folder / "suite.toml").is_file():
        raise StoreError(f"{folder}: no suite.toml (the suite as run), so the model cannot be rebuilt")
    overrides = record.config.get("overrides", [])
    suite = results.suite or load_folder_suite(folder, overrides, trust, recorded_plugins(results.records))
    spec = next((r for r in expand_runs(suite, overrides) if r.key == record.key or r.legacy_key == record.key), None)
    if spec is None:
        raise StoreError(f"{folder}: run {record.key} is not among the runs its suite.toml plans (edited suite?)")
    cache = default_checkpoint_cache() if checkpoint_cache is True else checkpoint_cache or None
    store = ResultStore(folder, cache)
    if store.find_checkpoint(spec.job.key) is None:
        raise StoreError(
            f"no checkpoint of train key {spec.job.key} in {folder}/checkpoints or the shared cache "
            f"({cache or 'off'}); checkpoints are not committed: rerun `bench run` for this variant"
        )
    data = get_data(spec.data, "cpu").test_subset(spec.evaluation.test_samples)  # the split the run measured
    model = as_evaluated(_load(store.checkpoint_path(spec.job.key), build_for(spec.job, data)), spec, data)
    t = threshold if threshold is not None else record.headline_threshold
    policy = build_policy(
        record.policy, **({"threshold": t} if _has_threshold(record.policy) else {}), **_policy_options(record)
    )
    files, run = _write(kind, model, data.test.x, policy, out)
    check = _check(model, run, data.test.x, data.test.y, policy, batch=1 if kind == "executorch" else 256)
    if kind == "onnx-graph":  # the If chain serves single samples: check it on them too
        n = min(200, len(data.test.x))
        check["batch_1"] = check_against_eager(model, run, data.test.x[:n], policy, 1)[0]
    check["recorded_test_accuracy"] = _recorded(record, t)
    meta = _meta(record, spec, folder, data, policy, t, files, check, kind)
    atomic_write_json(out / "cascade.json", meta)
    _against_the_run(out, check)  # after writing: the files stay for inspection, the command fails
    return ExportSummary(out, [*files, "cascade.json"], record, check, check["test_accuracy"])


def _load(path: Path, model: Any) -> Any:
    """``model`` with the checkpoint's weights; a checkpoint that does not load is named, not explained away."""
    try:  # weights_only: a checkpoint never runs code; a failure is named, not offered a way around that rule
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["state_dict"])
    except Exception as e:
        raise StoreError(
            f"checkpoint {path} does not load ({type(e).__name__}); it is damaged or not a "
            "checkpoint of this run: rerun `bench run` for this variant to train it again"
        ) from None
    return model


def _write(
    kind: str, model: Any, x: torch.Tensor, policy: Any, out: Path
) -> tuple[dict[str, str], Callable[[torch.Tensor, Any], Any]]:
    """The files of format ``kind`` (name -> SHA-256) and how to run them on a torch batch (for the check)."""
    files: dict[str, str] = {}
    if kind == "onnx":
        segments, heads = export_model(model, x[:2])
        for name, parts in (("segment", segments), ("head", heads)):
            for k, blob in enumerate(parts):
                files[f"{name}_{k}.onnx"] = atomic_write_bytes(out / f"{name}_{k}.onnx", blob)
        cascade = OrtCascade(
            [str(out / f"segment_{k}.onnx") for k in range(len(segments))],
            [str(out / f"head_{k}.onnx") for k in range(len(heads))],
        )
        return files, lambda xb, p: cascade.dynamic(xb.numpy(), p)
    if kind == "onnx-graph":
        from cascade.onnx_graph import cascade_graph  # noqa: PLC0415  (the [onnx] extra)

        files["cascade.onnx"] = atomic_write_bytes(out / "cascade.onnx", cascade_graph(model, x, policy))
        (session,) = SessionSettings().sessions([str(out / "cascade.onnx")])

        def run_graph(xb: torch.Tensor, p: Any) -> Any:
            threshold = np.asarray(p.threshold, dtype=np.float32)
            _, classes, exits, _ = session.run(None, {"x": xb.numpy(), "threshold": threshold})
            return EarlyExitResult(torch.from_numpy(classes), torch.from_numpy(exits), model.num_exits)

        return files, run_graph
    from cascade.executorch_runtime import ExecuTorchPieces, program  # noqa: PLC0415  (the [executorch] extra)

    files["cascade.pte"] = atomic_write_bytes(out / "cascade.pte", program(model, x))
    reads = [takes_previous(h) for h in model.exit_heads]
    pieces = ExecuTorchPieces((out / "cascade.pte").read_bytes(), model.num_exits, reads)
    return files, lambda xb, p: run_cascade(pieces, xb.contiguous(), p)


def _recorded(record: RunRecord, threshold: float) -> float | None:
    """The run's recorded test accuracy at ``threshold`` (None: the run did not evaluate that threshold)."""
    try:
        return float(record.at(threshold).accuracy)
    except KeyError:
        return None


class ExportMismatchError(StoreError):
    """The exported files do not compute what the run measured."""


def _against_the_run(out: Path, check: dict[str, Any]) -> None:
    """Refuse an export whose eager model is not the one the run evaluated (its test accuracy differs from the
    recorded one), or whose ONNX files differ from it beyond threshold ties."""
    recorded, eager, n = check["recorded_test_accuracy"], check["eager_test_accuracy"], check["test_samples"]
    if recorded is not None and round(eager * n) != round(recorded * n):
        raise ExportMismatchError(
            f"{out}: the exported model scores {100 * eager:.2f} % on the test split where the run recorded "
            f"{100 * recorded:.2f} %: it is not the model the report measured (a checkpoint trained by other code, "
            "or an evaluation step the export did not repeat); the files were written for inspection, do not serve them"
        )
    if check["decisions_differing_from_eager"] > check["of_which_ties"]:
        raise ExportMismatchError(
            f"{out}: {check['decisions_differing_from_eager'] - check['of_which_ties']} test decision(s) of the "
            "exported files differ from eager PyTorch's beyond threshold ties; do not serve them"
        )
    one = check.get("batch_1")
    if one is not None and one["differ"] > one["ties"]:
        raise ExportMismatchError(
            f"{out}: at batch 1, {one['differ'] - one['ties']} test decision(s) of the exported graph differ from "
            "eager PyTorch's beyond threshold ties; do not serve it"
        )


def _policy_options(record: RunRecord) -> dict[str, Any]:
    """The run's policy options with what the policy fitted (temperatures on validation, ZTW's ensemble on train)."""
    return {**record.config.get("policy_options", {}), **fitted_options(record.policy, record.policy_fit)}


def _has_threshold(policy: str) -> bool:
    return POLICIES.get(policy).has_threshold


@torch.no_grad()
def _check(
    model: Any, run: Callable[[torch.Tensor, Any], Any], x: torch.Tensor, y: torch.Tensor, policy: Any, batch: int
) -> dict[str, Any]:
    """The exported cascade's decisions (``run`` on torch batches) against eager's on the test split, both
    accuracies."""
    agree, ours = check_against_eager(model, run, x, policy, batch)
    eager = torch.cat([dynamic_forward(model, x[i : i + batch], policy).predictions for i in range(0, len(x), batch)])
    return {
        "test_samples": agree["samples"],
        "decisions_differing_from_eager": agree["differ"],
        "of_which_ties": agree["ties"],
        "test_accuracy": float((ours.predictions == y).float().mean()),
        "eager_test_accuracy": float((eager == y).float().mean()),
    }


def _meta(
    record: RunRecord,
    spec: Any,
    folder: Path,
    data: Any,
    policy: Any,
    threshold: float,
    files: dict[str, str],
    check: dict[str, Any],
    kind: str = "onnx",
) -> dict[str, Any]:
    n = record.exits.names if record.exits else []
    options = _policy_options(record)  # JSON writes its tuples as arrays
    by_kind: dict[str, dict[str, Any]] = {
        "onnx": {
            "segments": [f"segment_{k}.onnx" for k in range(len(n))],
            "heads": [f"head_{k}.onnx" for k in range(len(n))],
        },
        "onnx-graph": {"graph": "cascade.onnx"},
        "executorch": {"program": "cascade.pte"},
    }
    listed = by_kind[kind]
    return {
        "format": EXPORT_FORMAT,
        "kind": kind,
        "exits": n,
        "files": listed,
        "policy": {
            "name": record.policy,
            "threshold": threshold if hasattr(policy, "threshold") else None,
            "options": options,
            "rule": _RULES.get(record.policy, "see cascade.exits")
            + ("; exit l's logits are divided by temperatures[l] first" if "temperatures" in options else ""),
        },
        "classes": list(data.class_names),
        "input": {
            "shape": list(data.input_shape),
            "dtype": "float32",
            "layout": "NCHW",
            "pixels": "images scaled to [0, 1], then (x - mean) / std",
            "normalization": data.normalization,
        },
        "opset": OPSET,
        "sha256": files,
        "files_sha256": files_digest(files),
        "check": check,
        "source": {
            "folder": str(folder),
            "variant": record.variant,
            "seed": record.seed,
            "run_key": record.key,
            "train_key": spec.job.key,
            "dataset": record.dataset,
            "batch_norm": "recomputed on training batches, as evaluated (recompute_bn)"
            if spec.evaluation.recompute_bn
            else "the checkpoint's running statistics, as evaluated",
            "exported": now(),
        },
    }


_RULES = {
    "max-prob": "leave at the first exit whose max softmax probability > threshold; the last exit takes the rest",
    "entropy": "leave at the first exit whose 1 - H(softmax) / log K > threshold; the last exit takes the rest",
    "patience": "leave when the predicted class stayed the same for `patience` consecutive exits",
}


class ExportError(StoreError):
    """An export folder that cannot be served as it is: a damaged, missing, unlisted or mistyped file or field."""


@dataclass(frozen=True)
class ExportFiles:
    segments: list[str] = field(default_factory=list)  # onnx: segment_<k>.onnx, in exit order
    heads: list[str] = field(default_factory=list)  # onnx: head_<k>.onnx, in exit order
    graph: str | None = None  # onnx-graph: cascade.onnx
    program: str | None = None  # executorch: cascade.pte


@dataclass(frozen=True)
class ExportPolicy:
    name: str  # a registered exit policy (cascade.exits.POLICIES)
    threshold: float | None  # in [0, 1]; None: a threshold-free policy
    options: dict[str, Any]  # the policy's options with what it fitted (temperatures, ensembles)
    rule: str  # the decision rule in words


@dataclass(frozen=True)
class ExportInput:
    shape: list[int]  # (C, H, W)
    dtype: str
    layout: str
    pixels: str
    normalization: dict[str, Any]  # kind, and mean and std per channel, applied to pixels in [0, 1]

    def __post_init__(self) -> None:
        for key in ("mean", "std"):
            values = self.normalization.get(key)
            if not isinstance(values, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
            ):
                raise ValueError(f"input.normalization.{key}: expected a list of finite numbers, got {values!r:.60}")


@dataclass(frozen=True)
class ExportManifest:
    """``cascade.json``: what :func:`read_export` accepts, field by field (docs/deploy.md describes each)."""

    format: int
    exits: list[str]
    files: ExportFiles
    policy: ExportPolicy
    classes: list[str]
    input: ExportInput
    opset: int
    sha256: dict[str, str]  # file name -> SHA-256 of its bytes, for every file listed in ``files``
    files_sha256: str  # SHA-256 of the canonical JSON of ``sha256``: the list itself is checked too
    check: dict[str, Any]
    source: dict[str, Any]
    kind: str = "onnx"  # one of KINDS (format 2 manifests are onnx exports)

    def __post_init__(self) -> None:
        if self.format not in READABLE_FORMATS:
            raise ValueError(f"format: {self.format!r} is not one this code reads ({READABLE_FORMATS}); export again")
        if self.kind not in KINDS:
            raise ValueError(f"kind: {self.kind!r}; known: {', '.join(KINDS)}")
        n, f = len(self.exits), self.files
        pieces = bool(f.segments or f.heads)
        if n < 1:
            raise ValueError("exits: an export holds at least one exit")
        if self.kind == "onnx" and (len(f.segments) != n or len(f.heads) != n or f.graph or f.program):
            raise ValueError(
                f"{n} exits need as many segments and heads and nothing else; files lists {len(f.segments)} "
                f"segment(s) and {len(f.heads)} head(s)"
            )
        if self.kind == "onnx-graph" and (not f.graph or pieces or f.program):
            raise ValueError("files: an onnx-graph export lists its graph and nothing else")
        if self.kind == "executorch" and (not f.program or pieces or f.graph):
            raise ValueError("files: an executorch export lists its program and nothing else")
        t = self.policy.threshold
        if t is not None and not 0 <= t <= 1:
            raise ValueError(f"policy.threshold: {t!r} is out of range; allowed: a number in [0, 1]")

    @property
    def listed(self) -> list[str]:
        """Every file the manifest names."""
        return [*self.files.segments, *self.files.heads, *(x for x in (self.files.graph, self.files.program) if x)]


def files_digest(sha256: dict[str, str]) -> str:
    """The digest of an export's file list: SHA-256 of its canonical JSON."""
    return hashlib.sha256(canonical_json(sha256).encode()).hexdigest()


def read_export(folder: str | Path) -> dict[str, Any]:
    """``cascade.json`` of an export, typed and checked (pip's hash-checking mode is the model): every field's type
    and range, every listed file against its SHA-256, the list itself against its digest, and no file in the
    folder that the manifest does not list. Raises :class:`ExportError` (one class) naming the file and field."""
    folder = Path(folder)
    where = str(folder / "cascade.json")
    try:
        data = json.loads((folder / "cascade.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{folder}: no cascade.json; is this a folder written by `bench export`?") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ExportError(f"{where}: not readable JSON ({e})") from None
    try:
        manifest = load_typed(ExportManifest, data, where)
    except StoreError as e:
        raise ExportError(str(e)) from None
    if files_digest(manifest.sha256) != manifest.files_sha256:
        raise ExportError(f"{where}: sha256: the file list does not match files_sha256 (edited or damaged)")
    for name in manifest.listed:
        if name not in manifest.sha256:
            raise ExportError(f"{where}: sha256: no digest for {name!r}, which files lists")
    for name, digest in manifest.sha256.items():
        try:
            path = confined(folder, name, f"{where}: sha256")
        except StoreError as e:
            raise ExportError(str(e)) from None
        if not path.is_file():
            raise ExportError(f"{path}: listed in cascade.json but missing")
        if (why := mismatch(path, digest)) is not None:
            raise ExportError(f"{path}: {why}")
    extra = sorted(p.name for p in folder.iterdir() if p.name != "cascade.json" and p.name not in manifest.sha256)
    if extra:
        raise ExportError(
            f"{folder}: {', '.join(extra)} not listed in cascade.json; an export folder holds only "
            "what its manifest lists (remove them, or export again)"
        )
    return data
