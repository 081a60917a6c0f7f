"""Per-notebook results records: headline numbers (ours beside the paper's) that the book reads.

One JSON file per (paper, dataset, profile, seed): ``{"paper", "dataset", "profile", "seed", "ran_on",
"compute_minutes", "rows": [{"quantity", "ours", "paper", "unit", "note", "status", "claim"}]}``.
A row that compares with the paper names its claim (``claims/<paper>.yaml``) and takes the
paper's value from there (:func:`claimed`); a row of ours alone says so (:func:`ours_only`).
"""
from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

from . import claims
from .files import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]

STATUSES = ("reproduced", "qualitatively", "not yet", "different regime", "needs GPU", "needs online data",
            "not in paper", "not claimed at smoke")


@dataclass
class Row:
    quantity: str
    ours: float | None
    paper: float | None = None   # None: the paper has no such number (say why in ``note``)
    unit: str = "%"
    note: str = ""
    status: str = ""             # one of STATUSES; see ``status``
    claim: str = ""              # the claim id in claims/<paper>.yaml ("" for a number of ours alone)

    def __post_init__(self):
        if self.status and self.status not in STATUSES:
            raise ValueError(f"status={self.status!r} is not known; accepted values: {list(STATUSES)}")


def status(ours: float | None, paper: float | None, tolerance: float, holds: bool,
           profile: str = "cpu") -> str:
    """How a number compares with the paper's — the one place the smoke guard lives: at ``smoke``
    nothing is claimed. Else ``reproduced`` within ``tolerance``, ``qualitatively`` when it misses
    but the paper's claim (``holds``, checked by the notebook) still holds, else ``not yet``;
    ``not in paper`` when the paper has no such number."""
    if profile == "smoke":
        return "not claimed at smoke"
    if paper is None:
        return "not in paper" if not holds else "qualitatively"
    if ours is not None and abs(ours - paper) <= tolerance:
        return "reproduced"
    return "qualitatively" if holds else "not yet"


def claimed(paper: str, claim_id: str, ours: float | None, *, holds: bool, profile: str,
            quantity: str | None = None, note: str = "", regime: str = "") -> Row:
    """A row comparing ``ours`` with claim ``claim_id`` of ``paper`` (value, unit and tolerance
    from the claims file). ``holds``: whether the paper's claim holds on our models. ``regime``: why
    the run is not like for like with the paper's (e.g. another σ): the status is then
    ``different regime`` whatever the numbers, and the note says why."""
    c = claims.get(paper, claim_id)
    if regime and profile != "smoke" and not c.not_attempted:
        where = f"{c.table}, {c.where}" if c.table else c.where
        return Row(quantity or c.quantity, ours, c.value, c.unit,
                   "; ".join(s for s in (note, f"different regime: {regime}", where) if s), "different regime",
                   claim=claim_id)
    if c.not_attempted:
        st = "needs online data" if "online" in c.not_attempted else (
            "needs GPU" if "GPU" in c.not_attempted else "not yet")
        st = "not claimed at smoke" if profile == "smoke" else st
    elif c.value is None:
        st = "not claimed at smoke" if profile == "smoke" else ("qualitatively" if holds else "not yet")
    else:
        st = status(ours, c.value, c.tolerance or 0.0, holds, profile)
    where = f"{c.table}, {c.where}" if c.table else c.where
    return Row(quantity or c.quantity, ours, c.value, c.unit,
               "; ".join(s for s in (note, where if c.value is not None else c.statement) if s),
               st, claim=claim_id)


def ours_only(quantity: str, ours: float | None, unit: str, note: str = "") -> Row:
    """A number the paper does not publish (an extra row of ours)."""
    return Row(quantity, ours, None, unit, note, "not in paper")


def ran_on() -> dict:
    """What a run ran on: device, numeric precision, torch version, machine."""
    import torch

    from .device import default_device, precision
    device = default_device()
    return {"device": device.type, "precision": precision(device.type),
            "torch": torch.__version__, "cpu capability": torch.backends.cpu.get_cpu_capability(),
            "machine": platform.machine()}


def results_dir() -> Path:
    """``$WMLIB_RESULTS`` or ``<repo>/build/results``."""
    return Path(os.environ.get("WMLIB_RESULTS", ROOT / "build" / "results"))


def results_path(paper: str, dataset: str, profile: str, folder: Path | None = None, seed: int = 0) -> Path:
    return Path(folder or results_dir()) / f"{paper}-{dataset}-{profile}-seed{int(seed)}.json"


def keys_path(paper: str, dataset: str, profile: str, folder: Path | None = None, seed: int = 0) -> Path:
    """Where a notebook writes its owner's key and the worked example's model files: ``keys/`` beside
    the results folder (``build/executed/keys/adi2018-mnist-cpu-seed0``)."""
    return Path(folder or results_dir()).parent / "keys" / f"{paper}-{dataset}-{profile}-seed{int(seed)}"


def write(paper: str, dataset: str, profile: str, rows: list[Row], *, seed: int = 0,
          compute_minutes: float | None = None, folder: Path | None = None) -> Path:
    """Write the record; ``compute_minutes``: training time of every model it used, cached or not
    (what a run with an empty cache costs). Every claim id is checked against the claims file."""
    from . import data as D
    for r in rows:
        if r.claim:
            claims.get(paper, r.claim)
    path = results_path(paper, dataset, profile, folder, seed)
    atomic_write_json({"paper": paper, "dataset": dataset, "profile": profile, "seed": seed,
                       "ran_on": ran_on(), "data": {dataset: D.source(dataset)},
                       "compute_minutes": compute_minutes, "rows": [asdict(r) for r in rows]}, path)
    return path


def read(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def read_all(folder: Path | None = None) -> list[dict]:
    """Every record in ``folder``, every seed."""
    return [read(p) for p in sorted(Path(folder or results_dir()).glob("*.json"))]


def pages(records: list[dict]) -> list[dict]:
    """One record per (paper, dataset, profile): the lowest seed's, the run the pages show."""
    first: dict[tuple, dict] = {}
    for rec in records:
        k = (rec["paper"], rec["dataset"], rec["profile"])
        if k not in first or rec.get("seed", 0) < first[k].get("seed", 0):
            first[k] = rec
    return list(first.values())
