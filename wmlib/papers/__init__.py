"""The one registry of papers: notebook, datasets per profile, page, settings, claims.

The runner, the book's table of contents check and the tests all derive from :data:`PAPERS`.
A paper's module ``wmlib/papers/<id>.py`` holds its typed settings (``SETTINGS``: profile →
dataset → settings) and the experiment steps its notebook narrates; its published numbers are
in ``claims/<id>.yaml``; its notebook is ``notebooks/<id>.py`` and its page ``book/<id>.md``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from ..settings import PROFILES, check_profile

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Paper:
    id: str
    cite: str            # how the pages name it, e.g. "Adi et al. 2018"
    title: str
    bibkey: str          # its entry in references.bib
    source: str = "paper"   # what we read its claims from ("poster": Tartaglione et al.; "slides": Bansal et al.)
    parts: tuple[str, ...] = ()   # more pages of its chapter: book/<id>-<part>.md, listed before its notebooks

    @property
    def module(self):
        return importlib.import_module(f"{__name__}.{self.id}")

    @property
    def notebook(self) -> Path:
        return ROOT / "notebooks" / f"{self.id}.py"

    @property
    def page(self) -> str:
        return f"book/{self.id}"

    @property
    def part_pages(self) -> tuple[str, ...]:
        """The chapter's other pages (a long paper's studies), in order."""
        return tuple(f"book/{self.id}-{part}" for part in self.parts)

    def datasets(self, profile: str) -> tuple[str, ...]:
        """The datasets this paper runs on at ``profile``."""
        return tuple(self.module.SETTINGS[check_profile(profile)])

    @property
    def book_datasets(self) -> tuple[str, ...]:
        """The datasets with a tab on the paper's page (those of the ``cpu`` profile)."""
        return self.datasets("cpu")

    def settings(self, profile: str, dataset: str):
        table = self.module.SETTINGS[check_profile(profile)]
        if dataset not in table:
            raise ValueError(f"dataset={dataset!r} has no {profile!r} profile for {self.id}; "
                             f"accepted values: {sorted(table)}")
        return table[dataset]


PAPERS: dict[str, Paper] = {p.id: p for p in (
    Paper("adi2018", "Adi et al. 2018",
          "Turning Your Weakness into a Strength: Watermarking Deep Neural Networks by Backdooring",
          "adi2018"),
    Paper("lemerrer2020", "Le Merrer et al. 2020",
          "Adversarial Frontier Stitching for Remote Neural Network Watermarking", "lemerrer2020"),
    Paper("bansal2022", "Bansal et al. 2022", "Certified Neural Network Watermarks with Randomized Smoothing",
          "bansal2022", source="slides"),
    Paper("ipcert2023", "Jiang et al. 2023",
          "IPCert: Provably Robust Intellectual Property Protection for Machine Learning", "jiang2023",
          parts=("file", "voting", "fingerprints")),
    Paper("tartaglione2020", "Tartaglione et al. 2020",
          "Delving in the loss landscape to embed robust watermarks into neural networks", "tartaglione2020",
          source="poster"),
)}


STUDIES: dict[str, Paper] = {p.id: p for p in (
    Paper("matrix", "The five schemes compared", "One evaluation across the five papers: every scheme "
          "against every attack, at one false-claim rate", bibkey="", source="this companion"),
)}
"""Experiments of this companion across the papers: notebooks and pages like a paper's, without claims."""


def get(paper: str) -> Paper:
    if paper not in PAPERS and paper not in STUDIES:
        raise ValueError(f"paper={paper!r} is not known; accepted values: {sorted(PAPERS) + sorted(STUDIES)}")
    return PAPERS.get(paper) or STUDIES[paper]


def settings(paper: str, profile: str, dataset: str):
    """The typed settings of ``paper`` at ``profile`` for ``dataset`` (frozen: safe to share)."""
    return get(paper).settings(profile, dataset)


def pairs(papers=None, datasets=None, profile: str | None = None, studies: bool = True) -> list[tuple[str, str]]:
    """(paper, dataset) pairs: those in the book by default; with ``profile``, every dataset that
    profile defines (e.g. CIFAR-100 at ``paper``). ``papers`` / ``datasets`` select; ``studies``:
    the companion's own experiments (:data:`STUDIES`) too."""
    for p in papers or []:
        get(p)
    pages = [*PAPERS.values(), *(STUDIES.values() if studies else ())]
    out = [(p.id, d) for p in pages if not papers or p.id in papers
           for d in (p.datasets(profile) if profile else p.book_datasets)
           if not datasets or d in datasets]
    if not out:
        known = {p.id: (p.datasets(profile) if profile else p.book_datasets) for p in pages}
        raise ValueError(f"no notebook matches papers={papers} datasets={datasets}"
                         f"{f' at profile {profile}' if profile else ''}; available: {known}")
    return out


__all__ = ["PAPERS", "PROFILES", "STUDIES", "Paper", "get", "pairs", "settings"]
