"""Per-notebook results records: headline numbers (ours beside the paper's) that the book reads.

One JSON file per (paper, dataset, profile): ``{"paper", "dataset", "profile", "device",
"compute_minutes", "rows": [{"quantity", "ours", "paper", "unit", "note", "status"}]}``.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .cache import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]


STATUSES = ("reproduced", "qualitatively", "not yet", "needs GPU", "needs online data",
            "not in paper")


@dataclass
class Row:
    quantity: str
    ours: float | None
    paper: float | None = None   # None: the paper has no such number (say why in ``note``)
    unit: str = "%"
    note: str = ""
    status: str = ""             # one of STATUSES; see ``status``

    def __post_init__(self):
        if self.status and self.status not in STATUSES:
            raise ValueError(f"status={self.status!r} is not known; accepted values: {list(STATUSES)}")


def status(ours: float | None, paper: float | None, tolerance: float, holds: bool) -> str:
    """How a number compares with the paper's: ``reproduced`` within ``tolerance``,
    ``qualitatively`` when it misses but the paper's claim (``holds``, checked by the notebook)
    still holds, else ``not yet``; ``not in paper`` when the paper has no such number."""
    if paper is None:
        return "not in paper"
    if ours is not None and abs(ours - paper) <= tolerance:
        return "reproduced"
    return "qualitatively" if holds else "not yet"


def results_dir() -> Path:
    """``$WMLIB_RESULTS`` or ``<repo>/build/results``."""
    return Path(os.environ.get("WMLIB_RESULTS", ROOT / "build" / "results"))


def results_path(paper: str, dataset: str, profile: str, folder: Path | None = None) -> Path:
    return Path(folder or results_dir()) / f"{paper}-{dataset}-{profile}.json"


def write(paper: str, dataset: str, profile: str, rows: list[Row], device: str = "",
          compute_minutes: float | None = None, folder: Path | None = None) -> Path:
    """Write the record; ``compute_minutes``: training time of every model it used, cached or not
    (what a run with an empty cache costs)."""
    path = results_path(paper, dataset, profile, folder)
    atomic_write_json({"paper": paper, "dataset": dataset, "profile": profile, "device": device,
                       "compute_minutes": compute_minutes, "rows": [asdict(r) for r in rows]}, path)
    return path


def read(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def read_all(folder: Path | None = None) -> list[dict]:
    return [read(p) for p in sorted(Path(folder or results_dir()).glob("*.json"))]
