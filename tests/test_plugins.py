"""Bring your own code: models and losses registered in a user's file, usable from the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.results.store import ResultStore

from .tiny import TINY

PLUGIN = """
import torch
from torch import nn
from cascade import MultiExitModel
from cascade.models import MODELS


class TinyMLP(MultiExitModel):
    example_exits = ("hidden",)

    def __init__(self, *, exits=(), num_classes=10, in_channels=1, input_size=28, width=16):
        super().__init__()
        self.num_classes = num_classes
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * input_size * input_size, width), nn.ReLU())
        self.out = nn.Linear(width, num_classes)
        self.exits = nn.ModuleDict({"hidden": nn.Linear(width, num_classes)} if "hidden" in exits else {})
        self._segments = [self.body, nn.Identity()] if exits else [self.body]
        self._heads = [self.exits["hidden"], self.out] if exits else [self.out]
        self.exit_names = (*exits, "final")

    def exit_parameter_prefixes(self):
        return ("exits.",)


MODELS.register("plugin_mlp")(TinyMLP)
"""


def _suite(tmp_path: Path, plugins: str = "") -> Path:
    text = TINY.replace("[model]\nchannels = [4, 8, 8]\nhidden = 16\n", '[model]\nname = "plugin_mlp"\nwidth = 8\n')
    text = text.replace('exits = ["p2"]', 'exits = ["hidden"]').replace("seeds = [0, 1]", f"seeds = [0]{plugins}")
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True)


def test_plugins_from_the_command_line_and_the_suite(tmp_path: Path, capsys) -> None:
    from bench.cli import main
    from cascade.models import MODELS

    (tmp_path / "mymodels.py").write_text(PLUGIN)
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    suite = _suite(tmp_path)
    try:
        if "plugin_mlp" not in MODELS:
            assert main(["validate", str(suite)]) == 2
            assert "unknown model 'plugin_mlp'" in capsys.readouterr().err
        assert main(["validate", str(_suite(tmp_path, '\nplugins = ["missing.py"]'))]) == 2
        err = capsys.readouterr().err
        assert "suite.plugins[0]: plugin" in err and "no such file" in err
        assert main(["validate", str(_suite(tmp_path)), "--import", str(tmp_path / "broken.py")]) == 2
        err = capsys.readouterr().err
        assert "--import: plugin" in err and "RuntimeError: boom" in err
        # relative to the suite file; importing the same file twice registers once
        assert main(["validate", str(_suite(tmp_path, '\nplugins = ["mymodels.py"]'))]) == 0
        assert main(["validate", str(_suite(tmp_path)), "--import", str(tmp_path / "mymodels.py")]) == 0
    finally:
        if "plugin_mlp" in MODELS:
            MODELS.unregister("plugin_mlp")


def test_pool_workers_import_the_plugin(tmp_path: Path) -> None:
    (tmp_path / "mymodels.py").write_text(PLUGIN)
    suite = _suite(tmp_path)
    # two pool workers start bare (spawn): each imports the plugin again before its run
    r = _bench(
        "run",
        str(suite),
        "--import",
        str(tmp_path / "mymodels.py"),
        "--out",
        str(tmp_path / "out"),
        "--jobs",
        "2",
        "--no-progress",
        "--no-report",
        "--set",
        "evaluation.latency=false",
    )
    assert r.returncode == 0, r.stderr
    recs = list(ResultStore(tmp_path / "out").iter_runs())
    assert len(recs) == 2 and all(rec.ok for rec in recs)
    assert recs[0].config["plugins"] == [str((tmp_path / "mymodels.py").resolve())]
