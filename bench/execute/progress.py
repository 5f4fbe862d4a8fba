"""rich progress bars for runs and epochs (private: the CLI and executors use it).

Two bars: the suite's runs (with an ETA from the finished runs' wall time per run, shown from the first
finished run on: rich's own estimate needs several updates within 30 s and stays blank for runs that
take minutes), and the current run's phase: the training epoch with the latest validation accuracy of
*this* run, then "evaluating", "counting MACs", "timing latency", or "reused checkpoint".

Without a terminal (a pipe, ``nohup``, CI, ``--no-progress``) there are no bars: one line per finished
run, and while a run trains, a heartbeat line at the end of an epoch once ``HEARTBEAT_SECONDS`` have passed
since the run's start or the last heartbeat, so a log shows that a long run is alive and how far it is.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cascade.training import EpochRecord, TrainCallback

#: Without live bars: the least time between two heartbeat lines of a training run.
HEARTBEAT_SECONDS = 60.0


def format_eta(seconds: float | None) -> str:
    """``ETA 0:03:12``; ``ETA after the first run`` before any run finished."""
    if seconds is None:
        return "ETA after the first run"
    return f"ETA {_dt.timedelta(seconds=round(max(seconds, 0.0)))}"


class RichProgress(TrainCallback):
    """Two bars: runs of the suite, and the phase (epoch batches) of the current run."""

    def __init__(
        self,
        total_runs: int,
        *,
        enabled: bool = True,
        console: Console | None = None,
        clock: Callable[[], float] = time.monotonic,
        line: Callable[[str], None] | None = None,
    ) -> None:
        self.enabled = enabled
        self.clock = clock
        self.line = line  # without live bars: where one line per finished run goes
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            console=console or Console(stderr=True),
            disable=not enabled,
            transient=False,
        )
        self.total = total_runs
        self.finished = 0
        self.t0 = clock()
        self.runs = self.progress.add_task("runs", total=total_runs, eta=format_eta(None))
        self.epoch = self.progress.add_task("epoch", total=1, visible=False, eta="")
        self.last_val: str = ""
        self.label = ""  # the current run's label, for heartbeat lines
        self.phase = ""  # the current phase ("training sum", ...), for heartbeat lines
        self.run_t0 = self.last_beat = self.t0

    def __enter__(self) -> RichProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def eta_seconds(self) -> float | None:
        """Remaining runs x wall time per finished run so far (parallel workers included); None before the first."""
        if not self.finished:
            return None
        return (self.clock() - self.t0) / self.finished * (self.total - self.finished)

    def start_run(self, label: str) -> None:
        self.last_val = ""  # the previous run's accuracy must not show on this run's bar
        self.label, self.phase = label, ""
        self.run_t0 = self.last_beat = self.clock()
        self.progress.update(self.runs, description=f"runs  [bold]{escape(label)}[/]")
        self.progress.update(self.epoch, visible=False, description="", completed=0)

    def end_run(self, result: dict[str, Any] | None = None) -> None:
        self.finished += 1
        self.progress.update(self.runs, advance=1, eta=format_eta(self.eta_seconds()))
        self.progress.update(self.epoch, visible=False)
        if self.line is not None and result is not None:
            self.line(self.finished_line(result))

    def finished_line(self, result: dict[str, Any]) -> str:
        """``[3/8] base seed 0: ok, accuracy 93.12 % at t = 0.6, 12.3 s, ETA 0:01:02`` (logs and pipes)."""
        label = (
            f"{result['variant']} seed {result['seed']}"
            if result.get("variant") is not None
            else f"pre-training {result.get('label') or result.get('key', '?')}"
        )
        status = str(result.get("status", "?"))
        if status in ("ok", "pretrain"):
            what = "ok" if status == "ok" else "pre-trained"
            if result.get("accuracy") is not None:
                what += f", accuracy {100 * result['accuracy']:.2f} % at t = {result.get('threshold')}"
        else:
            what = f"FAILED ({result.get('error') or '?'})"
        secs = f", {result['seconds']:.1f} s" if result.get("seconds") is not None else ""
        if result.get("timing_seconds") and result.get("seconds"):
            secs += f" ({100 * result['timing_seconds'] / result['seconds']:.0f} % timing)"
        return f"[{self.finished}/{self.total}] {label}: {what}{secs}, {format_eta(self.eta_seconds())}"

    def on_phase(self, phase: str) -> None:
        self.last_val = ""  # a new phase (fine-tuning after pre-training) starts without an accuracy
        self.phase = phase
        self.progress.update(self.epoch, description=escape(phase), visible=True, total=None, completed=0)

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
        if self.line is not None and not self.enabled and self.clock() - self.last_beat >= HEARTBEAT_SECONDS:
            self.last_beat = self.clock()
            self.line(self.heartbeat_line(record))

    def heartbeat_line(self, record: EpochRecord) -> str:
        """``    lenet seed 0: training base, epoch 12, loss 0.0412, val 98.90 %, 0:02:03 into the run``."""
        what = ", ".join(x for x in (self.phase, f"epoch {record.epoch}", f"loss {record.train_loss:.4g}") if x)
        if record.val_accuracy:
            what += ", val " + "/".join(f"{100 * a:.2f}" for a in record.val_accuracy) + " %"
        elapsed = _dt.timedelta(seconds=round(self.clock() - self.run_t0))
        return f"    {self.label or 'run'}: {what}, {elapsed} into the run"

    def phase_text(self) -> str:
        """The phase bar's current text (what the user sees on the second line)."""
        task = self.progress.tasks[self.epoch]
        return task.description if task.visible else ""
