"""The data tables a suite names: energy cost per access (``energy_tables/``) and accelerator
descriptions (``hardware/``), shipped by name or given as a TOML path.

They are parsed here, in the configuration layer, so that ``bench validate`` rejects a broken table before
any run; :mod:`bench.measure.cost` and :mod:`bench.measure.dataflow` use the parsed values.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LEVELS = ("dram", "glb", "array", "rf")  # memory levels of every energy table, outermost first
TABLE_DIR = Path(__file__).parent / "energy_tables"
HARDWARE_DIR = Path(__file__).parent / "hardware"


@dataclass(frozen=True)
class Hardware:
    """An accelerator description (``bench/config/hardware/<name>.toml``)."""

    name: str
    word_bits: int
    energy_table: str
    array_rows: int
    array_cols: int
    rf_words: dict[str, int]  # ifmap, filter, psum
    glb_bytes: int

    @property
    def glb_words(self) -> int:
        return self.glb_bytes * 8 // self.word_bits


def shipped_or_path(name_or_path: str | Path, folder: Path, what: str) -> Path:
    """A data file shipped in ``folder`` by name (no suffix), or a path; a clear error names the shipped ones."""
    path = Path(name_or_path)
    if not path.suffix:
        path = folder / f"{name_or_path}.toml"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in folder.glob("*.toml")))
        raise FileNotFoundError(f"{what} {str(name_or_path)!r} not found; shipped: {shipped}")
    return path


def load_hardware(name_or_path: str | Path = "eyeriss") -> Hardware:
    """A shipped accelerator by name (``eyeriss``: 16-bit words, ``eyeriss_fp32``) or a TOML file of that form."""
    path = shipped_or_path(name_or_path, HARDWARE_DIR, "hardware description")
    d = tomllib.loads(path.read_text())
    try:
        hw = Hardware(
            d["name"],
            int(d["word_bits"]),
            d["energy_table"],
            int(d["array"]["rows"]),
            int(d["array"]["cols"]),
            {k: int(v) for k, v in d["rf"].items()},
            int(d["glb"]["bytes"]),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"hardware description {path}: missing or bad key {e}") from None
    if hw.word_bits <= 0 or hw.glb_words < 2:
        raise ValueError(f"hardware description {path}: word_bits must be > 0 and the buffer hold >= 2 words")
    return hw


@dataclass(frozen=True)
class EnergyTable:
    """Cost of one MAC and of one access at each memory level."""

    name: str
    unit: str
    mac: float
    access: dict[str, float]  # level -> cost per element accessed
    description: str = ""

    def __post_init__(self) -> None:
        missing = [lv for lv in LEVELS if lv not in self.access]
        if missing:
            raise ValueError(f"energy table {self.name!r} lacks levels {missing}; needs {', '.join(LEVELS)}")


def load_energy_table(name_or_path: str | Path) -> EnergyTable:
    """A shipped table by name (``eyeriss``, ``horowitz45``) or a TOML file of the same form."""
    path = shipped_or_path(name_or_path, TABLE_DIR, "energy table")
    data = tomllib.loads(path.read_text())
    try:
        return EnergyTable(
            name=str(data.get("name", path.stem)),
            unit=str(data["unit"]),
            mac=float(data["mac"]),
            access={k: float(v) for k, v in data["access"].items()},
            description=str(data.get("description", "")),
        )
    except (KeyError, TypeError) as e:
        raise ValueError(f"energy table {path}: missing or bad key {e}; needs unit, mac and [access]") from None
