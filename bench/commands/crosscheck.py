"""``bench crosscheck``: our energy model against ZigZag on AlexNet conv1 and the study CNN (``[crosscheck]`` extra)."""

from __future__ import annotations

import argparse

from bench.measure import crosscheck


def main(args: argparse.Namespace) -> int:
    return crosscheck.main()
