"""Executors: submitit's local executor and a Dask LocalCluster give the in-process results."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.execute.executors import MissingExtraError, make_executor
from bench.execute.runner import run_suite
from bench.results.store import ResultStore

from .tiny import TINY


def results_of(out: Path) -> dict:
    return {
        (r.variant, r.seed): (
            [t.accuracy for t in r.thresholds],
            [t.early_share for t in r.thresholds],
        )
        for r in ResultStore(out).iter_runs()
    }


@pytest.fixture(scope="module")
def suite_and_reference(tmp_path_factory) -> tuple[Path, dict, Path]:
    d = tmp_path_factory.mktemp("ex")
    suite = d / "tiny.toml"
    suite.write_text(TINY)
    ref = d / "ref"
    threads = torch.get_num_threads()
    torch.set_num_threads(7)  # the driver's own setting must not matter: every run uses the suite's threads
    try:
        run_suite(suite, out_dir=ref, progress=False, log=lambda s: None, overrides=["evaluation.latency=false"])
    finally:
        torch.set_num_threads(threads)
    return suite, results_of(ref), d


def test_submitit_local_executor(suite_and_reference) -> None:
    suite, reference, d = suite_and_reference
    out = d / "submitit"
    s = run_suite(
        suite,
        out_dir=out,
        progress=False,
        log=lambda s: None,
        executor="slurm",
        executor_options={"cluster": "local", "cpus_per_job": 1, "time": 10},  # the CLI's flags
        overrides=["evaluation.latency=false"],
    )
    assert s.done == 4 and not s.failed
    assert results_of(out) == reference
    assert (out / "summary.csv").read_text().count("\n") == 1 + 4 * 3
    assert any((out / "submitit").iterdir())  # submitit's logs live beside the results


def test_dask_local_cluster(suite_and_reference) -> None:
    suite, reference, d = suite_and_reference
    out = d / "dask"
    s = run_suite(
        suite,
        out_dir=out,
        progress=False,
        log=lambda s: None,
        executor="dask",
        executor_options={"workers": 2},
        overrides=["evaluation.latency=false"],
    )
    assert s.done == 4 and not s.failed
    assert results_of(out) == reference
    # a restarted driver skips what is done, whichever engine did it
    again = run_suite(suite, out_dir=out, progress=False, log=lambda s: None, overrides=["evaluation.latency=false"])
    assert again.skipped == 4 and again.done == 0


def test_missing_extra_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def no_submitit(name, *a, **k):
        if name in ("submitit", "distributed"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_submitit)
    with pytest.raises(MissingExtraError, match=r"pip install 'cascade-bench\[slurm\]'"):
        make_executor("slurm")
    with pytest.raises(MissingExtraError, match=r"pip install 'cascade-bench\[dask\]'"):
        make_executor("dask")


def test_unknown_executor_and_bad_jobs() -> None:
    with pytest.raises(KeyError, match="known: dask, local, slurm"):
        make_executor("ray")
    with pytest.raises(ValueError, match="--jobs must be >= 1"):
        make_executor("local", jobs=0)


def test_local_pool_gives_the_in_process_results(suite_and_reference, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two waves (firm-p2 reuses base's checkpoint), one pool: its workers start (import torch) once."""
    import concurrent.futures as cf

    pools: list[cf.ProcessPoolExecutor] = []

    class Counted(cf.ProcessPoolExecutor):
        def __init__(self, *a, **k) -> None:
            super().__init__(*a, **k)
            pools.append(self)

    monkeypatch.setattr(cf, "ProcessPoolExecutor", Counted)
    suite, reference, d = suite_and_reference
    out = d / "pool"
    s = run_suite(
        suite, out_dir=out, progress=False, log=lambda s: None, jobs=2, overrides=["evaluation.latency=false"]
    )
    assert s.done == 4 and results_of(out) == reference
    assert len(pools) == 1
    threads = {r.provenance["threads"] for r in ResultStore(out).iter_runs()}
    assert threads == {2}  # the suite's default, recorded in every run


def test_threads_enter_the_keys_only_when_set(tmp_path: Path) -> None:
    from bench.config.load import load_suite
    from bench.config.plan import expand_runs

    p = tmp_path / "t.toml"
    p.write_text(TINY)
    default = {r.key for r in expand_runs(load_suite(p))}
    assert default == {r.key for r in expand_runs(load_suite(p, ["suite.threads=2"]))}
    assert not default & {r.key for r in expand_runs(load_suite(p, ["suite.threads=1"]))}


def test_executor_from_the_suite_and_flags(tmp_path: Path) -> None:
    from bench.config.load import load_suite
    from bench.config.suite import SuiteError
    from bench.execute.executors import engine_options

    p = tmp_path / "s.toml"
    p.write_text(TINY + '\n[executor]\nname = "slurm"\npartition = "gpu"\ngpus_per_job = 1\ntime = 30\n')
    suite = load_suite(p)
    assert suite.executor.options() == {"time": 30, "gpus_per_job": 1, "cpus_per_job": 2, "partition": "gpu"}
    assert engine_options("slurm", {"partition": "debug", "time": 5}) == {"partition": "debug", "time": 5}
    assert engine_options("dask", {"cluster": "tcp://h:8786"}) == {"address": "tcp://h:8786"}
    with pytest.raises(ValueError, match="--partition does not apply to the dask executor"):
        engine_options("dask", {"partition": "gpu"})
    p.write_text(TINY + '\n[executor]\nname = "ray"\n')
    with pytest.raises(SuiteError, match="executor.name: unknown executor 'ray'.*known: dask, local, slurm"):
        load_suite(p)
