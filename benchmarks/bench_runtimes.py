"""Exit-path and cascade latency per runtime (eager, eager optimised, ONNX Runtime) at batch 1 and 256.

    BENCH_THREADS=1 .venv/bin/python benchmarks/bench_runtimes.py

For the study CNN (exits p1, p2), B-LeNet (exit conv1), LeNet (no exit) and ResNet-20 (exits layer1,
layer2), untrained weights with non-trivial batch-norm statistics: the median time per sample of every
exit path (and the MAC rate it reaches, MACs counted as the harness counts them), and of the real
dynamic cascade at a threshold that sends about 70 % of the samples out at
the first exit, with what the exit paths predict for that mix (``path-pred.``: shares x path times;
path-predicted / measured below 1 is the cascade's own overhead: policy, host syncs, index bookkeeping;
``paired``: the median over rounds of each round's ratio, which divides out load that drifts between rounds).
Paths, full network and cascade are timed in the same rounds (bench.measure.latency.time_side_by_side).
Time it alone: other processes on 2 cores distort every number.
"""

from __future__ import annotations

import functools
import os
import statistics
from collections.abc import Callable
from typing import Any

import torch

from bench.measure.cost import counting
from bench.measure.latency import time_side_by_side
from cascade import build_policy
from cascade.exits import dynamic_forward
from cascade.inference import optimise_for_inference
from cascade.models import build_model
from cascade.ort import OrtCascade, SessionSettings

THREADS = int(os.environ.get("BENCH_THREADS", "1"))
REPEATS = {1: 15, 256: 7}  # rounds; a round is one pass over 64 single samples, or 4 calls at batch 256

MODELS = [
    ("study_cnn", {}, ["p1", "p2"], (1, 28, 28)),
    ("branchynet_lenet", {}, ["conv1"], (1, 28, 28)),
    ("branchynet_lenet", {}, [], (1, 28, 28)),
    ("resnet20", {}, ["layer1", "layer2"], (3, 32, 32)),
]


def model_for(name: str, options: dict[str, Any], exits: list[str], shape: tuple[int, ...]) -> Any:
    torch.manual_seed(0)
    model = build_model(name, **options, exits=exits, num_classes=10, in_channels=shape[0], input_size=shape[-1])
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def report(
    label: str,
    runtime: str,
    model: Any,
    policy: Any,
    path: Callable[[Any, int], Any],
    dyn: Callable[[Any, Any], Any],
    data: Any,
    x: torch.Tensor,
) -> None:
    """One runtime of one model: path times and the cascade at batch 1 and 256, one line each, timed side by
    side in the same rounds as the harness times them (bench.measure.latency.time_side_by_side)."""
    last = model.num_exits - 1
    for batch in (1, 256):
        # batch 1: the first 64 samples one by one (one repeated sample runs warmer); 256: the batch, 4 times
        batches = [data[i : i + 1] for i in range(64)] if batch == 1 else [data] * 4
        timed_paths, (cascade,) = time_side_by_side(
            path,
            functools.partial(path, exit_index=last),
            dyn,
            batches,
            [(None, policy)],
            model.exit_names,
            repeats=REPEATS[batch],
            warmup=2,
        )
        paths = [p["per_sample_median"] for p in timed_paths]
        sample = x[:64] if batch == 1 else x
        taken = torch.cat(
            [dynamic_forward(model, sample[i : i + batch], policy).exit_index for i in range(0, len(sample), batch)]
        )
        shares = torch.bincount(taken, minlength=model.num_exits).float() / len(taken)
        predicted = float(sum(s * p for s, p in zip(shares.tolist(), paths)))
        cas = cascade["per_sample_median"]
        # paired: each round's shares x path times over the same round's cascade, the median over rounds
        rounds = zip(*(p["per_batch"]["samples"] for p in timed_paths), cascade["dynamic"]["samples"])
        paired = statistics.median(
            sum(s * t / batch for s, t in zip(shares.tolist(), r[:-1])) / (r[-1] / cascade["samples"]) for r in rounds
        )
        cols = " ".join(f"{1e6 * p:>10.1f}" for p in paths) + " " * 11 * (3 - len(paths))
        rates = " ".join(f"{m / p / 1e9:>5.1f}" for m, p in zip(path_macs(model, x), paths))
        early = 100 * float(shares[:-1].sum())
        print(
            f"{label:<28} {runtime:<16} {batch:>5} {cols} {1e6 * cas:>10.1f} {1e6 * predicted:>10.1f} "
            f"{predicted / cas:>9.2f} {paired:>6.2f} {early:>7.1f}   {rates}",
            flush=True,
        )


@functools.cache
def _macs(model_id: int, model: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for level in range(model.num_exits):
        with counting(model) as prof:
            model.forward_until(torch.zeros(1, *shape), level)
        out.append(prof.macs)
    return tuple(out)


def path_macs(model: Any, x: torch.Tensor) -> tuple[int, ...]:
    """MACs per sample of every exit path (counted at dispatch level, as the harness counts them)."""
    return _macs(id(model), model, tuple(x.shape[1:]))


@torch.no_grad()
def main() -> None:
    torch.set_num_threads(THREADS)
    print(f"threads {THREADS}, torch {torch.__version__}; µs per sample (median of {REPEATS} rounds per batch)")
    header = f"{'model':<28} {'runtime':<16} {'batch':>5} " + " ".join(f"{'path ' + str(i):>10}" for i in range(3))
    print(header + f" {'cascade':>10} {'path-pred.':>10} {'pred/meas':>9} {'paired':>6} {'early %':>7}   GMAC/s")
    for name, options, exits, shape in MODELS:
        model = model_for(name, options, exits, shape)
        x = torch.randn(256, *shape, generator=torch.Generator().manual_seed(1))
        label = f"{name}[{'+'.join(exits) or 'none'}]"
        first = torch.softmax(model.forward_until(x, 0).logits[0], 1).amax(1).sort().values
        policy = build_policy("max-prob", threshold=float(first[int(0.3 * len(first))]))  # ~70 % leave at exit 1
        optimised = optimise_for_inference(model, channels_last=True, example=x)
        ort = OrtCascade.from_model(model, x[:2], SessionSettings(threads=THREADS))
        report(label, "eager", model, policy, model.forward_until, functools.partial(dynamic_forward, model), x, x)
        report(
            label,
            "eager optimised",
            model,
            policy,
            optimised.forward_until,
            functools.partial(dynamic_forward, optimised),
            x.contiguous(memory_format=torch.channels_last),
            x,
        )
        report(label, "onnxruntime", model, policy, ort.forward_until, ort.dynamic, x.numpy(), x)


if __name__ == "__main__":
    main()
