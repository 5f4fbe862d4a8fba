"""Timing, measured energy and provenance; the CUDA half runs only where a GPU is present.

Dynamic exit == masked computation on CUDA is tests/test_exits.py, parametrised by device.
"""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path

import pytest
import torch

import bench.measure.devices as devices
import bench.results.provenance as store
from bench.measure.latency import EnergyMeter, latency_report
from bench.measure.timing import Timing, TimingSettings, time_fn
from bench.results.store import ResultStore
from cascade import StudyCNN, build_policy

from .test_exits import tiny_model

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device (run on a GPU machine)")


def test_timing_summary_matches_statistics() -> None:
    t = Timing([0.4, 0.1, 0.3, 0.2, 0.9], warmup=1, threads=2, device="cpu")
    assert t.median == 0.3
    q = statistics.quantiles(t.samples, n=4, method="inclusive")  # 0.2 and 0.4
    assert t.iqr == pytest.approx(q[2] - q[0]) == pytest.approx(0.2)
    d = t.to_dict()
    assert d["median"] == 0.3 and d["threads"] == 2 and d["warmup"] == 1


def test_time_fn_runs_warmup_plus_repeats() -> None:
    calls = []
    t = time_fn(lambda: calls.append(1), repeats=4, warmup=2)
    assert len(calls) == 6 and len(t.samples) == 4 and t.threads == torch.get_num_threads()


class _FakeCounter:
    """An energy counter that advances ``step`` joules per read (0 = stuck)."""

    def __init__(self, step: float) -> None:
        self.value, self.step = 100.0, step

    def read(self) -> float:
        self.value += self.step
        return self.value


def _meter(step: float) -> EnergyMeter:
    m = EnergyMeter("cpu")
    m._counter, m.source = _FakeCounter(step), "rapl"
    return m


def test_energy_is_per_call_and_repeats_until_min_seconds() -> None:
    calls = []
    reading = _meter(6.0).measure(lambda: calls.append(1), repeats=3)
    assert len(calls) == 3 and reading.joules == pytest.approx(2.0) and reading.source == "rapl"
    calls.clear()
    _meter(6.0).measure(lambda: calls.append(1), repeats=1, min_seconds=0.05)
    assert len(calls) > 1  # a near-instant block is repeated until the counter has had time to move


def test_energy_counter_that_does_not_advance_gives_none_not_zero() -> None:
    reading = _meter(0.0).measure(lambda: None, repeats=2)
    assert reading.joules is None and "did not advance" in reading.reason


def test_unavailable_energy_says_why() -> None:
    m = EnergyMeter("cpu")
    m._counter, m.reason = None, "no RAPL domain"
    r = m.measure(lambda: None)
    assert r.joules is None and r.source == "unavailable" and r.reason == "no RAPL domain"


def test_latency_report_on_cpu_records_threads_and_never_reports_zero_energy() -> None:
    model = tiny_model(("p1",)).float()
    x = torch.randn(64, 1, 28, 28)
    rep = latency_report(
        model,
        x,
        [(0.5, build_policy("max-prob", threshold=0.5))],
        TimingSettings((1, 32), samples_batch1=4, repeats=2, warmup=0),
    )
    assert rep["threads"] == torch.get_num_threads()
    assert {p["batch_size"] for p in rep["exit_paths"]} == {1, 32}
    # the timed copy: every head flattens in memory order; segments would be sliced only at large batches:
    # largest maps 4 x 28 x 28 and 6 x 14 x 14 floats = 12,544 and 4,704 B per sample; slices of 2 MiB per
    # thread // those (167 and 445 samples on one thread); from 16 MiB / those, rounded up
    threads = rep["threads"]
    assert rep["allocator"]["kept"] is (platform.libc_ver()[0] == "glibc")  # bench.measure.allocator.keep_freed_memory
    assert rep["layout"]["flatten_memory_order"] is True
    assert rep["layout"]["segment_slices"] == [
        {"chunk": 2**21 * threads // 12_544, "from_batch": 1338},
        {"chunk": 2**21 * threads // 4_704, "from_batch": 3567},
    ]
    assert rep["load"]["cores"] >= 1 and {"before", "during", "busy"} <= set(rep["load"])
    for c in rep["cascade"]:
        assert c["dynamic"]["median"] > 0 and sum(c["exit_share"]) == pytest.approx(1.0)
        ratios = sorted(f / d for f, d in zip(c["full"]["samples"], c["dynamic"]["samples"]))
        assert c["speedup_vs_full"] == pytest.approx(statistics.median(ratios))  # paired, not median/median
        e = c["measured_energy_joules_per_sample"]
        assert (e is None and c["measured_energy"]["reason"]) or e > 0


def test_commit_from_environment_when_the_copy_has_no_git(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "_git", lambda *a: None)
    monkeypatch.delenv("CASCADE_GIT_COMMIT", raising=False)
    v = store.code_version.__wrapped__()
    assert v["git_commit"] is None and v["git_commit_source"] == "unavailable"
    monkeypatch.setenv("CASCADE_GIT_COMMIT", "abc123\n")
    v = store.code_version.__wrapped__()
    assert v["git_commit"] == "abc123" and v["git_dirty"] is None and v["git_commit_source"] == "env CASCADE_GIT_COMMIT"


def test_commit_from_environment_wins_over_a_stale_git(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "_git", lambda *a: "1111111" if a[0] == "rev-parse" else "")
    monkeypatch.setenv("CASCADE_GIT_COMMIT", "2222222")
    v = store.code_version.__wrapped__()
    assert v["git_commit"] == "2222222" and v["git_commit_local"] == "1111111" and v["git_dirty"] is None
    monkeypatch.delenv("CASCADE_GIT_COMMIT")
    v = store.code_version.__wrapped__()
    assert v["git_commit"] == "1111111" and v["git_dirty"] is False and v["git_commit_source"] == "git"
    assert "git_commit_local" not in v


def test_code_version_is_taken_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    first = store.code_version()
    monkeypatch.setattr(store, "_git", lambda *a: "moved-on")  # the checkout moves while a run goes on
    assert store.code_version() is first and devices.provenance("cpu")["git_commit"] == first["git_commit"]


# --------------------------------------------------------------------------- CUDA


@needs_cuda
def test_cuda_timing_uses_events_and_waits_for_the_work() -> None:
    a = torch.randn(2048, 2048, device="cuda")
    t = time_fn(lambda: a @ a, repeats=3, warmup=1, device="cuda")
    assert t.device == torch.cuda.get_device_name() and min(t.samples) > 0
    # 20 products take longer than 1, which an unsynchronised clock would not see
    t20 = time_fn(lambda: [a @ a for _ in range(20)], repeats=3, warmup=1, device="cuda")
    assert t20.median > 5 * t.median


@needs_cuda
def test_cuda_latency_report_and_nvml_energy() -> None:
    pytest.importorskip("pynvml", reason="nvidia-ml-py not installed")
    torch.manual_seed(0)
    model = StudyCNN(exits=("p1",)).cuda().eval()
    x = torch.randn(512, 1, 28, 28, device="cuda")
    rep = latency_report(
        model,
        x,
        [(0.6, build_policy("max-prob", threshold=0.6))],
        TimingSettings((1, 256), samples_batch1=16, repeats=3, warmup=1),
    )
    assert rep["device"] == torch.cuda.get_device_name()
    assert rep["layout"]["channels_last"] is False
    assert rep["measured_energy_source"] == "nvml", rep["measured_energy_reason"]
    for c in rep["cascade"]:
        assert c["measured_energy_joules_per_sample"] is not None and c["measured_energy_joules_per_sample"] > 0


@needs_cuda
def test_cuda_run_end_to_end(tmp_path: Path) -> None:
    from bench.execute.runner import run_suite

    from .tiny import TINY

    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY.replace("seeds = [0, 1]", 'seeds = [0]\ndevice = "cuda"'))
    summary = run_suite(suite, out_dir=tmp_path / "out", progress=False, log=lambda s: None)
    assert summary.done == 2 and not summary.failed
    rec = next(iter(ResultStore(tmp_path / "out").latest_runs()))
    assert rec.provenance["device"] == "cuda"
    assert rec.provenance["device_name"] == torch.cuda.get_device_name()
    assert rec.latency.device == torch.cuda.get_device_name()


def test_time_pair_alternates_and_load_monitor_arithmetic() -> None:
    from bench.measure.latency import LoadMonitor
    from bench.measure.timing import time_pair

    calls: list[str] = []
    a, b = time_pair(lambda: calls.append("a"), lambda: calls.append("b"), repeats=3, warmup=0)
    assert calls == ["a", "b", "b", "a", "a", "b"]  # ABBA...: drift hits both sides alike
    assert len(a.samples) == len(b.samples) == 3
    mon = LoadMonitor(threads=2)
    mon.cores = 2
    assert mon._others_cores(50.0, 80.0) == pytest.approx(0.2)  # 1 core busy machine-wide, 0.8 of it ours
    assert mon._others_cores(10.0, 100.0) == 0.0  # never negative
    mon.limit = 0.25
    quiet = {"others_cores": 0.1, "loadavg_1min": 0.5}
    assert not mon.summary(quiet, quiet)["busy"]
    assert mon.summary(quiet, {"others_cores": 0.9, "loadavg_1min": 2.0})["busy"]


def test_paths_full_and_cascades_are_timed_side_by_side(monkeypatch: pytest.MonkeyPatch) -> None:
    """Paths, the full network and every threshold's cascade are timed on the same batches in the same rounds
    (A B C D, D C B A, ...); per_batch is each pass divided by its batches; the speedup is the median of the
    per-round ratios full / cascade."""
    from bench.measure import latency

    seen: list[tuple[str, int]] = []
    policies = [(0.5, "pol-a"), (0.9, "pol-b")]
    # (start, end) of each pass: round 1 path0 1, path1 2, full 1, pol-a 3, pol-b 1; round 2 in reverse order
    # pol-b 2, pol-a 1, full 2, path1 3, path0 1
    ticks = iter([0, 1, 1, 3, 3, 4, 4, 7, 7, 8, 8, 10, 10, 11, 11, 13, 13, 16, 16, 17])
    monkeypatch.setattr(latency.time, "perf_counter", lambda: float(next(ticks)))
    paths, cascades = latency.time_side_by_side(
        lambda xb, level: seen.append((f"path{level}", len(xb))),
        lambda xb: seen.append(("full", len(xb))),
        lambda xb, policy: seen.append((policy, len(xb))),
        [torch.zeros(2), torch.zeros(2), torch.zeros(1)],
        policies,  # type: ignore[arg-type]
        ["p1", "final"],
        repeats=2,
        warmup=1,
    )
    passes = [[(name, n) for n in (2, 2, 1)] for name in ("path0", "path1", "full", "pol-a", "pol-b")]
    forward = [step for p in passes for step in p]
    backward = [step for p in reversed(passes) for step in p]
    assert seen == forward + forward + backward  # warm-up, then rounds in order and reversed
    assert [p["exit"] for p in paths] == ["p1", "final"] and paths[0]["batch_size"] == 2
    assert paths[0]["per_batch"]["samples"] == [pytest.approx(1 / 3), pytest.approx(1 / 3)]
    assert paths[1]["per_batch"]["samples"] == [pytest.approx(2 / 3), pytest.approx(1.0)]
    assert [c["threshold"] for c in cascades] == [0.5, 0.9] and cascades[0]["samples"] == 5
    assert cascades[0]["full"]["samples"] == [1.0, 2.0] and cascades[0]["dynamic"]["samples"] == [3.0, 1.0]
    assert cascades[0]["speedup_vs_full"] == pytest.approx((1 / 3 + 2 / 1) / 2)  # median of two ratios
    assert cascades[0]["per_sample_median"] == pytest.approx(2.0 / 5)


def test_load_monitor_sees_another_process_burning_cpu() -> None:
    import subprocess
    import sys

    from bench.measure.latency import LoadMonitor

    burner = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 3: pass"])
    try:
        time.sleep(0.3)
        before = LoadMonitor().before(window=0.6)
    finally:
        burner.kill()
        burner.wait()
    assert before["others_cores"] > 0.5  # one busy loop is about one core


def test_report_warns_about_busy_timing(tmp_path) -> None:
    import dataclasses

    from bench.analyse.load import load_results
    from bench.analyse.tables import warnings_for

    from .conftest import REPO

    res = load_results(REPO / "tests" / "fixtures" / "results_a")
    rec = res.records[0]
    assert rec.latency is not None
    load = {
        "cores": 2,
        "threads": 2,
        "busy_limit_cores": 0.25,
        "busy": True,
        "before": {"others_cores": 1.1, "loadavg_1min": 3.0},
        "during": {"others_cores": 0.9, "loadavg_1min": 3.2},
    }
    res.records[0] = dataclasses.replace(rec, latency=dataclasses.replace(rec.latency, load=load))
    msgs = [w for w in warnings_for(res) if "busy machine" in w]
    assert msgs == [
        f"{rec.variant} seed {rec.seed}: latency timed on a busy machine (other processes used 1.10 cores "
        "before and 0.90 during timing, limit 0.25; load average 3.2); its latency and speedup are not "
        "the model's: rerun it on a quiet machine"
    ]


def test_a_full_network_timed_apart_from_its_last_exit_path_is_flagged_in_the_record_the_report_and_the_run_log() -> (
    None
):
    """The full network and its last exit's path are one computation timed in the same rounds: where their times
    per sample differ by more than 10 %, the record names the runtime and batch size, the report sums the folder
    up in one warning and the run's log warns. Hand-made timings: eager batch 1 120 against 100 µs (+20 %,
    flagged), eager batch 256 10.5 against 10 (+5 %, not), ONNX Runtime batch 1 89 against 100 (-11 %, flagged)."""
    import dataclasses

    from bench.analyse.load import load_results
    from bench.analyse.tables import warnings_for
    from bench.execute.runner import RunSummary, _collect
    from bench.results.record import CascadeTiming, PathTiming

    from .conftest import REPO

    def cascade(batch: int, samples: int, full: float, threshold: float, runtime: str = "eager") -> CascadeTiming:
        return CascadeTiming(
            threshold=threshold,
            batch_size=batch,
            samples=samples,
            dynamic={"median": 1.0},
            full={"median": full * samples},
            per_sample_median=1.0 / samples,
            speedup_vs_full=1.0,
            runtime=runtime,
        )

    paths = [
        PathTiming("p1", 1, {}, 50e-6),
        PathTiming("final", 1, {}, 100e-6),
        PathTiming("p1", 256, {}, 5e-6),
        PathTiming("final", 256, {}, 10e-6),
        PathTiming("p1", 1, {}, 40e-6, runtime="onnxruntime"),
        PathTiming("final", 1, {}, 100e-6, runtime="onnxruntime"),
    ]
    cascades = [
        cascade(1, 200, 120e-6, 0.5),
        cascade(1, 200, 120e-6, 0.9),
        cascade(256, 4096, 10.5e-6, 0.5),
        cascade(1, 200, 89e-6, 0.5, "onnxruntime"),
    ]
    res = load_results(REPO / "tests" / "fixtures" / "results_a")
    rec = res.records[0]
    assert rec.latency is not None
    latency = dataclasses.replace(rec.latency, exit_paths=paths, cascade=cascades, runtimes={"onnxruntime": {}})
    gaps = latency.twin_gaps()
    assert [(g["runtime"], g["batch_size"], g["exit"]) for g in gaps] == [
        ("eager", 1, "final"),
        ("onnxruntime", 1, "final"),
    ]
    assert [round(g["ratio"], 6) for g in gaps] == [1.2, 0.89]
    assert latency.twin_gaps(tolerance=0.25) == []
    assert len(latency.twin_gaps(tolerance=0.04)) == 3  # the 5 % one too

    res.records[:] = [dataclasses.replace(rec, latency=latency)]
    noise = [w for w in warnings_for(res) if w.startswith("latency noise")]
    assert noise == [
        f"latency noise: in 2 of 3 timings (run x runtime x batch size) the full network and its last "
        f"exit's path, the same computation, differ by more than 10% ({rec.variant} seed {rec.seed} eager "
        f"batch 1: 120.0 against 100.0 µs per sample (+20.0%); {rec.variant} seed {rec.seed} onnxruntime "
        "batch 1: 89.0 against 100.0 µs per sample (-11.0%)): the machine's speed changed while they "
        "were timed, so those latencies and speedups are in doubt: rerun them alone"
    ]

    lines: list[str] = []
    _collect(RunSummary(REPO, 1), {"variant": "sum", "seed": 3, "status": "ok", "twin_gaps": gaps}, lines.append)
    assert lines == [
        "warning: sum seed 3: the full network and its last exit's path, the same computation, timed more "
        "than 10% apart (eager batch 1: 120.0 against 100.0 µs per sample (+20.0%); onnxruntime batch 1: "
        "89.0 against 100.0 µs per sample (-11.0%)): the machine's speed changed while it was timed, so "
        "those latencies and speedups are in doubt: rerun it alone"
    ]


def test_a_timing_budget_stops_adding_rounds_and_says_so() -> None:
    import time

    from bench.measure.timing import TimingBudget, time_rounds

    calls: list[int] = []
    timings = time_rounds([lambda: calls.append(0)], repeats=5, warmup=0, deadline=time.perf_counter() - 1)
    assert len(timings[0].samples) == 1 and len(calls) == 1  # the first round always runs, no second starts
    assert len(time_rounds([lambda: None], repeats=5, warmup=0, deadline=None)[0].samples) == 5
    budget = TimingBudget(10.0, stages=4)
    first = budget.deadline()
    assert first is not None and 2.4 < first - time.perf_counter() <= 2.5  # a quarter of what is left
    budget.finish("eager", 1, rounds=2, asked=5)
    budget.finish("eager", 256, rounds=5, asked=5)
    assert budget.stopped == [{"runtime": "eager", "batch_size": 1, "rounds": 2, "asked": 5}]
    assert TimingBudget(None, 2).deadline() is None


def test_a_run_records_its_timing_budget_and_the_report_names_a_stop(tmp_path: Path) -> None:
    from bench.analyse.load import load_results
    from bench.analyse.tables import warnings_for
    from bench.execute.runner import run_suite
    from bench.results.store import ResultStore

    from .tiny import runtime_suite

    suite = tmp_path / "s.toml"
    suite.write_text(runtime_suite(evaluation={"runtimes": None, "latency_budget_s": 0.001, "latency_repeats": 4}))
    assert run_suite(suite, out_dir=tmp_path / "out", progress=False, log=lambda s: None, checkpoint_cache=False).ok
    (rec,) = ResultStore(tmp_path / "out").latest_runs()
    assert rec.latency.budget["seconds"] == 0.001
    assert [(s["batch_size"], s["rounds"], s["asked"]) for s in rec.latency.budget["stopped"]] == [
        (1, 1, 4),
        (32, 1, 4),
    ]
    assert all(len(c.dynamic["samples"]) == 1 for c in rec.latency.cascade)
    warnings = warnings_for(load_results(tmp_path / "out"))
    assert any(
        "latency timing stopped at its budget (0 s) after 1 of 4 repeats (eager, batch 1)" in w for w in warnings
    )
