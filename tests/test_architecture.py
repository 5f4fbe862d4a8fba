"""The structure the architecture relies on: no import cycles, registries as the only extension
point, typed run records that survive bad files, inference copies equal to the trained model."""

from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F

import bench.execute.training as training
from bench.analyse.load import load_results
from bench.config.load import load_suite
from bench.execute.runner import run_suite
from bench.measure.cost import counting
from bench.render.report import write_report
from bench.results.errors import StoreError
from bench.results.migrate import SCHEMA_VERSION, upgrade
from bench.results.record import RunRecord
from bench.results.store import ResultStore
from cascade import build_model, build_policy, dynamic_forward
from cascade.inference import ChunkedSegment, FlattenChannelsLast, optimise_for_inference
from cascade.losses import LOSSES, Loss

from .conftest import REPO
from .tiny import TINY

PACKAGES = ("cascade", "bench")


def module_imports() -> dict[str, set[str]]:
    """Project module -> project modules it imports anywhere (imports inside functions count)."""
    modules = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            rel = path.relative_to(REPO).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name and t.split(".")[0] in PACKAGES:
                    deps.add(t)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle as a list of modules (first == last), or None."""
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if colour.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in colour and (found := visit(dep)):
                return found
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(graph):
        if node not in colour and (found := visit(node)):
            return found
    return None


def test_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


#: The layers, lowest first: a module may import its own layer and the layers below, never one above.
#: cascade (the library) knows nothing of bench; in bench the folder list reads as the data flow.
LAYERS = (
    "cascade",
    "bench.results",  # run records, schema migrations, atomic files, provenance, the store, artefact digests
    "bench.config",  # suite schema and parsing, tables, engines, plugins, the plan
    "bench.measure",  # counting, energy, dataflow, latency, roofline, runtimes, the ZigZag cross-check
    "bench.analyse",  # statistics, curves, budgets, a loaded results folder, its tables as data
    "bench.execute",  # runner, training jobs, executors, evaluation, sanity checks, export
    "bench.render",  # formatting, the report, figures, the list / cost views
    "bench.verdicts",  # study claims, the reproduction, compare, the CI gate
    "bench.commands",  # one module per command
    "bench.cli",  # argument parsing and the command table
)


def layer_of(module: str) -> int:
    if module == "bench":
        return len(LAYERS)  # the package front re-exports the documented functions of every layer
    found = [i for i, name in enumerate(LAYERS) if module == name or module.startswith(name + ".")]
    assert found, f"{module} is in no layer: add it to LAYERS (tests/test_architecture.py)"
    return found[-1]


def test_layer_order_is_declared_and_checked() -> None:
    assert layer_of("bench.render.report") > layer_of("bench.analyse.stats") > layer_of("bench.results.record")
    graph = {"bench.results.store": {"bench.render.report"}}
    assert [(m, d) for m, deps in graph.items() for d in deps if layer_of(d) > layer_of(m)]  # an upward import


def test_imports_point_down_the_layers_only_and_never_cycle() -> None:
    graph = module_imports()
    assert len(graph) > 60 and "bench.config.engines" in graph["bench.cli"]  # the walk sees the real modules
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph) or [])}"
    upward = sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps if layer_of(d) > layer_of(m))
    assert not upward, "imports that point up the layers:\n" + "\n".join(upward)


TEXT_COMMANDS = ("compare", "check", "study", "reproduce", "validate")


def test_help_imports_neither_torch_nor_the_commands() -> None:
    heavy = "('torch', 'matplotlib', 'pandas', 'bench.commands.run')"
    code = (
        f"import sys; from bench.cli import build_parser; build_parser().format_help(); "
        f"print(sorted(m for m in {heavy} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_commands_and_workers_import_only_what_they_use() -> None:
    """One fresh interpreter imports what a pool worker or a subprocess imports first (the runner), then the
    text commands' modules (``bench compare`` / ``check`` / ``study`` / ``reproduce`` / ``validate``) in
    turn, then the run command, and names the first that brings in a module it has no use for:

    * torchvision (1.5 s: it imports torch._dynamo) only with a torchvision model, a download or an image
      folder (tests/test_attach.py and test_data.py use them);
    * scipy.optimize (a third of a second) only with a temperature fit (test_methods.py) or statistics;
    * matplotlib (half a second, and it sets a backend) only where figures are drawn."""
    from bench.cli import COMMANDS

    text = [COMMANDS[command].target.partition(":")[0] for command in TEXT_COMMANDS]
    steps = [("bench.execute.runner", ("torchvision", "torch._dynamo", "scipy.optimize", "matplotlib"))]
    steps += [(m, ("torchvision", "torch._dynamo", "matplotlib")) for m in text]
    steps += [("bench.commands.run", ("torchvision", "torch._dynamo"))]
    code = (
        "import importlib, sys\n"
        f"for m, unused in {steps!r}:\n"
        "    importlib.import_module(m)\n"
        "    if any(u in sys.modules for u in unused):\n"
        "        print(m, [u for u in unused if u in sys.modules]); break\n"
        "else:\n"
        "    print('none')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "none", f"importing {out.strip()}"


def test_folder_commands_read_files_without_torch() -> None:
    """``bench list`` and ``bench verify`` read a folder as data: their modules import neither torch, numpy nor
    pandas (seconds of start-up for a command that reads a few JSON files)."""
    from bench.cli import COMMANDS

    modules = [COMMANDS[c].target.partition(":")[0] for c in ("list", "verify")]
    code = (
        f"import importlib, sys\nfor m in {modules!r}:\n    importlib.import_module(m)\n"
        "print(sorted(m for m in ('torch', 'numpy', 'pandas', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


MAX_FUNCTION_LINES, MAX_MODULE_LINES = 80, 500


def test_functions_and_modules_stay_small() -> None:
    """No function over 80 lines and no module over 500 in bench/ or cascade/ (a whole-tree rule: split by
    responsibility before a file becomes four modules)."""
    long_functions, long_modules = [], []
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            text = path.read_text()
            if text.count("\n") > MAX_MODULE_LINES:
                long_modules.append(f"{path.relative_to(REPO)}: {text.count(chr(10))} lines")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = (node.end_lineno or node.lineno) - node.lineno + 1
                    if n > MAX_FUNCTION_LINES:
                        long_functions.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {n} lines")
    assert not long_modules, long_modules
    assert not long_functions, long_functions


MAX_FORMAT_SKIPS = 20


def test_code_reads_as_formatted() -> None:
    """``ruff format`` decides line breaks: the tree is formatted as it is read, and a ``# fmt: skip`` (at most
    MAX_FORMAT_SKIPS, for a table that reads better aligned) states its reason on the line before."""
    trees = ["cascade", "bench", "tests", "benchmarks"]
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", *trees], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    skips = []
    for tree in trees:
        for path in sorted((REPO / tree).rglob("*.py")):
            lines = path.read_text().splitlines()
            for i, line in enumerate(lines):
                if line.rstrip().endswith("# fmt: skip"):
                    reason = lines[i - 1].strip() if i else ""
                    assert reason.startswith("#"), f"{path.relative_to(REPO)}:{i + 1}: a fmt: skip without its reason"
                    skips.append(f"{path.relative_to(REPO)}:{i + 1}")
    assert len(skips) <= MAX_FORMAT_SKIPS, skips


# --------------------------------------------------------------------------- a loss from a test file


@dataclass
class LastTwoLoss(Loss):
    """Toy loss: CE of the last two exits, weighted by ``w`` (registered by this test only)."""

    name: ClassVar[str] = "toy-last-two"
    min_exits: ClassVar[int] = 2
    default_pretrain: ClassVar[str] = "sum"
    w: float = 0.5  # weight of the second-to-last exit

    def __call__(self, logits: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits[-1], target) + self.w * F.cross_entropy(logits[-2], target)


def test_a_loss_registered_in_a_test_file_runs_from_toml(tmp_path: Path) -> None:
    LOSSES.register("toy-last-two")(LastTwoLoss)
    try:
        suite = tmp_path / "toy.toml"
        suite.write_text(
            TINY.replace('name = "firm-p2"\nloss = "firm"', 'name = "toy"\nloss = "toy-last-two"')
            + "loss_options = { w = 0.25 }\n"
        )
        spec = load_suite(suite, ["suite.seeds=[0]"])
        toy = spec.variant("toy")
        assert toy.resolved_pretrain == "sum" and toy.loss_options == {"w": 0.25}
        s = run_suite(
            suite,
            out_dir=tmp_path / "out",
            progress=False,
            log=lambda s: None,
            overrides=["suite.seeds=[0]", "evaluation.latency=false"],
        )
        assert s.done == 2 and not s.failed
        rec = next(r for r in ResultStore(tmp_path / "out").iter_runs() if r.variant == "toy")
        assert rec.loss == "toy-last-two" and rec.training is not None
        assert rec.training.pretrain_steps > 0  # its declared default pre-training ran
        bad = tmp_path / "bad.toml"
        bad.write_text(suite.read_text().replace("w = 0.25", "v = 0.25"))
        with pytest.raises(ValueError, match=r"loss_options.v: unknown key.*allowed: w"):
            load_suite(bad)
    finally:
        LOSSES.unregister("toy-last-two")


# --------------------------------------------------------------------------- firm-gated end to end


def test_firm_gated_runs_end_to_end_with_harness_costs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, dict] = {}
    real = training.build_loss

    def spy(name, options=None, **kw):
        seen[name] = dict(options or {})
        return real(name, options, **kw)

    monkeypatch.setattr(training, "build_loss", spy)
    suite = tmp_path / "fg.toml"
    suite.write_text(
        TINY.replace(
            'name = "firm-p2"\nloss = "firm"\nexits = ["p2"]', 'name = "fg"\nloss = "firm-gated"\nexits = ["p1", "p2"]'
        )
    )
    s = run_suite(
        suite,
        out_dir=tmp_path / "out",
        progress=False,
        log=lambda s: None,
        overrides=["suite.seeds=[0]", "evaluation.latency=false"],
    )
    assert s.done == 2 and not s.failed
    rec = next(r for r in ResultStore(tmp_path / "out").iter_runs() if r.variant == "fg")
    assert rec.config["job"]["pretrain"]["loss"] == "sum"  # firm-gated's declared default
    costs = seen["firm-gated"]["exit_costs"]  # computed by the harness from counted MACs: C_l / C_L
    per_exit = [c.macs for c in rec.cost.per_exit]
    assert costs == pytest.approx([m / per_exit[-1] for m in per_exit]) and costs[-1] == 1.0
    assert rec.training.total_steps == rec.training.steps + rec.training.pretrain_steps
    assert rec.cost.unsupported == {}  # recorded: every operator of the study CNN has a formula


# --------------------------------------------------------------------------- bad run files


def test_corrupt_and_old_run_files_are_named_and_skipped(tmp_path: Path) -> None:
    suite = tmp_path / "t.toml"
    suite.write_text(TINY)
    out = tmp_path / "out"
    overrides = ["suite.seeds=[0]", "evaluation.latency=false"]
    run_suite(suite, out_dir=out, progress=False, log=lambda s: None, overrides=overrides)
    store = ResultStore(out)
    base, firm = sorted(store.iter_runs(), key=lambda r: r.variant)
    store.run_path(base.variant, base.key).write_text('{"schema": 1, "key": ')  # truncated
    old = base.to_json() | {"schema": 0}
    store.run_path(firm.variant, firm.key).write_text(json.dumps(old))
    with pytest.raises(StoreError, match="schema 0 is not one this code reads"):
        RunRecord.from_json(old, "old.json")
    logs: list[str] = []
    s = run_suite(suite, out_dir=out, progress=False, log=logs.append, overrides=overrides)
    assert s.done == 2 and len(s.problems) == 2  # both rerun, and said so
    assert any("not valid JSON" in line for line in logs) and any("schema 0" in line for line in logs)
    # a report over a folder with a bad file names it and goes on
    (out / "runs" / "base" / "junk.json").write_text("not json")
    results = load_results(out)
    assert len(results.records) == 2 and len(results.problems) == 1
    write_report(out, log=lambda s: None)
    assert "unreadable run file skipped" in (out / "report.md").read_text()


def test_record_round_trip_keeps_field_order() -> None:
    path = next((REPO / "tests" / "fixtures" / "results_a" / "runs").glob("*/*.json"))
    data = json.loads(path.read_text())
    rec = RunRecord.from_json(data, str(path))
    assert rec.schema == SCHEMA_VERSION and rec.ok
    upgraded = upgrade(data)  # a schema-1 fixture: the migration names the eager runtime of its latency entries
    assert rec.to_json() == upgraded and list(rec.to_json()) == list(data)
    assert dataclasses.replace(rec, latency=None).to_json().keys() == data.keys() - {"latency"}


# --------------------------------------------------------------------------- inference copies


@pytest.mark.parametrize(
    "name, exits", [("study_cnn", ("p2",)), ("study_cnn", ("p1", "p2", "p3")), ("resnet20", ("layer1", "layer2.1"))]
)
def test_optimised_copy_equals_the_model(name: str, exits: tuple[str, ...]) -> None:
    torch.manual_seed(0)
    options = {"channels": (4, 6, 8), "hidden": 16, "dropout": 0.2} if name == "study_cnn" else {"width": 4}
    model = build_model(name, exits=exits, num_classes=10, in_channels=1, input_size=28, **options).eval()
    for m in model.modules():  # trained-looking BN statistics, so folding them matters
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(64, 1, 28, 28)
    fast = optimise_for_inference(model, channels_last=True, example=x[:1])
    bn = [m for seg in fast.exit_segments for m in seg.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert not bn  # BN really folded, in the traced segments too
    # and the slots it left are gone (a module call each at batch 1), the layers around them keep their names
    assert not [
        m
        for s in fast.modules()
        if isinstance(s, torch.nn.Sequential)
        for m in s.children()
        if type(m) is torch.nn.Identity
    ]
    if name == "study_cnn":  # its blocks are Sequentials (ResNet-20's segments are traced graphs, fused by torch.fx)
        folded = {n for n, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
        assert folded and not folded & {n for n, _ in fast.named_modules()}
    kept = {n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
    assert kept <= {n for n, _ in fast.named_modules()}
    # flatten-before-linear in memory order on every head that flattens a map of more than one pixel
    # (study CNN: every exit and the classifier; ResNet-20's heads pool to 1 x 1 first)
    flat = [m for m in fast.modules() if isinstance(m, FlattenChannelsLast)]
    assert len(flat) == (len(exits) + 1 if name == "study_cnn" else 0)
    if flat:  # and it is a view: the head's flatten dispatches no copy (the standard one copies the map)
        xs = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), counting(fast) as prof:
            fast.forward_until(xs, 0)
        with torch.no_grad(), counting(plain := optimise_for_inference(model, channels_last=True)) as ref_prof:
            plain.forward_until(xs, 0)  # NHWC without the example: the standard flatten, a copy
        head_flat = f"exits.{exits[0]}.0"
        assert head_flat not in {r.module for r in prof.layers if r.ops}
        map_elems = {"p1": 4 * 14 * 14, "p2": 6 * 7 * 7}[exits[0]]  # channels (4, 6, 8), 28 -> 14 -> 7
        assert {r.module: r.output_bytes for r in ref_prof.layers}[head_flat] == 4 * xs.shape[0] * map_elems
    with torch.no_grad():
        ref, got = model(x).logits, fast(x.contiguous(memory_format=torch.channels_last)).logits
    for a, b in zip(ref, got):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    # a threshold that splits the batch but sits in the widest gap between confidences of any exit,
    # so float rounding (1e-7) cannot move a sample across it
    conf = torch.cat([F.softmax(z, 1).amax(1) for z in ref[:-1]]).sort().values
    gaps = conf[1:] - conf[:-1]
    inner = (conf[:-1] > conf[len(conf) // 4]) & (conf[1:] < conf[3 * len(conf) // 4])
    i = int(torch.argmax(torch.where(inner, gaps, torch.zeros_like(gaps))))
    assert gaps[i] > 1e-4
    policy = build_policy("max-prob", threshold=float(conf[i] + conf[i + 1]) / 2)
    d_ref, d_fast = dynamic_forward(model, x, policy), dynamic_forward(fast, x, policy)
    assert torch.equal(d_ref.exit_index, d_fast.exit_index) and torch.equal(d_ref.predictions, d_fast.predictions)


def test_large_batches_run_in_cache_sized_slices() -> None:
    torch.manual_seed(0)
    model = build_model("study_cnn", exits=("p1",), num_classes=10, in_channels=1, input_size=28).eval()
    x = torch.randn(200, 1, 28, 28)
    fast = optimise_for_inference(model, channels_last=True, example=x[:1])
    first = fast.exit_segments[0]
    # block 1's largest map: 32 x 28 x 28 floats = 100,352 B per sample; 2 MiB per thread // 100,352 = 20
    # samples per slice on one thread, 41 on two; sliced from 16 MiB, i.e. batch 168 on
    assert isinstance(first, ChunkedSegment) and first.map_bytes == 100_352
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert first.chunk == 20
        torch.set_num_threads(2)
        assert first.chunk == 41
    finally:
        torch.set_num_threads(threads)
    chunk = first.chunk
    calls = []
    hook = first.segment[0][0].register_forward_hook(lambda m, i, o: calls.append(len(i[0])) and None)
    xs = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        got, ref = fast(xs).logits, model(x).logits
        assert calls == [min(chunk, 200 - i) for i in range(0, 200, chunk)] and len(calls) > 1
        calls.clear()
        fast.forward_until(xs[:167], 0)
        assert calls == [167]  # 167 x 100,352 B < 16 MiB: one piece
        calls.clear()
        fast.forward_until(xs[:168], 0)
        assert first.from_batch == 168 and calls == [min(chunk, 168 - i) for i in range(0, 168, chunk)]
    hook.remove()
    for a, b in zip(ref, got):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    unsliced = optimise_for_inference(model, channels_last=True, example=x[:1], chunk=False)
    assert not any(isinstance(s, ChunkedSegment) for s in unsliced.exit_segments)


def test_small_defects_stay_fixed(tmp_path: Path) -> None:
    from bench.config.suite import SuiteError
    from bench.results.store import config_hash

    with pytest.raises(TypeError):  # never hash a repr silently
        config_hash({"x": object()})
    p = tmp_path / "s.toml"
    p.write_text(TINY + 'policy = "patience"\npolicy_options = { patience = 0 }\n')
    with pytest.raises(SuiteError, match=r"variants\[1\] \(firm-p2\)\.policy_options: patience must be >= 1"):
        load_suite(p)
    p.write_text(TINY.replace('loss = "firm"', 'loss = "sum"') + "loss_options = { weights = [1.0] }\n")
    with pytest.raises(SuiteError, match="weights has 1 entries, the model has 2 exits"):
        load_suite(p)
    p.write_text(TINY + "loss_options = { alpha = nan }\n")
    with pytest.raises(SuiteError, match="alpha must be finite"):
        load_suite(p)
    p.write_text(TINY + "[executor]\nname = 'dask'\npartition = 'gpu'\n")
    with pytest.raises(SuiteError, match=r"executor.partition: unknown key.*allowed: name, jobs, address, workers"):
        load_suite(p)
