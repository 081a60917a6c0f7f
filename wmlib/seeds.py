"""Each headline over seeds: the mean, the spread (min–max; a 95 % t interval from five seeds on)
and whether the paper's value lies inside it.

One run is one sample: a model's accuracy, a matching rate or a certified radius move with the
seed (and with the machine: bf16 or fp32). The pages show the lowest seed's notebook; this module
reads the results records of every seed (``results/<paper>-<dataset>-<profile>-seed<k>.json``).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from .report import format_value

MIN_SEEDS_FOR_INTERVAL = 5
"""From this many seeds on the spread is a 95 % t interval of the mean; below it, min–max."""


def spread(records: list[dict]) -> pd.DataFrame:
    """One row per (paper, dataset, profile, headline quantity) with its numbers over seeds."""
    groups: dict[tuple, dict] = {}
    for rec in records:
        for r in rec["rows"]:
            k = (rec["paper"], rec["dataset"], rec["profile"], r["quantity"])
            g = groups.setdefault(k, {"unit": r.get("unit", "%"), "claim": r.get("claim", ""),
                                      "paper_value": r.get("paper"), "by_seed": {}, "statuses": {}})
            g["by_seed"][int(rec.get("seed", 0))] = r.get("ours")
            g["statuses"][int(rec.get("seed", 0))] = r.get("status", "")
    rows = []
    for (paper, dataset, profile, quantity), g in groups.items():
        seeds = sorted(g["by_seed"])
        vals = np.array([g["by_seed"][s] for s in seeds if g["by_seed"][s] is not None], dtype=float)
        n = len(vals)
        mean = float(vals.mean()) if n else None
        lo = hi = None
        kind = "—"
        if n >= MIN_SEEDS_FOR_INTERVAL:
            half = float(stats.t.ppf(0.975, n - 1) * vals.std(ddof=1) / math.sqrt(n))
            lo, hi, kind = mean - half, mean + half, "95 % t interval"
        elif n >= 2:
            lo, hi, kind = float(vals.min()), float(vals.max()), "min–max"
        pv = g["paper_value"]
        inside = None if (pv is None or lo is None) else bool(lo <= pv <= hi)
        rows.append({"paper": paper, "dataset": dataset, "profile": profile, "quantity": quantity,
                     "unit": g["unit"], "claim": g["claim"], "seeds": seeds, "n": n, "mean": mean,
                     "min": float(vals.min()) if n else None, "max": float(vals.max()) if n else None,
                     "lo": lo, "hi": hi, "spread": kind, "paper_value": pv, "paper_inside": inside,
                     "statuses": sorted({s for s in g["statuses"].values() if s})})
    cols = ["paper", "dataset", "profile", "quantity", "unit", "claim", "seeds", "n", "mean", "min",
            "max", "lo", "hi", "spread", "paper_value", "paper_inside", "statuses"]
    return pd.DataFrame(rows, columns=cols)


def _range(row) -> str:
    if row["lo"] is None or (isinstance(row["lo"], float) and math.isnan(row["lo"])):
        return "—"
    return f"{format_value(row['lo'], row['unit'])} – {format_value(row['hi'], row['unit'])}"


def table(df: pd.DataFrame, with_notebook: bool = False) -> pd.DataFrame:
    """The reader's table: ours as mean and spread over the seeds, the paper's value, inside or not;
    each row names its notebook (dataset and profile; the paper too with ``with_notebook``)."""
    out = []
    for _, r in df.iterrows():
        inside = {True: "yes", False: "**no**", None: "—"}[r["paper_inside"]]
        row = {"quantity": f"{r['quantity']} ({r['unit']})",
               "seeds": ", ".join(map(str, r["seeds"])),
               "ours, mean": format_value(r["mean"], r["unit"]),
               "spread": _range(r) if r["n"] >= 2 else "one seed",
               "paper's": format_value(r["paper_value"], r["unit"]),
               "paper's inside": inside,
               "status per seed": ", ".join(r["statuses"]) or "—"}
        where = f"{r['paper']}, {r['dataset']} ({r['profile']})" if with_notebook else f"{r['dataset']} ({r['profile']})"
        row = {"notebook": where, **row}
        out.append(row)
    return pd.DataFrame(out)


def _direction(outside: pd.DataFrame) -> str:
    """Which side of the paper's value the misses fall on (ours above / below it)."""
    if not len(outside):
        return ""
    above = int((outside["mean"] > outside["paper_value"]).sum())
    return f" (ours above the paper's for {above}, below for {len(outside) - above})"


def _flips(multi: pd.DataFrame) -> str:
    """The headlines whose status changes with the seed: one sample of those is not a verdict."""
    flips = multi[multi["statuses"].map(len) > 1]
    if not len(flips):
        return "No status changes with the seed. "
    named = "; ".join(f"{r['quantity']} ({r['dataset']}: {', '.join(r['statuses'])})"
                      for _, r in flips.head(3).iterrows())
    more = f" and {len(flips) - 3} more" if len(flips) > 3 else ""
    return (f"{len(flips)} change status with the seed — {named}{more}: their status at one seed is "
            f"one sample, not a verdict. ")


def figure(records: list[dict], path) -> bool:
    """Each headline's spread over seeds against the paper's value, one panel per paper (a forest
    plot: each row on its own scale, from the smaller to the larger of the spread and the paper's
    value); False (and no file) when no headline with a published value ran on two seeds or more."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = spread(records)
    df = df[(df["n"] >= 2) & df["paper_value"].notna()]
    if not len(df):
        return False
    groups = list(df.groupby("paper", sort=False))
    heights = [max(1, len(g)) for _, g in groups]
    fig, axes = plt.subplots(len(groups), 1, figsize=(10, 0.28 * sum(heights) + 0.9 * len(groups) + 0.6),
                             squeeze=False, gridspec_kw={"height_ratios": heights})
    for ax, (paper, g) in zip(axes[:, 0], groups):
        for i, (_, r) in enumerate(g.iterrows()):
            lo_all, hi_all = min(r["lo"], r["paper_value"]), max(r["hi"], r["paper_value"])
            span = (hi_all - lo_all) or 1.0
            def at(v, lo_all=lo_all, span=span):
                return 0.05 + 0.9 * (v - lo_all) / span
            color = "tab:green" if r["paper_inside"] else "tab:red"
            ax.plot([at(r["lo"]), at(r["hi"])], [i, i], color=color, lw=3, solid_capstyle="butt")
            ax.plot(at(r["mean"]), i, "o", color=color, ms=4)
            ax.plot(at(r["paper_value"]), i, "kx", ms=6)
        ax.set_yticks(range(len(g)), [f"{q[:60]} ({d})" for q, d in zip(g["quantity"], g["dataset"])], fontsize=7)
        ax.invert_yaxis()
        ax.set(xlim=(0, 1), xticks=[], title=f"{paper}: our spread over seeds (bar, mean •) against the paper's value (×)")
        ax.title.set_fontsize(9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def markdown(records: list[dict], paper: str | None = None, figure_path: str | None = None) -> str:
    """The "over seeds" section of a page (one paper) or of the landing (every paper): a table per
    profile that ran more than one seed, or a sentence saying how to get one; with ``figure_path``
    (made by :func:`figure`), the figure and the table folded under it."""
    recs = [r for r in records if paper is None or r["paper"] == paper]
    df = spread(recs)
    multi = df[df["n"] >= 2]
    if not len(multi):
        seeds = sorted({int(r.get("seed", 0)) for r in recs})
        ran = f"Only one seed ran ({', '.join(map(str, seeds))})" if seeds else "No notebook ran yet"
        return (f"*{ran}, so each number is one sample. "
                "`python -m wmlib.runner run --seeds 0 1 2` (or `SEEDS=\"0 1 2\" make book`) runs more; "
                "this section then shows each headline's mean and spread.*\n")
    outside = multi[multi["paper_inside"] == False]          # noqa: E712 (None: no paper value)
    compared = multi[multi["paper_inside"].notna()]
    lines = [f"{len(compared)} headline numbers with a published value ran on more than one seed; the "
             f"paper's value lies outside our spread for {len(outside)} of them{_direction(outside)}. "
             f"{_flips(multi)}The spread is min–max below {MIN_SEEDS_FOR_INTERVAL} seeds and a 95 % t "
             f"interval of the mean from {MIN_SEEDS_FOR_INTERVAL} on.", ""]
    body = table(multi, with_notebook=paper is None).to_markdown(index=False, disable_numparse=True)
    if figure_path:
        lines += [f"```{{figure}} {figure_path}", ":width: 100%", "",
                  "Green: the paper's value lies inside our spread; red: outside.", "```", ""]
    lines += [f"::::{{dropdown}} Every headline over seeds ({len(multi)} rows)", "", body, "", "::::"]
    return "\n".join(lines) + "\n"
