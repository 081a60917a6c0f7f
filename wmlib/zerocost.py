"""Zero-cost edits against a verification: each function-preserving edit of :mod:`wmlib.attacks`
applied to an owner's model, the edited file verified as the paper reads it and after alignment
(:func:`wmlib.align.aligned`), with what the edit cost the thief (test accuracy, largest output
change, distance moved in the certified space). Also independently trained models aligned to the
owner: alignment must not manufacture a match.

Knows no scheme: a paper passes ``verify``, a function from a model (a :class:`~wmlib.train.Trained`,
so that smoothed verifications can cache by its hash) to a :class:`~wmlib.verdict.Verdict`.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np
import pandas as pd
import torch

from . import attacks, report, units
from . import data as D
from .align import aligned, summary
from .train import Trained, evaluate
from .verdict import Verdict

Verify = Callable[[Trained], Verdict]


def edits(base: Trained, seed: int = 0) -> dict[str, Trained]:
    """Every edit that applies to ``base``'s architecture, by name: permutation of every unit
    group, positive per-unit scales across ReLUs, batch-norm rescaling (every conv × 0.1, its
    running statistics accordingly; models with batch norms only), two dummy units per group of
    each kind (zero, clique, split; Yan et al. 2023), and all of them composed
    (:func:`wmlib.attacks.zero_cost_edit`). A model the unit walk cannot describe (the IRNNs)
    raises ``ValueError``."""
    sites = {s.kind for g in units.describe(base.model) for s in g.sites}
    out = {"permute units": attacks.permute_units(base, seed)}
    if "relu" in sites:
        out["scale units"] = attacks.scale_units(base, seed)
    if "batchnorm" in sites:
        out["rescale batch norm (× 0.1)"] = attacks.rescale_batchnorm(base, 0.1)
    for kind in attacks.DUMMY_KINDS:
        out[f"dummy units ({kind})"] = attacks.add_dummy_units(base, kind, seed=seed)
    out["all of them"] = attacks.zero_cost_edit(base, seed)
    return out


def _verdict_cells(v: Verdict, prefix: str) -> dict:
    return {f"score{prefix}": v.score, f"claimed{prefix}": "yes" if v.passed else "no"}


def verify_after_alignment(verify: Verify, owner: Trained, *, probe: torch.Tensor | None = None,
                           method: str = "weights") -> Verify:
    """``verify`` applied to the suspect aligned to ``owner`` (:func:`wmlib.align.aligned`), the
    verdict saying what alignment did; a suspect that is no transform of the owner's architecture
    is verified as it is, and the verdict says it was not aligned."""
    def run(t: Trained) -> Verdict:
        try:
            a = aligned(t, owner, probe=probe, method=method)
        except ValueError as e:
            return replace(verify(t), alignment=f"not aligned ({e})")
        return replace(verify(a), alignment=summary(a.record["alignment"]))
    return run


def _aligned_cells(v: Verdict) -> dict:
    return {**_verdict_cells(v, ", aligned"), "alignment": v.alignment or "none"}


def study(base: Trained, verify: Verify, test: D.TensorData, *, verify_aligned: Verify | None = None,
          seed: int = 0) -> pd.DataFrame:
    """One row per edit of :func:`edits` (and the unedited file first): test accuracy (%), the
    largest logit change relative to the largest logit, the certified-space distance the file
    moved (blank when the edit changed its shapes), the verdict as the paper reads the file
    (``verify``), and the verdict after alignment to the owner's file (``verify_aligned``;
    default: :func:`verify_after_alignment` of ``verify`` to ``base``), with what alignment did."""
    verify_aligned = verify_aligned or verify_after_alignment(verify, base)
    rows = []
    for name, t in {"none (the owner's file)": base, **edits(base, seed)}.items():
        rec = t.record
        row = {"edit": name, "test accuracy": 100 * evaluate(t, test),
               "largest logit change": (rec["max_logit_change"] / rec["logit_scale"]
                                        if "max_logit_change" in rec else 0.0),
               "distance moved": rec.get("folded_distance", 0.0) if t is not base else 0.0}
        if row["distance moved"] is None:
            row["distance moved"] = np.nan
        v, va = verify(t), verify_aligned(t)
        row.update({"threshold": v.threshold, **_verdict_cells(v, ""), "threshold, aligned": va.threshold,
                    **_aligned_cells(va)})
        rows.append(row)
    return pd.DataFrame(rows).set_index("edit")


def independents(others: dict[str, Trained], verify: Verify, verify_aligned: Verify) -> pd.DataFrame:
    """Independently trained models (never watermarked) verified as they are and after alignment
    to the owner's file: matching units to the owner's pulls their weights towards the owner's,
    so every verification is checked here against its threshold (none may be claimed)."""
    rows = []
    for name, t in others.items():
        v, va = verify(t), verify_aligned(t)
        rows.append({"model": name, "threshold": v.threshold, **_verdict_cells(v, ""),
                     "threshold, aligned": va.threshold, **_aligned_cells(va)})
    return pd.DataFrame(rows).set_index("model")


def erased_and_restored(table: pd.DataFrame) -> dict[str, bool]:
    """What a study's table shows, as findings a page states: ``erased`` — some edit leaves the
    file unclaimed as the paper reads it; ``restored`` — every edit is claimed after alignment;
    ``accuracy kept`` — every edit keeps test accuracy to 0.01 points."""
    edited = table.iloc[1:]
    return {"erased": bool((edited["claimed"] == "no").any()),
            "restored": bool((edited["claimed, aligned"] == "yes").all()),
            "accuracy kept": bool((edited["test accuracy"] - table["test accuracy"].iloc[0]).abs().max() <= 0.01)}


SHORT = {"test accuracy": "test acc. (%)", "largest logit change": "logit change", "distance moved": "moved",
         "score": "score", "claimed": "claimed", "threshold, aligned": "threshold, aligned",
         "score, aligned": "score, aligned", "claimed, aligned": "claimed, aligned"}
"""The columns a page shows, by their short names (the paper's threshold goes to the header, what
alignment did stays in the record): a table within the text column."""


def tidy(table: pd.DataFrame, score_unit: str) -> pd.DataFrame:
    """A :func:`study` or :func:`independents` table as pages show it (:data:`SHORT`): accuracy in
    %, the verdict's score and thresholds in ``score_unit`` (:func:`wmlib.report.format_value`),
    the paper's threshold named in the header."""
    units = {"test accuracy": "%", "largest logit change": "", "distance moved": "", "threshold": score_unit,
             "score": score_unit, "threshold, aligned": score_unit, "score, aligned": score_unit}
    out = report.tidy(table[[c for c in SHORT if c in table.columns]], units).rename(columns=SHORT)
    out.columns.name = f"paper's threshold {report.format_value(float(table['threshold'].iloc[0]), score_unit)}"
    return out


def _names(index) -> str:
    return ", ".join(index) if len(index) else "none"


def finding(table: pd.DataFrame, others: pd.DataFrame | None = None) -> str:
    """The page's sentence on a :func:`study` table (and an :func:`independents` table), computed
    from the measurements so that a rerun with another outcome says another thing."""
    edited, base = table.iloc[1:], table.iloc[0]
    erased = edited.index[edited["claimed"] == "no"]
    drift = float((edited["test accuracy"] - base["test accuracy"]).abs().max())
    change = float(edited["largest logit change"].max())
    out = [f"No edit changes the test accuracy by more than {drift:.2g} points, nor a logit by more than "
           f"{change:.1g} of the largest. "]
    out.append(f"Read as the paper reads it, {len(erased)} of the {len(edited)} edits leave the file unclaimed "
               f"({_names(erased)})" if len(erased) else
               f"Read as the paper reads it, the file is still claimed after each of the {len(edited)} edits")
    back = edited.index[edited["claimed, aligned"] == "yes"]
    if len(back) == len(edited):
        out.append("; aligned to the owner's file first, every edited file is claimed.")
    else:
        lost = edited.index[edited["claimed, aligned"] != "yes"]
        out.append(f"; aligned to the owner's file first, {len(back)} of {len(edited)} are claimed "
                   f"(not: {_names(lost)}).")
    if others is not None and len(others):
        claimed = others.index[(others["claimed"] == "yes") | (others["claimed, aligned"] == "yes")]
        top = float(np.nanmax(others["score, aligned"].to_numpy(dtype=float)))
        out.append(f" Of {len(others)} independently trained models aligned to the owner's file, "
                   + (f"none is claimed (highest aligned score {top:.3g}, against thresholds of "
                      f"{others['threshold, aligned'].min():.3g}–{others['threshold, aligned'].max():.3g})."
                      if not len(claimed) else f"{len(claimed)} are claimed ({_names(claimed)}): alignment "
                      f"manufactures a match here, and the threshold must be calibrated on aligned models."))
    return "".join(out)


__all__ = ["edits", "verify_after_alignment", "study", "independents", "erased_and_restored", "finding", "tidy"]
