"""rich progress bars for runs and epochs (private: the CLI and executors use it)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cascade.train import EpochRecord, TrainCallback


class RichProgress(TrainCallback):
    """Two bars: runs of the suite, and batches of the current epoch."""

    def __init__(self, total_runs: int, *, enabled: bool = True, console: Console | None = None) -> None:
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            disable=not enabled,
            transient=False,
        )
        self.runs = self.progress.add_task("runs", total=total_runs)
        self.epoch = self.progress.add_task("epoch", total=1, visible=False)
        self.last_val: str = ""

    def __enter__(self) -> RichProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def start_run(self, label: str) -> None:
        self.progress.update(self.runs, description=f"runs  [bold]{escape(label)}[/]")

    def end_run(self) -> None:
        self.progress.advance(self.runs)
        self.progress.update(self.epoch, visible=False)

    def on_batch(self, epoch: int, batch: int, num_batches: int) -> None:
        if batch == 1 or batch % 20 == 0 or batch == num_batches:
            self.progress.update(
                self.epoch,
                total=num_batches,
                completed=batch,
                visible=True,
                description=f"epoch {epoch + 1}{self.last_val}",
            )

    def on_epoch_end(self, record: EpochRecord) -> None:
        if record.val_accuracy:
            accs = "/".join(f"{a:.1%}" for a in record.val_accuracy)
            self.last_val = f" (val {accs})"
