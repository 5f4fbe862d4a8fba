"""Trainer throughput vs a minimal hand-written PyTorch loop (same model, data, optimiser, threads).

    python benchmarks/bench_train.py [--samples 12800] [--rounds 5] [--threads 2]

Data: real MNIST when $CASCADE_DATA_DIR holds it, else random 28x28 images (throughput
does not depend on pixel values). The two loops run alternately (A B A B ...) so that
machine drift hits both; the ratio of medians is reported. Target: >= 0.95.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F

from cascade import StudyCNN, TrainConfig, build_loss, train
from cascade.data import DataSplits, Split, load_dataset


def data(samples: int) -> tuple[DataSplits, str]:
    root = os.environ.get("CASCADE_DATA_DIR")
    if root and os.path.isfile(os.path.join(root, "MNIST", "raw", "train-images-idx3-ubyte")):
        d = load_dataset("mnist", root=root, download=False, train_size=samples)
        return d, "mnist"
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(samples, 1, 28, 28, generator=g), torch.randint(0, 10, (samples,), generator=g)
    empty = Split(x[:0], y[:0])
    return DataSplits("random", Split(x, y), empty, empty, 10), "random"


def trainer_epoch(d: DataSplits, seed: int) -> float:
    torch.manual_seed(seed)
    model = StudyCNN()
    t0 = time.perf_counter()
    train(model, build_loss("base"), d, TrainConfig(epochs=1), seed=seed, evaluate=False)
    return len(d.train) / (time.perf_counter() - t0)


def hand_epoch(d: DataSplits, seed: int) -> float:
    torch.manual_seed(seed)
    model = StudyCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.5)
    x, y = d.train.x, d.train.y
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    model.train()
    perm = torch.randperm(len(y), generator=gen)
    for i in range(0, len(y), 64):
        idx = perm[i : i + 64]
        loss = F.cross_entropy(model(x[idx]).logits[-1], y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return len(y) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=12800)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    d, source = data(args.samples)
    d = dataclasses.replace(d, val=Split(d.val.x[:0], d.val.y[:0]), test=Split(d.test.x[:0], d.test.y[:0]))
    hand_epoch(d, 0)  # warm-up (allocator, kernels)
    trainer, hand = [], []
    for r in range(args.rounds):
        trainer.append(trainer_epoch(d, r))
        hand.append(hand_epoch(d, r))
    result = {
        "data": source,
        "samples_per_round": len(d.train),
        "threads": torch.get_num_threads(),
        "trainer_samples_per_s": statistics.median(trainer),
        "hand_loop_samples_per_s": statistics.median(hand),
        "ratio_trainer_over_hand": statistics.median(trainer) / statistics.median(hand),
        "ratio_per_round": [a / b for a, b in zip(trainer, hand)],
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
