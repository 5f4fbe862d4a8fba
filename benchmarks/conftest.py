from __future__ import annotations

import os

import torch

torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))  # BENCH_THREADS=1: one core, e.g. beside other work
