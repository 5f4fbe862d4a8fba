from __future__ import annotations

import os

import torch

from bench.measure.allocator import keep_freed_memory

keep_freed_memory()  # as latency reports time: large activations are not page-faulted in again on every call
torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))  # BENCH_THREADS=1: one core, e.g. beside other work
