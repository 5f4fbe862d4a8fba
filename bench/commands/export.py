"""``bench export``: a trained run as ONNX segments and heads plus cascade.json, checked against eager."""

from __future__ import annotations

import argparse

from rich.markup import escape

from bench.commands._console import cache_setting, console, folder_trust
from bench.execute.export import export_run


def main(args: argparse.Namespace) -> int:
    summary = export_run(
        args.dir,
        variant=args.variant,
        seed=args.seed,
        out=args.out,
        threshold=args.threshold,
        checkpoint_cache=cache_setting(args.no_cache, args.cache_dir),
        trust=folder_trust(args),
        kind=args.format,
    )
    c = summary.check
    recorded = c["recorded_test_accuracy"]
    against = (
        f" (the run recorded {100 * recorded:.2f} %)"
        if recorded is not None
        else " (a threshold the run did not evaluate)"
    )
    console.print(
        escape(
            f"exported {summary.record.variant} seed {summary.record.seed} -> {summary.out}: "
            f"{', '.join(summary.files)}\n"
            f"check on {c['test_samples']:,} test samples ({ENGINES[args.format]}): "
            f"{c['decisions_differing_from_eager']} decision(s) differ from eager "
            f"({c['of_which_ties']} of them ties within 1e-6); test accuracy "
            f"{100 * summary.test_accuracy:.2f} %{against}; serve it as docs/deploy.md shows"
        ),
        highlight=False,
    )
    return 0


#: what runs an export's check
ENGINES = {"onnx": "ONNX Runtime", "onnx-graph": "ONNX Runtime, one graph", "executorch": "ExecuTorch, batch 1"}
