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


def markdown(records: list[dict], paper: str | None = None) -> str:
    """The "over seeds" section of a page (one paper) or of the landing (every paper): a table per
    profile that ran more than one seed, or a sentence saying how to get one."""
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
             f"paper's value lies outside our spread for {len(outside)} of them. The spread is min–max "
             f"below {MIN_SEEDS_FOR_INTERVAL} seeds and a 95 % t interval of the mean from "
             f"{MIN_SEEDS_FOR_INTERVAL} on.", ""]
    lines.append(table(multi, with_notebook=paper is None).to_markdown(index=False, disable_numparse=True))
    return "\n".join(lines) + "\n"
