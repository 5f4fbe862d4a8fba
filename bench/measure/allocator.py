"""The allocator set-up before anything is timed: glibc keeps freed memory.

Applied by :mod:`bench.measure.latency` and :func:`bench.measure.microbench.measure_machine` before any
timing, and recorded in each run's ``latency.allocator``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from typing import Any

KEEP_ENV = "CASCADE_KEEP_FREED_MEMORY"
# glibc's mallopt parameters
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
_TOP_PAD = 64 << 20
_KEPT: dict[str, Any] = {}


def keep_freed_memory() -> dict[str, Any]:
    """Stop glibc's malloc from handing freed memory back to the OS, for timing (process-wide, for good).

    By default glibc serves allocations of 32 MiB and more with fresh ``mmap`` pages and trims freed
    memory at the top of the heap, so the large activations of a forward pass are page-faulted in
    again on every call (what that cost: docs/measurements.md).
    PyTorch's CPU performance guide recommends jemalloc or tcmalloc for this reason; this is glibc's
    equivalent (``mallopt``: no ``mmap`` allocations, no trimming,
    64 MiB top pad), applied before anything is timed or the roofline is measured. Memory freed
    afterwards stays with the process (its peak RSS is kept). ``CASCADE_KEEP_FREED_MEMORY=0`` leaves
    the allocator alone. Returns what was done, for the run's provenance.
    """
    if _KEPT:
        return dict(_KEPT)
    if os.environ.get(KEEP_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return {"kept": False, "reason": f"{KEEP_ENV}=0"}
    if platform.libc_ver()[0] != "glibc":
        return {"kept": False, "reason": f"allocator not glibc ({platform.system()})"}
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    settings = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_TOP_PAD, _TOP_PAD))
    done = [libc.mallopt(param, value) for param, value in settings]
    if not all(done):
        return {"kept": False, "reason": f"mallopt refused ({done})"}
    _KEPT.update(
        kept=True, allocator=f"glibc {platform.libc_ver()[1]}", mmap_max=0, trim_threshold=2**31 - 1, top_pad=_TOP_PAD
    )
    return dict(_KEPT)
