"""The papers' published numbers, as data: one YAML file per paper in ``claims/``.

Each entry is one number (or one figure-only statement) the paper publishes::

    - id: cifar10.fromscratch.test-acc       # unique within the paper; what notebooks refer to
      where: "slides, 'Functionality' table"  # where in the paper
      table: "Table 1"                       # table or figure, as the paper names it
      dataset: cifar10
      quantity: "FROMSCRATCH test accuracy"
      value: 93.81                           # null for a claim made only in words or a figure
      unit: "%"
      tolerance: 1.5                         # |ours − value| ≤ tolerance counts as reproduced
      statement: ""                          # the claim in words (required when value is null)
      not_attempted: ""                      # why we do not regenerate it (e.g. "needs online data: STL-10")

No notebook types a published number: a results row names a claim by id and takes the value,
unit and tolerance from here (:func:`wmlib.results.claimed`).
"""
from __future__ import annotations

import fnmatch
import functools
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CLAIMS_DIR = ROOT / "claims"
UNITS = ("%", "points", "MR", "CMR", "ℓ2", "R/σ", "of 100", "models", "parameters", "count",
         "correlation", "minutes", "σ")


class UnknownClaim(KeyError):
    pass


@dataclass(frozen=True)
class Claim:
    """One published number (``value``) or statement of a paper."""

    paper: str
    id: str
    where: str
    dataset: str
    quantity: str
    unit: str
    table: str = ""
    value: float | None = None
    tolerance: float | None = None
    statement: str = ""
    not_attempted: str = ""

    def __post_init__(self):
        if self.unit not in UNITS:
            raise ValueError(f"claim {self.paper}:{self.id}: unit={self.unit!r} is not known; "
                             f"accepted values: {list(UNITS)}")
        if self.value is None and not self.statement:
            raise ValueError(f"claim {self.paper}:{self.id} has no value: give its statement")
        if self.value is not None and self.tolerance is None and not self.not_attempted:
            raise ValueError(f"claim {self.paper}:{self.id} has a value but no tolerance")

    @property
    def attempted(self) -> bool:
        return not self.not_attempted


_FIELDS = {f.name for f in fields(Claim)} - {"paper"}


def _parse(paper: str, path: Path) -> dict[str, Claim]:
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict) or doc.get("paper") != paper or not isinstance(doc.get("claims"), list):
        raise ValueError(f"{path}: expected a mapping with 'paper: {paper}' and a list 'claims'")
    out: dict[str, Claim] = {}
    for entry in doc["claims"]:
        unknown = set(entry) - _FIELDS
        if unknown:
            raise ValueError(f"{path}: claim {entry.get('id')!r} has unknown fields {sorted(unknown)}; "
                             f"accepted fields: {sorted(_FIELDS)}")
        value = entry.get("value")
        claim = Claim(paper=paper, **{**entry, "value": None if value is None else float(value)})
        if claim.id in out:
            raise ValueError(f"{path}: claim id {claim.id!r} appears twice")
        out[claim.id] = claim
    return out


@functools.cache
def load(paper: str) -> dict[str, Claim]:
    """Every claim of ``paper`` by id, from ``claims/<paper>.yaml``."""
    path = CLAIMS_DIR / f"{paper}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in CLAIMS_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"no claims file for paper={paper!r} ({path}); papers with one: {known}")
    return _parse(paper, path)


@dataclass(frozen=True)
class Headline:
    """One of a paper's headline claims, over the claims (``fnmatch`` patterns of ids) that decide
    it; ``see``: the notebook section that shows them. The verdict box of the paper's page."""

    paper: str
    id: str
    statement: str
    claims: tuple[str, ...]
    see: str

    def members(self) -> list[Claim]:
        """The claims of the paper the patterns match, in the file's order."""
        return [c for c in load(self.paper).values() if any(fnmatch.fnmatchcase(c.id, p) for p in self.claims)]


@functools.cache
def headlines(paper: str) -> tuple[Headline, ...]:
    """The headline claims of ``paper`` (``headlines:`` in ``claims/<paper>.yaml``); every pattern
    must match a claim, and every claim belong to one headline at least."""
    path = CLAIMS_DIR / f"{paper}.yaml"
    doc = yaml.safe_load(path.read_text()) if path.exists() else None
    entries = (doc or {}).get("headlines") or []
    out = []
    for e in entries:
        if set(e) != {"id", "statement", "claims", "see"}:
            raise ValueError(f"{path}: headline {e.get('id')!r} needs exactly the fields id, statement, claims, see")
        h = Headline(paper, e["id"], e["statement"], tuple(e["claims"]), e["see"])
        for pat in h.claims:
            if not any(fnmatch.fnmatchcase(c, pat) for c in load(paper)):
                raise ValueError(f"{path}: headline {h.id!r}: pattern {pat!r} matches no claim id")
        out.append(h)
    covered = {c.id for h in out for c in h.members()}
    left = [c for c in load(paper) if c not in covered]
    if out and left:
        raise ValueError(f"{path}: claims in no headline: {left}")
    return tuple(out)


def get(paper: str, claim_id: str) -> Claim:
    """The claim ``claim_id`` of ``paper``; an unknown id raises, naming the known ones."""
    claims = load(paper)
    if claim_id not in claims:
        raise UnknownClaim(f"paper {paper!r} has no claim id={claim_id!r}; known ids: {sorted(claims)}")
    return claims[claim_id]


def value(paper: str, claim_id: str) -> float:
    """The published number of a claim (raises if the claim is a statement without a number)."""
    c = get(paper, claim_id)
    if c.value is None:
        raise ValueError(f"claim {paper}:{claim_id} is a statement without a number: {c.statement!r}")
    return c.value
