"""Dynamic exit on a compute-bound backbone: torchvision ResNet-18 at 224 x 224, batch 256, CPU.

    python benchmarks/bench_resnet18.py [--rounds 3]

Exits after layer1 or layer2 (linear heads), threshold at the 30 % quantile of the exit's confidence
(~70 % leave early), on the inference copy (BN folded in the traced segments, NHWC). Prints the
measured speedup (full / dynamic, medians), the MAC-predicted one (full MACs / MACs counted in the
dynamic forward) and their ratio; alternating full and dynamic passes so drift hits both.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torchvision

from bench.measure.cost import counting
from bench.measure.energy import exit_costs
from cascade import attach_exits, build_policy, dynamic_forward
from cascade.inference import optimise_for_inference


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(2)
    out = {}
    for after in ("layer1", "layer2"):
        torch.manual_seed(0)
        net = attach_exits(
            torchvision.models.resnet18(num_classes=10), [after], num_classes=10, input_shape=(3, 224, 224)
        ).eval()
        with torch.no_grad():
            net.exit_heads[0][-1].weight.mul_(30)  # a confidence spread, as training gives
            x = torch.randn(args.batch, 3, 224, 224)
            conf = torch.softmax(net.forward_until(x, 0).logits[0], 1).amax(1)
        policy = build_policy("max-prob", threshold=float(conf.quantile(0.3)))
        fast = optimise_for_inference(net, channels_last=True)
        xs = x.contiguous(memory_format=torch.channels_last)
        full_t, dyn_t = [], []
        with torch.no_grad():
            fast(xs), dynamic_forward(fast, xs, policy)  # warm-up
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                fast(xs)
                full_t.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                res = dynamic_forward(fast, xs, policy)
                dyn_t.append(time.perf_counter() - t0)
            with counting(net) as prof:
                dynamic_forward(net, x, policy)
        full_macs = exit_costs(net, (3, 224, 224), [])[-1].macs
        measured = statistics.median(full_t) / statistics.median(dyn_t)
        predicted = full_macs * len(x) / prof.macs
        out[after] = {
            "early_share": res.early_share,
            "full_s": statistics.median(full_t),
            "dynamic_s": statistics.median(dyn_t),
            "measured_speedup": measured,
            "mac_predicted_speedup": predicted,
            "ratio": measured / predicted,
        }
        print(after, json.dumps(out[after]))


if __name__ == "__main__":
    main()
