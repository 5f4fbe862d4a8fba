"""The roofline model piece by piece: each segment and head, measured vs predicted (issue 15).

For the study CNN (exits p1, p2) and ResNet-20 (exits after layer1, layer2) on the timed copy
(``optimise_for_inference`` with an example: BN folded, NHWC, memory-order flatten, batch slices), at
batch 256, times every segment and every head on its real input (median of 9) and prints the
roofline prediction of the same call (:mod:`bench.measure.roofline`, this machine's cached figures), their
ratio, MACs, bytes moved and operators dispatched.

    .venv/bin/python benchmarks/bench_roofline_segments.py       (BENCH_THREADS=1 for one core)
"""

from __future__ import annotations

import functools
import os

import torch

from bench.measure import microbench, roofline
from bench.measure.allocator import keep_freed_memory
from bench.measure.cost import counting
from bench.measure.timing import time_fn
from cascade import StudyCNN, build_model
from cascade.inference import optimise_for_inference

BATCH = 256


@torch.no_grad()
def main() -> None:
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    keep_freed_memory()  # as latency reports time
    machine = microbench.machine("cpu", channels_last=True)
    print(f"threads {torch.get_num_threads()}, batch {BATCH}; measured / predicted per piece")
    cases = {
        "study CNN": (lambda: StudyCNN(exits=("p1", "p2")), (1, 28, 28)),
        "ResNet-20": (lambda: build_model("resnet20", exits=["layer1", "layer2"], num_classes=10), (3, 32, 32)),
    }
    for name, (build, shape) in cases.items():
        torch.manual_seed(0)
        x = torch.randn(BATCH, *shape).contiguous(memory_format=torch.channels_last)
        fast = optimise_for_inference(build().eval(), channels_last=True, example=x[:1])
        h = x
        for level, (segment, head) in enumerate(zip(fast.exit_segments, fast.exit_heads)):
            for piece, module in (("segment", segment), ("head", head)):
                inp = h
                with counting(fast) as prof:
                    out = module(inp)
                prof.samples = BATCH
                if not prof.total("ops"):  # e.g. a backbone whose classifier sits in its last segment
                    print(f"{name} {piece} {level}: dispatches nothing")
                    continue
                predicted = roofline.predict(prof, machine).seconds
                measured = time_fn(functools.partial(module, inp), repeats=9, warmup=2).median
                moved = sum(r.input_bytes + r.weight_bytes + r.output_bytes for r in prof.layers)
                print(
                    f"{name} {piece} {level}: measured {measured * 1e3:8.3f} ms  "
                    f"predicted {predicted * 1e3:8.3f} ms  ratio {measured / predicted:5.2f}  "
                    f"{prof.macs / 1e6:7.1f} M MACs  {moved / 1e6:6.1f} MB  {prof.total('ops')} ops"
                )
                if piece == "segment":
                    h = out


if __name__ == "__main__":
    main()
