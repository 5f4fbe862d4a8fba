"""Cache-sized slices of the batch (issue 15, item 4's cheap win): is each segment faster chunked?

For the study CNN (exits p1, p2) and ResNet-20 (exits after layer1, layer2) on the inference copy
(BN folded, NHWC, memory-order flatten), at batch 256, times every segment on the whole batch and in
slices of 16 / 20 / 32 / 41 / 64 / 128 samples, and the choice :func:`cascade.inference.optimise_for_inference`
makes (``ChunkedSegment``: slices when the segment's largest feature map reaches ``CHUNK_ABOVE``, of
``CHUNK_BYTES`` per thread), then the full forward with and without that choice. Whole and chunked are timed in
alternation (:func:`bench.measure.timing.time_pair`); medians in ms.

    .venv/bin/python benchmarks/bench_chunking.py            (BENCH_THREADS=1 for one core)
"""

from __future__ import annotations

import functools
import os

import torch

from bench.measure.allocator import keep_freed_memory
from bench.measure.timing import time_pair
from cascade import StudyCNN, build_model
from cascade.inference import CHUNK_ABOVE, CHUNK_BYTES, optimise_for_inference

BATCH = 256


def chunked(segment: torch.nn.Module, x: torch.Tensor, size: int) -> torch.Tensor:
    return torch.cat([segment(x[i : i + size]) for i in range(0, len(x), size)])


@torch.no_grad()
def main() -> None:
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    keep_freed_memory()  # as latency reports time
    print(
        f"threads {torch.get_num_threads()}, batch {BATCH}, CHUNK_ABOVE {CHUNK_ABOVE >> 20} MiB, "
        f"CHUNK_BYTES {CHUNK_BYTES >> 20} MiB"
    )
    cases = {
        "study CNN": (lambda: StudyCNN(exits=("p1", "p2")), (1, 28, 28)),
        "ResNet-20": (lambda: build_model("resnet20", exits=["layer1", "layer2"], num_classes=10), (3, 32, 32)),
    }
    for name, (build, shape) in cases.items():
        torch.manual_seed(0)
        model = build().eval()
        x = torch.randn(BATCH, *shape).contiguous(memory_format=torch.channels_last)
        fast = optimise_for_inference(model, channels_last=True, example=x[:1])
        plain = optimise_for_inference(model, channels_last=True, example=x[:1], chunk=False)
        h = x
        for level, wrapper in enumerate(fast.exit_segments):
            seg, inp = wrapper.segment, h
            row = [f"{name} segment {level}: map {wrapper.map_bytes * BATCH / 2**20:5.1f} MiB"]
            for size in (16, 20, 32, 41, 64, 128):
                slices = functools.partial(chunked, seg, inp, size)
                whole, part = time_pair(functools.partial(seg, inp), slices, repeats=7)
                row.append(f"whole {whole.median * 1e3:6.2f}" if size == 16 else "")
                row.append(f"c{size} {part.median * 1e3:6.2f}")
            whole, rule = time_pair(functools.partial(seg, inp), functools.partial(wrapper, inp), repeats=7)
            used = wrapper.chunk if BATCH >= wrapper.from_batch else "-"
            row.append(f"| rule (chunk {used}) {rule.median * 1e3:6.2f} vs whole {whole.median * 1e3:6.2f}")
            print("  ".join(r for r in row if r), flush=True)
            h = seg(inp)
        full_plain, full_fast = time_pair(functools.partial(plain, x), functools.partial(fast, x), repeats=9)
        print(
            f"{name} full forward: unchunked {full_plain.median * 1e3:7.2f} ms, chunked by the rule "
            f"{full_fast.median * 1e3:7.2f} ms ({full_plain.median / full_fast.median:.2f}x)"
        )


if __name__ == "__main__":
    main()
