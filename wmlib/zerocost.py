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
from .train import Trained, accuracy
from .verdict import Verdict

Verify = Callable[[Trained], Verdict]


EDITS = ("permute units", "scale units", "rescale batch norm (× 0.1)",
         *(f"dummy units ({kind})" for kind in attacks.DUMMY_KINDS), "all of them")
"""The names of :func:`edits`, in its order."""

SMOKE_EDITS = ("permute units", "rescale batch norm (× 0.1)")
"""The edits a smoke run studies (each edit costs an alignment and, for smoothed verifications,
two Monte-Carlo passes): a permutation, and the rescaling that changes what a fixed σ means."""


def edits(base: Trained, seed: int = 0, only: tuple[str, ...] | None = None) -> dict[str, Trained]:
    """Every edit that applies to ``base``'s architecture, by name: permutation of every unit
    group, positive per-unit scales across ReLUs, batch-norm rescaling (every conv × 0.1, its
    running statistics accordingly; models with batch norms only), two dummy units per group of
    each kind (zero, clique, split; Yan et al. 2023), and all of them composed
    (:func:`wmlib.attacks.zero_cost_edit`). ``only``: those of :data:`EDITS` to make (None: all
    that apply). A model the unit walk cannot describe (the IRNNs) raises ``ValueError``."""
    unknown = sorted(set(only or ()) - set(EDITS))
    if unknown:
        raise ValueError(f"only={list(only)}: {unknown} not known; accepted values: {list(EDITS)}")
    sites = {s.kind for g in units.describe(base.model) for s in g.sites}
    make = {"permute units": lambda: attacks.permute_units(base, seed)}
    if "relu" in sites:
        make["scale units"] = lambda: attacks.scale_units(base, seed)
    if "batchnorm" in sites:
        make["rescale batch norm (× 0.1)"] = lambda: attacks.rescale_batchnorm(base, 0.1)
    for kind in attacks.DUMMY_KINDS:
        make[f"dummy units ({kind})"] = lambda kind=kind: attacks.add_dummy_units(base, kind, seed=seed)
    make["all of them"] = lambda: attacks.zero_cost_edit(base, seed)
    return {name: f() for name, f in make.items() if only is None or name in only}


def _verdict_cells(v: Verdict, prefix: str) -> dict:
    return {f"score{prefix}": v.score, f"claimed{prefix}": "yes" if v.passed else "no"}


def verify_after_alignment(verify: Verify, owner: Trained, *, probe: torch.Tensor | None = None,
                           method: str = "weights") -> Verify:
    """``verify`` applied to the suspect aligned to ``owner`` (:func:`wmlib.align.aligned`), the
    verdict saying what alignment did; a suspect that is no transform of the owner's architecture
    is verified as it is, and the verdict says it was not aligned."""
    def run(t: Trained) -> Verdict:
        if t.hash == owner.hash:       # the owner's file itself: aligning it to itself changes nothing
            return verify(t)
        try:
            a = aligned(t, owner, probe=probe, method=method)
        except ValueError as e:
            return replace(verify(t), alignment=f"not aligned ({e})")
        return replace(verify(a), alignment=summary(a.record["alignment"]))
    return run


def _aligned_cells(v: Verdict) -> dict:
    return {**_verdict_cells(v, ", aligned"), "alignment": v.alignment or "none"}


def study(base: Trained, verify: Verify, test: D.TensorData, *, verify_aligned: Verify | None = None,
          seed: int = 0, only: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One row per edit of :func:`edits` (and the unedited file first): test accuracy (%, in fp32:
    under bf16 autocast a prediction within rounding of a tie may flip, which is the machine's fast
    path and not the edit), the
    largest logit change relative to the largest logit, the certified-space distance the file
    moved (blank when the edit changed its shapes), the verdict as the paper reads the file
    (``verify``), and the verdict after alignment to the owner's file (``verify_aligned``;
    default: :func:`verify_after_alignment` of ``verify`` to ``base``), with what alignment did.
    ``only``: the edits to study (:func:`edits`; None: all)."""
    verify_aligned = verify_aligned or verify_after_alignment(verify, base)
    rows = []
    for name, t in {"none (the owner's file)": base, **edits(base, seed, only)}.items():
        rec = t.record
        row = {"edit": name, "test accuracy": 100 * accuracy(t.model, test.x, test.y, fp32=True),
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


def claimed_anyhow(others: pd.DataFrame) -> int:
    """How many models of an :func:`independents` table are claimed, as read or aligned."""
    return int((others[["claimed", "claimed, aligned"]] == "yes").any(axis=1).sum())


def manufactured(others: pd.DataFrame) -> int:
    """How many models of an :func:`independents` table alignment claims where the paper's
    reading of the file as it is does not: the false claims alignment itself would add."""
    return int(((others["claimed, aligned"] == "yes") & (others["claimed"] != "yes")).sum())


def add_null_checks(checks, others: pd.DataFrame, who: str = "", *, read_claims_allowed: bool = False,
                    read_target: str | None = None) -> None:
    """A page's checks on an :func:`independents` table: alignment claims no independent model that
    the paper's reading does not (asserted at every profile: alignment must not manufacture a
    match); and, unless ``read_claims_allowed`` (a scheme whose own reading is known to claim some
    independent models, checked elsewhere on the page), none is claimed as the paper reads it —
    held to the targets' field ``read_target`` (None: always asserted; a profile whose models learn
    nothing, such as a tiny one answering one class everywhere, shows it only)."""
    n = manufactured(others)
    checks.add(f"{who}alignment claims no independent model that the paper's reading does not", n == 0,
               f"{n} of {len(others)} claimed only after alignment")
    if not read_claims_allowed:
        n = int((others["claimed"] == "yes").sum())
        checks.add(f"{who}no independent model is claimed as the paper reads it", n == 0,
                   f"{n} of {len(others)} claimed", read_target)


def verdicts_kept(table: pd.DataFrame) -> dict[str, bool]:
    """Whether every edit of a :func:`study` table gets the owner's file's verdict: ``as read`` (as
    the paper reads the file), ``aligned`` (after alignment); ``owner claimed``: the owner's file
    itself is claimed (a profile too small to embed the watermark may leave it unclaimed)."""
    edited, base = table.iloc[1:], table.iloc[0]
    return {"as read": bool((edited["claimed"] == base["claimed"]).all()),
            "aligned": bool((edited["claimed, aligned"] == base["claimed, aligned"]).all()),
            "owner claimed": base["claimed"] == "yes"}


def add_checks(checks, table: pd.DataFrame, who: str = "", *, as_read: bool = False) -> None:
    """A page's checks on a :func:`study` table (``checks``: a :class:`wmlib.settings.Checks`), each
    asserted: every edit is claimed after alignment and, with ``as_read`` (a verification by queries,
    blind to the file by construction), as the paper reads it. Where the owner's file itself is not
    claimed, each check asks instead that every edit get the owner's file's verdict."""
    kept, found, text = verdicts_kept(table), erased_and_restored(table), finding(table)
    if kept["owner claimed"]:
        if as_read:
            checks.add(f"{who}every zero-cost edit is claimed as the paper reads it", not found["erased"], text)
        checks.add(f"{who}every zero-cost edit is claimed after alignment", found["restored"], text)
        return
    unclaimed = " (the owner's file is not claimed at this profile)"
    if as_read:
        checks.add(f"{who}every zero-cost edit gets the owner's verdict as the paper reads it{unclaimed}",
                   kept["as read"], text)
    checks.add(f"{who}every zero-cost edit gets the owner's verdict after alignment{unclaimed}", kept["aligned"], text)


SHORT = {"test accuracy": "test acc. (%)", "largest logit change": "logit change", "distance moved": "moved",
         "score": "score", "claimed": "claimed", "threshold, aligned": "threshold, aligned",
         "score, aligned": "score, aligned", "claimed, aligned": "claimed, aligned"}
"""The columns a page shows, by their short names (the paper's threshold goes to the header, what
alignment did stays in the record): a table within the text column."""


def tidy(table: pd.DataFrame, score_unit: str) -> pd.DataFrame:
    """A :func:`study` or :func:`independents` table as pages show it (:data:`SHORT`): accuracy in
    %, the verdict's score and thresholds in ``score_unit`` (:func:`wmlib.report.format_value`),
    the paper's threshold named in the header (and the aligned one only where it differs)."""
    units = {"test accuracy": "%", "largest logit change": "", "distance moved": "", "threshold": score_unit,
             "score": score_unit, "threshold, aligned": score_unit, "score, aligned": score_unit}
    shown = [c for c in SHORT if c in table.columns]
    same = "threshold, aligned" in table.columns and bool((table["threshold, aligned"] == table["threshold"]).all())
    if same:                   # one threshold for both readings: named once, in the header
        shown.remove("threshold, aligned")
    out = report.tidy(table[shown], units).rename(columns=SHORT)
    out.columns.name = (f"{'threshold' if same else 'paper' + chr(39) + 's threshold'} "
                        f"{report.format_value(float(table['threshold'].iloc[0]), score_unit)}")
    return out


def _are(n: int) -> str:
    return f"{n} is" if n == 1 else f"{n} are"


def _names(index) -> str:
    return ", ".join(index) if len(index) else "none"


def _unclaimed_owner(edited: pd.DataFrame, base: pd.Series) -> str:
    """The sentence's end where the owner's file itself is not claimed: which edits change the
    verdict, as read and aligned, and how far the score moves."""
    out = [f"The owner's file itself is not claimed at this profile (score {base['score']:.3g} against "
           f"{base['threshold']:.3g}), so no edit can erase anything here"]
    for col, how in (("", "as the paper reads it"), (", aligned", "aligned to the owner's file first")):
        changed = edited.index[edited[f"claimed{col}"] != base[f"claimed{col}"]]
        moved = float((edited[f"score{col}"] - base[f"score{col}"]).abs().max())
        out.append(f"; {how}, {len(changed)} of {len(edited)} edits change its verdict"
                   + (f" ({_names(changed)})" if len(changed) else "") + f" and the score moves by at most {moved:.2g}")
    return "".join(out) + "."


def _read_and_aligned(edited: pd.DataFrame) -> str:
    """The sentence's verdicts where the owner's file is claimed: the edits that erase it as the
    paper reads the file, those claimed after alignment."""
    erased = edited.index[edited["claimed"] == "no"]
    out = [f"Read as the paper reads it, {len(erased)} of the {len(edited)} edits "
           f"{'leaves' if len(erased) == 1 else 'leave'} the file unclaimed "
           f"({_names(erased)})" if len(erased) else
           "Read as the paper reads it, the file is still claimed after "
           + ("the one edit" if len(edited) == 1 else f"each of the {len(edited)} edits")]
    back = edited.index[edited["claimed, aligned"] == "yes"]
    if len(back) == len(edited):
        out.append("; aligned to the owner's file first, every edited file is claimed.")
    else:
        lost = edited.index[edited["claimed, aligned"] != "yes"]
        out.append(f"; aligned to the owner's file first, {len(back)} of {len(edited)} are claimed "
                   f"(not: {_names(lost)}).")
    return "".join(out)


def finding(table: pd.DataFrame, others: pd.DataFrame | None = None) -> str:
    """The page's sentence on a :func:`study` table (and an :func:`independents` table), computed
    from the measurements so that a rerun with another outcome says another thing."""
    edited, base = table.iloc[1:], table.iloc[0]
    drift = float((edited["test accuracy"] - base["test accuracy"]).abs().max())
    change = float(edited["largest logit change"].max())
    out = [f"No edit changes the test accuracy by more than {drift:.2g} points, nor a logit by more than "
           f"{change:.1g} of the largest. "]
    if base["claimed"] != "yes":
        out.append(_unclaimed_owner(edited, base))
    else:
        out.append(_read_and_aligned(edited))
    if others is not None and len(others):
        aligned_yes = others.index[others["claimed, aligned"] == "yes"]
        read_yes = others.index[others["claimed"] == "yes"]
        made = aligned_yes.difference(read_yes)
        top = float(np.nanmax(others["score, aligned"].to_numpy(dtype=float)))
        thr = others["threshold, aligned"]
        span = f"{thr.min():.3g}" if thr.min() == thr.max() else f"{thr.min():.3g}–{thr.max():.3g}"
        out.append(f" Of {len(others)} independently trained models aligned to the owner's file, "
                   + (f"none is claimed (highest aligned score {top:.3g}, against a threshold of {span})"
                      if not len(aligned_yes) else f"{_are(len(aligned_yes))} claimed ({_names(aligned_yes)})"))
        if len(made):
            out.append(f"; {len(made)} of them only after alignment ({_names(made)}): alignment manufactures a "
                       f"match here, and the threshold must be calibrated on aligned models.")
        elif len(read_yes):
            out.append(f"; read as they are, {_are(len(read_yes))} claimed already ({_names(read_yes)}): the "
                       f"scheme's own false claims, which alignment does not add to.")
        else:
            out.append(", nor as read." if not len(aligned_yes) else ".")
    return "".join(out)


__all__ = ["EDITS", "SMOKE_EDITS", "edits", "verify_after_alignment", "study", "independents", "erased_and_restored", "claimed_anyhow", "manufactured",
           "add_null_checks", "verdicts_kept",
           "add_checks", "finding", "tidy"]
