"""Typed settings: the base every paper's settings build on, the profiles, and the checks a
profile makes.

Each paper defines frozen dataclasses (``wmlib/papers/<paper>.py``) and one table
``profile → dataset → settings``. Unknown names are rejected with the accepted ones named, so a
misspelt setting never silently becomes a new one. What a profile *asserts* (its
:class:`Targets`) is kept apart from what it only *shows* (``Targets.shown_only``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any

import pandas as pd

from .device import default_device

PROFILES = ("smoke", "cpu", "paper")


def default_profile() -> str:
    """``paper`` on a GPU, ``cpu`` otherwise."""
    return "paper" if default_device().type == "cuda" else "cpu"


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not known; accepted values: {list(PROFILES)}")
    return profile


def _check_names(cls, names) -> None:
    accepted = [f.name for f in fields(cls)]
    unknown = sorted(set(names) - set(accepted))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown setting(s) {unknown}; accepted: {accepted}")


@dataclass(frozen=True)
class Settings:
    """Base of a paper's settings: ``make`` and ``replace`` reject unknown names."""

    @classmethod
    def make(cls, **values):
        _check_names(cls, values)
        return cls(**values)

    def replace(self, **changes):
        _check_names(type(self), changes)
        return dataclasses.replace(self, **changes)

    def table(self) -> pd.DataFrame:
        """The settings as a two-column table for a notebook (targets left out)."""
        rows = {f.name.replace("_", " "): _show(getattr(self, f.name)) for f in fields(self)
                if not isinstance(getattr(self, f.name), Targets)}
        return pd.Series(rows, name="value").to_frame().rename_axis("setting")


def _show(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (tuple, list)):
        return ", ".join(_show(x) for x in v)
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_show(x)}" for k, x in v.items())
    if dataclasses.is_dataclass(v):
        return "; ".join(f"{f.name.replace('_', ' ')} {_show(getattr(v, f.name))}" for f in fields(v))
    return "all" if v is None else str(v)


@dataclass(frozen=True)
class Targets:
    """The floors and ceilings a profile checks (a paper subclasses it with its own fields).

    Every field named in ``shown_only`` is measured and shown but not asserted at that profile
    (the reproduce page says why); at ``smoke`` the targets are sanity bounds only."""

    shown_only: tuple[str, ...] = ()

    def __post_init__(self):
        _check_names(type(self), self.shown_only)

    def asserted(self, name: str) -> bool:
        _check_names(type(self), [name])
        return name not in self.shown_only


class Checks:
    """The checks of one notebook run: each is measured, shown, and asserted unless its target
    is ``shown_only`` at this profile. ``assert_all`` fails on an asserted check that does not hold."""

    def __init__(self, profile: str, targets: Targets):
        self.profile = check_profile(profile)
        self.targets = targets
        self.rows: list[dict] = []

    def add(self, name: str, holds: bool, measured: str, target: str | None = None,
            asserted: bool | None = None) -> bool:
        """Record check ``name``; ``target`` names the field of the targets it is held to (None:
        always asserted); ``asserted`` overrides (a check that is not a target of the paper)."""
        if asserted is None:
            asserted = True if target is None else self.targets.asserted(target)
        self.rows.append({"check": name, "holds": bool(holds), "asserted": asserted,
                          "measured": measured})
        return bool(holds)

    def __getitem__(self, name: str) -> bool:
        for r in self.rows:
            if r["check"] == name:
                return r["holds"]
        raise KeyError(f"no check named {name!r}; checks: {[r['check'] for r in self.rows]}")

    def table(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows, columns=["check", "holds", "asserted", "measured"]).set_index("check")
        df["holds"] = df["holds"].map({True: "yes", False: "no"})
        df["asserted"] = df["asserted"].map({True: "yes", False: "shown only"})
        df.columns.name = f"profile {self.profile}"
        return df

    def assert_all(self) -> None:
        failed = [r for r in self.rows if r["asserted"] and not r["holds"]]
        assert not failed, f"checks at profile {self.profile} failed: {failed}"


def finite(v: float | None) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))
