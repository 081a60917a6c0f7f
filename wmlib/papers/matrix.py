"""The five schemes compared (:mod:`wmlib.matrix`): settings per profile and the steps its notebook
narrates — the figure, the tables and the paragraph generated from the cells."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..matrix import CELLS, TINY_ATTACKS, MatrixSettings
from ..train import TrainConfig

SCHEME_NAMES = {"adi": "Adi et al. (trigger set)", "frontier": "Le Merrer et al. (frontier)",
                "tartaglione": "Tartaglione et al. (weights)", "bansal": "Bansal et al. (certified)",
                "ipcert": "IPCert (majority vote)"}
COLOURS = {"survived": "#4c9a2a", "removed": "#c0392b", "removed at a cost": "#e6a23c", "n/a": "#d0d0d0"}

_SMOKE = dict(epochs=1, n_train=256, n_independent=4, n_trigger=20, per_batch=10, frontier_key=20, frontier_epochs=2,
              tartaglione_positions=300, draws=10, n_attack=128, n_test=300, pgd_iters=2, buffer_steps=2,
              paper_profile="smoke", schemes=("adi", "tartaglione"), attacks=TINY_ATTACKS)
"""Smoke: hosts of one epoch on 256 images (seconds each), two schemes × three attacks: it shows the
notebook and the page run; what the cells say comes from the ``cpu`` and ``paper`` profiles.

``cpu``: one dataset's matrix within 30 minutes on a 2-core CPU from an empty cache, which trains
about ten hosts (six never-watermarked, four schemes embedding from scratch; Le Merrer's marks a
trained one): a host therefore gets about two minutes — 40,000 MNIST or 37,500 CIFAR-10 training
images through the fast CNN (`runner plan` gives the measured throughput) — and the attacks the rest.
The CIFAR-10 host is weak (a few epochs on a quarter of the set): the matrix compares the schemes on
one host, not the host with the papers'."""

SETTINGS = {
    "smoke": {d: MatrixSettings(**_SMOKE) for d in ("mnist", "cifar10")},
    "cpu": {"mnist": MatrixSettings(epochs=4),
            "cifar10": MatrixSettings(epochs=3, n_train=12_500)},
    "paper": {d: MatrixSettings(model="resnet18", epochs=60, lr=0.1, schedule="step", n_train=None, n_independent=10,
                                paper_profile="paper", draws=1000, n_attack=None, n_test=None, attack_epochs=10,
                                pgd_iters=1000, buffer_steps=100) for d in ("mnist", "cifar10")},
}


def trainings(P: MatrixSettings, dataset: str, seed: int = 0) -> dict[str, TrainConfig]:
    """The independent trainings (jobs of a grid): the clean host and the never-watermarked hosts."""
    return {f"host, seed {seed + i}": P.host(dataset, seed + i) for i in range(0, P.n_independent + 1)}


def owner_trainings(P: MatrixSettings, dataset: str, seed: int = 0) -> dict[str, TrainConfig]:
    """The watermarked hosts the notebook trains itself (one per scheme; the plan's estimate)."""
    return {f"{s} owner": P.host(dataset, seed) for s in P.schemes}


def banner(P: MatrixSettings, dataset: str, profile: str, device: str, tiny: bool) -> str:
    size = "all" if P.n_train is None else f"{P.n_train:,}"
    return (f"Produced at profile {profile}{' (tiny)' if tiny else ''} on {dataset} ({device}): host {P.model}, "
            f"{size} training images, {P.epochs} epoch{'s' if P.epochs != 1 else ''}; "
            f"{len(P.schemes)} schemes × {len(P.columns())} attacks; "
            f"thresholds at α = {P.alpha:g} on {P.n_independent} never-watermarked hosts; margin {P.margin:g} points.")


def grid(cells: pd.DataFrame) -> pd.DataFrame:
    """Schemes × attacks: each cell's outcome."""
    return cells.pivot(index="scheme", columns="attack", values="cell").reindex(
        index=list(dict.fromkeys(cells["scheme"])), columns=list(dict.fromkeys(cells["attack"])))


def figure(cells: pd.DataFrame, title: str):
    """The matrix at a glance: one square per cell, coloured by outcome, the score written in it
    (the threshold is each scheme's, in the table below)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    g = grid(cells)
    t = cells.set_index(["scheme", "attack"])
    rows, cols = g.shape
    fig, ax = plt.subplots(figsize=(max(6.5, 2.6 + 0.62 * cols), 2.3 + 0.42 * rows), layout="constrained")
    for i, s in enumerate(g.index):
        for j, a in enumerate(g.columns):
            outcome = g.loc[s, a]
            ax.add_patch(plt.Rectangle((j + 0.03, i + 0.05), 0.94, 0.9, color=COLOURS.get(outcome, "#d0d0d0")))
            row = t.loc[(s, a)]
            if outcome != "n/a" and pd.notna(row.get("score")):
                ax.text(j + 0.5, i + 0.5, f"{row['score']:.2f}{_mark(row)}", ha="center", va="center", fontsize=7,
                        color="white")
    ax.set(xlim=(0, cols), ylim=(rows, 0))
    ax.set_xticks(np.arange(cols) + 0.5, g.columns, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(np.arange(rows) + 0.5, [SCHEME_NAMES.get(s, s) for s in g.index], fontsize=8)
    ax.tick_params(length=0)
    ax.grid(False)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.legend(handles=[Patch(color=COLOURS[c], label=c) for c in (*CELLS, "n/a")], ncol=4, fontsize=7,
              loc="lower left", bbox_to_anchor=(0, 1.0), frameon=False)
    rechecked = "second seed" in cells and cells["second seed"].notna().any()
    fig.suptitle(title + ("  (* near the threshold, same outcome at a second seed; ! another outcome there)"
                          if rechecked else ""), fontsize=9)
    return fig


def _mark(row) -> str:
    """``*`` for a cell near its threshold whose second seed agrees, ``!`` where it does not."""
    again = row.get("second seed")
    if not isinstance(again, str):
        return ""
    return "*" if again == row["cell"] else "!"


def rechecked(cells: pd.DataFrame) -> tuple[int, int]:
    """(cells that ran at a second seed because they lay near their threshold, of them those whose
    outcome did not change)."""
    if "second seed" not in cells:
        return 0, 0
    again = cells[cells["second seed"].notna()]
    return len(again), int((again["second seed"] == again["cell"]).sum())


def table(cells: pd.DataFrame) -> pd.DataFrame:
    """The readable table under the figure: per cell the verdict, score against threshold, the
    accuracy after the attack and its cost."""
    t = cells[cells["cell"] != "n/a"].copy()
    t["scheme"] = t["scheme"].map(lambda s: SCHEME_NAMES.get(s, s))
    cols = ["cell", "score", "threshold", "test accuracy", "accuracy cost", "attacker needs"]
    if "second seed" in t:
        t["at a second seed"] = [f"{o} (score {v:.3g})" if isinstance(o, str) else "—"
                                 for o, v in zip(t["second seed"], t["second score"])]
        cols.insert(3, "at a second seed")
    out = t.set_index(["scheme", "attack"])[cols]
    return out.rename(columns={"cell": "outcome", "test accuracy": "accuracy after (%)",
                               "accuracy cost": "cost (points)"})


def finding(cells: pd.DataFrame, schemes: pd.DataFrame, P: MatrixSettings) -> str:
    """The paragraph under the figure, computed from the cells: which scheme survives the most
    attacks, what removes each, and whether the false claims measured stay at α."""
    ok = cells[cells["cell"] != "n/a"]
    if ok.empty:
        return "No scheme's owner is claimed at this profile: the matrix has no cell to read."
    survived = ok.groupby("scheme")["cell"].apply(lambda c: int((c == "survived").sum()))
    total = ok.groupby("scheme")["cell"].size()
    best = survived.idxmax()
    parts = [f"{SCHEME_NAMES.get(best, best)} survives the most attacks ({survived[best]} of {total[best]})."]
    for s in survived.index:
        removed = ok[(ok.scheme == s) & (ok.cell == "removed")]["attack"].tolist()
        if removed:
            parts.append(f"{SCHEME_NAMES.get(s, s)} is removed at no more than {P.margin:g} points of accuracy by: "
                         f"{', '.join(removed)}.")
    free = ok[ok.attack.str.startswith("zero-cost") & (ok.cell == "removed")]
    if len(free):
        parts.append("Edits that change no prediction remove " +
                     ", ".join(sorted({SCHEME_NAMES.get(s, s) for s in free.scheme})) +
                     " when read as the paper reads the file"
                     + ("; aligned to the owner's file first, they remove none." if not len(
                         ok[(ok.attack == "zero-cost edits, aligned") & (ok.cell != "survived")]) else
                        "; alignment does not restore every one."))
    fc = schemes["false claims"].str.split(" of ").map(lambda x: int(x[0]))
    n = int(schemes["false claims"].iloc[0].split(" of ")[1])
    parts.append(f"False claims measured on {n} never-watermarked hosts at α = {P.alpha:g}: "
                 + ("none for any scheme." if fc.sum() == 0 else
                    ", ".join(f"{SCHEME_NAMES.get(s, s)} {v} of {n}" for s, v in fc.items() if v) +
                    f" (above α: with {n} hosts the rate is measured in steps of {1 / n:.2g})."))
    n_near, same = rechecked(ok)
    if n_near:
        lead = (f"{n_near} cell{'s' if n_near != 1 else ''} lay within {P.near:g} of the threshold and ran at a "
                "second seed: ")
        if same == n_near:
            parts.append(lead + ("every one kept its outcome." if n_near != 1 else "it kept its outcome."))
        else:
            parts.append(lead + f"{n_near - same} changed outcome there (marked ! in the figure): one sample "
                         "near a line, not a verdict.")
    else:
        parts.append(f"No cell lay within {P.near:g} of its threshold, so none needed a second seed.")
    unclaimed = schemes.index[~schemes["owner claimed"].astype(bool)].tolist()
    if unclaimed:
        parts.append("Not claimed on the owner's own model at this profile (their cells are left out): "
                     + ", ".join(SCHEME_NAMES.get(s, s) for s in unclaimed) + ".")
    return " ".join(parts)
