"""The machine a run ran on, as its record states it: the device's model name and the run's provenance (the code's
version with the library versions, host, device and thread count)."""

from __future__ import annotations

import platform
import socket
import sys
from typing import Any

import torch

from bench.results.provenance import code_version


def device_name(device: torch.device | str) -> str:
    """The device's model name (GPU name; CPU: the processor string) as timings record it."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def provenance(device: str) -> dict[str, Any]:
    """Where and with what a run ran."""
    dev = torch.device(device)
    return {
        **code_version(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "device": device,
        "device_name": device_name(dev),
        "threads": torch.get_num_threads(),
        "argv": sys.argv,
    }
