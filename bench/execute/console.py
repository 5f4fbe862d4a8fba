"""Consoles that suit where the output goes: a terminal's width there, no wrapping in a log or a pipe.

Light on purpose (rich only): the command line imports it before it knows which command runs.
"""

from __future__ import annotations

import sys

from rich.console import Console

#: Width of a console that does not write to a terminal (a log, a pipe): wide enough that rich never
#: wraps a table cell, which would split numbers across lines (rich's default there is 80 columns).
PIPE_WIDTH = 400


def make_console(*, stderr: bool = False) -> Console:
    """A rich console: the terminal's width on a terminal, :data:`PIPE_WIDTH` when piped or redirected."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, soft_wrap=True, width=None if stream.isatty() else PIPE_WIDTH)


def is_live(progress: bool) -> bool:
    """Whether live progress bars are drawn: asked for, and standard error is a terminal."""
    return progress and sys.stderr.isatty()
