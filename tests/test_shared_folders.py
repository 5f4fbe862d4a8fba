"""A results folder is data, never code: the regression corpus of shared-folder attacks and careless inputs.

Each case is one input a colleague's tarball, a CI artefact or a paper's repository could hold. The malicious
ones (a plugin, a pickle) write a marker file when their code runs; the tests assert the marker is absent. The
fuzzed ones (hypothesis) mutate run files, baselines and export manifests: each input is read, or raises the
project's error naming the file, and nothing outside the folder is opened.
"""

from __future__ import annotations

import builtins
import copy
import hashlib
import json
import math
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from bench.analyse.load import load_results
from bench.cli import main
from bench.config.diagnose import suite_errors
from bench.config.load import FolderCodeError, load_suite
from bench.config.plugins import FolderTrust
from bench.config.suite import SuiteError
from bench.execute.runner import run_suite
from bench.results.errors import StoreError
from bench.results.files import OutsideError
from bench.results.store import ResultStore
from bench.results.verify import verify_folder
from bench.verdicts.baseline import BaselineError, read_baseline
from cascade.datafiles import DataFormatError, _read_cifar_batches

from .tiny import layered, tiny_suite

#: the tiny suite, one seed, base and sum-p2, nothing timed
SHARED = {
    "suite": {"name": "shared", "seeds": [0]},
    "dataset": {"train_size": 200},
    "train": {"log_every": None},
    "evaluation": {"latency": False, "count_macs": "none"},
}
VARIANTS = [{"name": "base", "loss": "base"}, {"name": "sum-p2", "loss": "sum", "exits": ["p2"]}]


def shared_suite(variants: list[dict[str, Any]] = VARIANTS, **changes: Any) -> str:
    return tiny_suite(variants=variants, **layered(SHARED, changes))


SUITE = shared_suite()

#: A plugin that leaves a marker when its code runs (the path is filled in per test).
MARKER_PLUGIN = "from pathlib import Path\nPath({marker!r}).write_text('ran')\n"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small finished results folder (two runs, checkpoints inside, no shared cache)."""
    d = tmp_path_factory.mktemp("shared")
    (d / "shared.toml").write_text(SUITE)
    assert run_suite(
        d / "shared.toml", out_dir=d / "out", progress=False, log=lambda s: None, checkpoint_cache=False
    ).ok
    return d / "out"


@pytest.fixture
def folder(made: Path, tmp_path: Path) -> Path:
    """A private copy of the finished folder, to tamper with."""
    return Path(shutil.copytree(made, tmp_path / "copy"))


def _run_file(folder: Path, variant: str = "sum-p2") -> Path:
    return next((folder / "runs" / variant).glob("*.json"))


def _edit_run(folder: Path, edit: Any, variant: str = "sum-p2") -> Path:
    path = _run_file(folder, variant)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path


def _add_plugin_line(folder: Path, line: str) -> None:
    text = (folder / "suite.toml").read_text().replace("[suite]\n", f"[suite]\n{line}\n", 1)
    (folder / "suite.toml").write_text(text)


# --------------------------------------------------------------------------- no code from a folder


@pytest.mark.parametrize("where", ["inside", "absolute", "run-file override"])
def test_a_folder_plugin_is_never_imported(
    folder: Path, tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "marker"
    helper = (folder if where == "inside" else tmp_path) / "helper.py"
    helper.write_text(MARKER_PLUGIN.format(marker=str(marker)))
    if where == "inside":
        _add_plugin_line(folder, 'plugins = ["helper.py"]')
    elif where == "absolute":
        _add_plugin_line(folder, f'plugins = ["{helper}"]')
    else:
        for variant in ("base", "sum-p2"):
            _edit_run(folder, lambda d: d["config"].update(overrides=[f'suite.plugins=["{helper}"]']), variant)
    for argv in (
        ["report", str(folder)],
        ["compare", str(folder), str(folder)],
        ["export", str(folder), "--variant", "sum-p2", "--out", str(tmp_path / "x"), "--no-cache"],
    ):
        assert main(argv) == 2
        said = capsys.readouterr().err
        assert "import no code from it" in said and "--import" in said and "helper.py" in said
        assert not marker.exists()
    with pytest.raises(FolderCodeError):
        load_results(folder)
    assert not marker.exists()


def test_trusted_or_imported_plugins_are_printed(folder: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    (folder / "helper.py").write_text(MARKER_PLUGIN.format(marker=str(marker)))
    _add_plugin_line(folder, 'plugins = ["helper.py"]')
    said: list[str] = []
    load_results(folder, FolderTrust(trust_plugins=True, log=said.append))
    assert marker.read_text() == "ran" and said == [
        f"imported {folder / 'helper.py'}, named by {folder} (--trust-plugins)"
    ]
    other = tmp_path / "mine.py"
    other.write_text("X = 1\n")
    said.clear()
    assert load_results(folder, FolderTrust(imports=(str(other),), log=said.append)).suite is not None
    assert said == [f"imported {other} (--import)"]


@pytest.mark.parametrize(
    "body", ["import sys\nsys.exit(3)\n", "raise KeyboardInterrupt if False else ValueError('x')\n"]
)
def test_a_failing_plugin_is_a_named_error(tmp_path: Path, body: str, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.py").write_text(body)
    (tmp_path / "s.toml").write_text(shared_suite(suite={"plugins": ["bad.py"]}))
    assert main(["validate", str(tmp_path / "s.toml")]) == 2
    err = capsys.readouterr().err
    assert "suite.plugins[0]" in err and "importing it failed" in err
    assert ("SystemExit: 3" in err) if "exit" in body else ("ValueError: x" in err)


def test_a_plugin_that_registers_a_built_in_name_is_told_to_rename_and_leaves_nothing(tmp_path: Path) -> None:
    from cascade.losses import LOSSES

    (tmp_path / "p.py").write_text(
        "from dataclasses import dataclass\nfrom cascade.losses import LOSSES, Loss\n"
        "@LOSSES.register('wsum')\n@dataclass\nclass W(Loss):\n    pass\n"
        "@LOSSES.register('distill')\n@dataclass\nclass D(Loss):\n    pass\n"
    )
    (tmp_path / "s.toml").write_text(shared_suite(suite={"plugins": ["p.py"]}))
    for _ in range(2):  # the second import names the same cause: nothing was left half-registered
        errors = suite_errors(tmp_path / "s.toml")
        assert len(errors) == 1
        assert "loss 'distill' is built in (cascade.losses" in str(errors[0]) and "rename yours" in str(errors[0])
        assert "'distill-own'" in str(errors[0]) and "wsum" not in LOSSES.names()


# --------------------------------------------------------------------------- confinement


@pytest.mark.parametrize("rel", ["../../../../etc/hostname", "/etc/hostname", "checkpoints/../../outside.pt"])
def test_artefact_paths_cannot_leave_the_folder(
    folder: Path, rel: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = Path("/etc/hostname") if rel.startswith("/") or "etc" in rel else folder.parent / "outside.pt"
    if not outside.exists():
        outside.write_text("secret")
    digest = hashlib.sha256(outside.read_bytes()).hexdigest()
    _edit_run(folder, lambda d: d["artefacts"].update({rel: digest}))
    opened = _watch_opens(monkeypatch)
    result = verify_folder(folder)
    assert not result.ok and any("leads outside" in line for line in result.bad)
    assert main(["verify", str(folder)]) == 1
    assert main(["list", str(folder)]) == 0
    said = capsys.readouterr()
    assert digest[:12] not in said.out + said.err
    assert not any(Path(p).resolve() == outside.resolve() for p in opened)
    res = load_results(folder)  # the run is set aside as unusable, with the reason
    assert [r.variant for r in res.records] == ["base"] and "leads outside" in res.problems[0]


def _watch_opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path opened from now on (builtins.open), to show that nothing outside was read."""
    opened: list[str] = []
    real = builtins.open

    def watching(file: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, (str, os.PathLike)):
            opened.append(os.fspath(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", watching)
    return opened


def test_a_checkpoint_link_out_of_the_folder_is_refused(folder: Path, tmp_path: Path) -> None:
    ckpt = next((folder / "checkpoints").glob("*.pt"))
    target = tmp_path / "elsewhere.pt"
    shutil.move(ckpt, target)
    ckpt.symlink_to(target)
    result = verify_folder(folder)
    assert any("leads outside" in line for line in result.bad)
    with pytest.raises(OutsideError, match="leads outside"):
        ResultStore(folder).find_checkpoint(ckpt.stem)


# --------------------------------------------------------------------------- typed reading


@pytest.mark.parametrize(
    ("edit", "field", "expected"),
    [
        (lambda d: d["thresholds"][0].update(accuracy="high"), "thresholds[0].accuracy", "expected a number"),
        (lambda d: d["thresholds"][0].update(accuracy=math.nan), "thresholds[0].accuracy", "expected a finite"),
        (lambda d: d.update(seed="0"), "seed", "expected an integer"),
        (lambda d: d.update(key="../../x"), "", "16 hexadecimal digits"),
        (lambda d: d["exits"].update(names="p2"), "exits.names", "expected a list"),
        (lambda d: d.update(status="done"), "", "expected 'ok' or 'failed'"),
    ],
)
def test_a_mistyped_run_file_is_named_with_its_field(
    folder: Path, edit: Any, field: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _edit_run(folder, edit)
    with pytest.raises(StoreError) as info:
        ResultStore(folder).read_run(path)
    assert str(info.value).startswith(f"{path}: {field}" if field else str(path)) and expected in str(info.value)
    for argv in (["list", str(folder)], ["report", str(folder)]):
        main(argv)
        said = capsys.readouterr()
        assert "Traceback" not in said.err and expected in said.out + said.err


def test_compare_names_unreadable_run_files_and_fails(
    folder: Path, made: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _edit_run(folder, lambda d: d["thresholds"][0].update(accuracy="high"))
    assert main(["compare", str(made), str(folder)]) == 2
    err = capsys.readouterr().err
    assert str(path.name) in err and "cannot be used" in err


def test_string_options_are_not_bools(tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text(
        shared_suite(
            variants=[
                {"name": "soft", "loss": "soft", "exits": ["p1"], "loss_options": {"renormalise": "false"}},
                {"name": "sum-p2", "loss": "sum", "exits": ["p2"], "loss_options": {"weights": "sdn"}},
            ]
        )
    )
    errors = suite_errors(tmp_path / "s.toml")
    assert [str(e) for e in errors] == [
        f"{tmp_path / 's.toml'}: variants[0] (soft).loss_options.renormalise: expected true/false, got 'false'"
    ]


@pytest.mark.parametrize("name", [".", "..", "", ".hidden", "a/b", "sum p1"])
def test_names_that_could_escape_are_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / "s.toml").write_text(shared_suite(variants=[VARIANTS[0], {**VARIANTS[1], "name": name}]))
    with pytest.raises(SuiteError, match=r"variants\[1\].*\.name: .*letters, digits"):
        load_suite(tmp_path / "s.toml")


def test_a_nan_baseline_is_refused(made: Path, tmp_path: Path) -> None:
    from bench.verdicts.baseline import baseline_from_results

    data = baseline_from_results(made, 0.6, "test")
    data["variants"]["sum-p2"]["seeds"]["0"]["accuracy"] = math.nan
    path = tmp_path / "b.json"
    path.write_text(json.dumps(data))
    with pytest.raises(BaselineError, match=r"variants\.sum-p2\.seeds\.0\.accuracy: expected a finite number"):
        read_baseline(path, "shared")
    data["variants"]["sum-p2"]["seeds"]["0"]["accuracy"] = "0.9"
    path.write_text(json.dumps(data))
    with pytest.raises(BaselineError, match=r"accuracy: expected .*got '0\.9'"):
        read_baseline(path, "shared")


# --------------------------------------------------------------------------- CIFAR without pickle execution


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_cifar_batch_runs_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(pickle.dumps({"data": _Evil(str(marker)), "labels": [0]}))
    with pytest.raises(DataFormatError, match=r"data_batch_1: not a CIFAR batch; refused .*posix\.system|os\.system"):
        _read_cifar_batches(folder, ["data_batch_1"], "labels")
    assert not marker.exists()


def test_a_real_cifar_batch_reads_in_every_protocol(tmp_path: Path) -> None:
    import numpy as np

    data = (np.arange(2 * 3072) % 251).astype(np.uint8).reshape(2, 3072)
    for protocol in (2, 4, 5):
        (tmp_path / "b").write_bytes(pickle.dumps({b"batch_label": b"x", "data": data, "labels": [3, 4]}, protocol))
        x, y = _read_cifar_batches(tmp_path, ["b"], "labels")
        assert y.tolist() == [3, 4] and torch.equal(x.reshape(2, -1), torch.from_numpy(data).float() / 255)


# --------------------------------------------------------------------------- broken promises mended


def test_retime_never_trains_an_unloadable_checkpoint(folder: Path, tmp_path: Path) -> None:
    ckpt = next((folder / "checkpoints").glob("*.pt"))
    for p in (folder / "checkpoints").glob("*.pt"):
        p.write_bytes(b"not a checkpoint")
        meta = json.loads(p.with_suffix(".json").read_text())
        meta["sha256"] = hashlib.sha256(b"not a checkpoint").hexdigest()
        p.with_suffix(".json").write_text(json.dumps(meta))
    (tmp_path / "s.toml").write_text(SUITE)
    summary = run_suite(
        tmp_path / "s.toml", out_dir=folder, progress=False, log=lambda s: None, checkpoint_cache=False, retime=True
    )
    assert len(summary.failed) == 2 and all("--retime never trains" in f["error"] for f in summary.failed)
    assert ckpt.read_bytes() == b"not a checkpoint"  # nothing moved aside, nothing trained


def test_export_of_an_unloadable_checkpoint_is_named(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for p in (folder / "checkpoints").glob("*.pt"):
        p.write_bytes(p.read_bytes()[:100])  # truncated; the sidecar's digest updated, as a legacy file would be
        meta = json.loads(p.with_suffix(".json").read_text())
        meta["sha256"] = hashlib.sha256(p.read_bytes()).hexdigest()
        p.with_suffix(".json").write_text(json.dumps(meta))
    for variant in ("base", "sum-p2"):  # run files from before digests
        _edit_run(folder, lambda d: d.pop("artefacts"), variant)
    pytest.importorskip("onnxruntime")
    assert main(["export", str(folder), "--variant", "sum-p2", "--out", str(tmp_path / "x"), "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert "does not load" in err and "weights_only" not in err and "Traceback" not in err


def test_a_damaged_checkpoint_replaced_from_the_cache_says_so(made: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    store = ResultStore(made, cache)
    key = next((made / "checkpoints").glob("*.pt")).stem
    cache.mkdir()
    shutil.copy(made / "checkpoints" / f"{key}.pt", cache / f"{key}.pt")
    shutil.copy(made / "checkpoints" / f"{key}.json", cache / f"{key}.json")
    copy_dir = Path(shutil.copytree(made, tmp_path / "c"))
    (copy_dir / "checkpoints" / f"{key}.pt").write_bytes(b"junk")
    store = ResultStore(copy_dir, cache)
    assert store.find_checkpoint(key) == "cache"
    assert store.warnings and store.warnings[-1].endswith("replaced by the shared cache's copy")


@pytest.mark.parametrize(
    ("threshold", "key"),
    [
        (1.5, "evaluation.thresholds[0]"),
        (float("nan"), "evaluation.thresholds[0]"),
    ],
)
def test_one_error_per_mistake(tmp_path: Path, threshold: float, key: str) -> None:
    (tmp_path / "s.toml").write_text(shared_suite(evaluation={"thresholds": [threshold]}))
    errors = suite_errors(tmp_path / "s.toml")
    assert [e.key for e in errors] == [key]


def test_a_duplicate_variant_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text(SUITE + '\n[[variants]]\nname = "base"\nloss = "base"\n')
    errors = suite_errors(tmp_path / "s.toml")
    assert [e.key for e in errors] == ["variants[2] (base).name"] and "duplicate" in errors[0].message


# --------------------------------------------------------------------------- exports


@pytest.fixture(scope="module")
def exported(made: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnxruntime")
    from bench.execute.export import export_run

    out = tmp_path_factory.mktemp("export") / "deploy"
    export_run(made, variant="sum-p2", out=out, checkpoint_cache=False)
    return out


def _manifest_case(exported: Path, tmp_path: Path, edit: Any) -> Path:
    out = Path(shutil.copytree(exported, tmp_path / "e"))
    data = json.loads((out / "cascade.json").read_text())
    edit(data, out)
    (out / "cascade.json").write_text(json.dumps(data))
    return out


def _drop_digest(data: dict[str, Any], out: Path) -> None:
    del data["sha256"]["head_0.onnx"]
    (out / "head_0.onnx").write_bytes(b"junk")


def _drop_digest_and_fix_list(data: dict[str, Any], out: Path) -> None:
    from bench.execute.export import files_digest

    _drop_digest(data, out)
    data["files_sha256"] = files_digest(data["sha256"])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d, o: d["policy"].update(threshold="high"), r"policy\.threshold: expected a number or null"),
        (lambda d, o: d["policy"].update(threshold=2.0), r"policy\.threshold: 2\.0 is out of range"),
        (lambda d, o: d.update(exits="p2"), r"exits: expected a list"),
        (lambda d, o: d["files"]["heads"].pop(), r"as many segments and heads"),
        (_drop_digest, r"file list does not match files_sha256"),
        (_drop_digest_and_fix_list, r"no digest for 'head_0\.onnx'"),
        (lambda d, o: (o / "extra.onnx").write_bytes(b"x"), r"extra\.onnx not listed in cascade\.json"),
        (lambda d, o: d["sha256"].update({"../outside": "0" * 64}), r"file list does not match"),
    ],
)
def test_a_tampered_export_is_refused_with_one_error_class(
    exported: Path, tmp_path: Path, edit: Any, message: str
) -> None:
    from bench.execute.export import ExportError, read_export

    out = _manifest_case(exported, tmp_path, edit)
    with pytest.raises(ExportError, match=message):
        read_export(out)


def test_an_export_manifest_path_cannot_leave_the_folder(exported: Path, tmp_path: Path) -> None:
    from bench.execute.export import ExportError, files_digest, read_export

    def edit(d: dict[str, Any], o: Path) -> None:
        d["sha256"]["../outside"] = "0" * 64
        d["files_sha256"] = files_digest(d["sha256"])

    with pytest.raises(ExportError, match=r"'\.\./outside' leads outside"):
        read_export(_manifest_case(exported, tmp_path, edit))


# --------------------------------------------------------------------------- fuzzing

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from .test_suite_fuzz import EXAMPLES  # noqa: E402

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 100,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["../../etc/passwd", "/etc/passwd", "..", "", "NaN", "high"]),
    st.lists(st.integers(0, 3), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON document."""
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(doc: Any, path: tuple[Any, ...], value: Any, how: str) -> Any:
    doc = copy.deepcopy(doc)
    node = doc
    for p in path[:-1]:
        node = node[p]
    if how == "delete" and isinstance(node, dict):
        del node[path[-1]]
    elif how == "path-key" and isinstance(node, dict):
        node["../../../etc/passwd"] = node.pop(path[-1])
    else:
        node[path[-1]] = value
    return doc


@pytest.fixture(scope="module")
def run_doc(made: Path) -> dict[str, Any]:
    return json.loads(_run_file(made).read_text())


@FUZZ
@given(data=st.data(), value=ODD, how=st.sampled_from(["set", "delete", "path-key"]))
def test_fuzzed_run_files_are_read_or_named(
    made: Path, run_doc: dict[str, Any], tmp_path_factory: Any, data: Any, value: Any, how: str
) -> None:
    path = data.draw(st.sampled_from(_paths(run_doc)))
    doc = _mutate(run_doc, path, value, how)
    folder = tmp_path_factory.mktemp("fz")
    (folder / "runs" / "sum-p2").mkdir(parents=True)
    target = folder / "runs" / "sum-p2" / "0123456789abcdef.json"
    target.write_text(json.dumps(doc))
    outside = "/etc/passwd"
    real_open = builtins.open
    opened: list[str] = []

    def watching(file: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, (str, os.PathLike)):
            opened.append(os.fspath(file))
        return real_open(file, *args, **kwargs)

    builtins.open = watching  # type: ignore[assignment]
    try:
        store = ResultStore(folder)
        try:
            record = store.read_run(target)
        except StoreError as e:
            assert str(target) in str(e)
        else:
            store.stale(record)
        verify_folder(folder)
    finally:
        builtins.open = real_open  # type: ignore[assignment]
    assert outside not in opened


@FUZZ
@given(data=st.data(), value=ODD, how=st.sampled_from(["set", "delete"]))
def test_fuzzed_baselines_are_read_or_named(made: Path, tmp_path_factory: Any, data: Any, value: Any, how: str) -> None:
    from bench.verdicts.baseline import baseline_from_results

    doc = baseline_from_results(made, 0.6, "fuzz")
    doc = _mutate(doc, data.draw(st.sampled_from(_paths(doc))), value, how)
    path = tmp_path_factory.mktemp("bz") / "b.json"
    path.write_text(json.dumps(doc))
    try:
        read_baseline(path, "shared")
    except BaselineError as e:
        assert str(path) in str(e)


@FUZZ
@given(data=st.data(), value=ODD, how=st.sampled_from(["set", "delete", "path-key"]))
def test_fuzzed_export_manifests_are_read_or_named(
    exported: Path, tmp_path_factory: Any, data: Any, value: Any, how: str
) -> None:
    from bench.execute.export import ExportError, read_export

    doc = json.loads((exported / "cascade.json").read_text())
    doc = _mutate(doc, data.draw(st.sampled_from(_paths(doc))), value, how)
    out = Path(shutil.copytree(exported, tmp_path_factory.mktemp("ez") / "e"))
    (out / "cascade.json").write_text(json.dumps(doc))
    try:
        read_export(out)
    except ExportError as e:
        assert str(out) in str(e)
