"""Tables for the notebooks and the book, read like a paper's: words in headers, numbers
formatted by unit, a dash (never NaN) where there is no number, the profile named once."""
from __future__ import annotations

import math

import pandas as pd

from .results import Row

DECIMALS = {"%": 1, "points": 2, "of 100": 1, "models": 0, "parameters": 0, "count": 0, "minutes": 1}


def format_value(v, unit: str) -> str:
    """A number as tables show it: one decimal for percentages, whole counts, two decimals for
    rates (MR, CMR), three for a correlation, three significant digits else; a dash for no number."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if unit in DECIMALS:
        d = DECIMALS[unit]
        return f"{v:,.{d}f}" if d else f"{int(round(v)):,}"
    if unit in ("MR", "CMR", "rate") and abs(v) <= 1:
        return f"{v:.2f}"
    if unit == "correlation" and abs(v) <= 1:       # watermark correlations differ in the third digit
        return f"{v:.3f}"
    if v != 0 and abs(v) < 0.01:
        return f"{v:.2g}"
    return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def tidy(df: pd.DataFrame, units: dict[str, str] | None = None, default_unit: str = "") -> pd.DataFrame:
    """A copy of ``df`` with every number formatted by its column's unit (``units``), booleans as
    yes/no and missing values as a dash; headers with underscores become words."""
    units = units or {}
    out = df.copy()
    for col in out.columns:
        unit = units.get(col if not isinstance(col, tuple) else col[-1], units.get(col, default_unit))
        out[col] = [format_value(v, unit) if isinstance(v, (int, float)) or v is None else
                    ("—" if isinstance(v, float) and math.isnan(v) else v) for v in out[col]]
    out = out.rename(columns=lambda c: c.replace("_", " ") if isinstance(c, str) else c)
    return out


def comparison(rows: list[Row], profile: str) -> pd.DataFrame:
    """The paper's number beside ours (at ``profile``, named once in the header), the gap, the
    status, one row per quantity."""
    out = []
    for r in rows:
        gap = (r.ours - r.paper) if (r.ours is not None and r.paper is not None) else None
        out.append({"quantity": r.quantity, "unit": r.unit, "paper": format_value(r.paper, r.unit),
                    "ours": format_value(r.ours, r.unit),
                    "gap": format_value(gap, r.unit) if gap is not None else "—",
                    "status": r.status or "—", "note": r.note or "—"})
    df = pd.DataFrame(out).set_index("quantity")
    df.columns.name = f"ours at profile {profile}"
    return df


# ----------------------------------------------------------------------------- the landing page
STATUS_COLORS = {"reproduced": "tab:green", "qualitatively": "tab:olive", "not yet": "tab:red",
                 "needs GPU": "tab:gray", "needs online data": "tab:gray", "not in paper": "tab:blue",
                 "not claimed at smoke": "tab:purple"}
UNIT_PANELS = {"%": "accuracy (%)", "MR": "matching rate", "CMR": "matching rate",
               "ℓ2": "ℓ2 distance", "R/σ": "radius (R/σ)"}


def claim_rows(records: list[dict]) -> list[dict]:
    """Every results row that compares with a published number, with its record's paper,
    dataset and profile."""
    return [dict(r, paper_id=rec["paper"], dataset=rec["dataset"], profile=rec["profile"])
            for rec in records for r in rec["rows"] if r.get("claim")]


def paper_overview(records: list[dict], registry) -> pd.DataFrame:
    """Per paper: published numbers and statements (claims files), how many the executed notebooks
    regenerate, and with which status."""
    from . import claims
    rows = []
    for p in registry.values():
        cl = claims.load(p.id)
        rec_rows = [r for r in claim_rows(records) if r["paper_id"] == p.id]
        counts = pd.Series([r["status"] for r in rec_rows]).value_counts()
        numbers = sum(c.value is not None for c in cl.values())
        status = ", ".join(f"{int(counts[k])} {k}" for k in ("reproduced", "qualitatively", "not yet")
                           if counts.get(k, 0))
        published = (f"{numbers} numbers, {len(cl) - numbers} statements "
                     f"({sum(not c.attempted for c in cl.values())} not attempted)" if numbers else
                     f"qualitative only: the {getattr(p, 'source', 'paper')} gives no numbers "
                     f"({len(cl)} statements)")
        rows.append({"paper": p.cite, "published": published,
                     "regenerated": len({r["claim"] for r in rec_rows}),
                     "how they compare": status or "—",
                     "profile": ", ".join(sorted({r["profile"] for r in rec_rows})) or "—"})
    return pd.DataFrame(rows).set_index("paper")


def landing_figure(records: list[dict], path) -> bool:
    """Paper's value against ours for every numeric claim, one panel per kind of quantity,
    coloured by status; False (and no file) when there is nothing to plot."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in claim_rows(records) if r["paper"] is not None and r["ours"] is not None
           and r["unit"] != "parameters"]
    panels = sorted({UNIT_PANELS.get(r["unit"], "counts and points") for r in pts})
    if not panels:
        return False
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(10, 3.3 * nrows + 0.4), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, panel in zip(axes.flat, panels):
        sel = [r for r in pts if UNIT_PANELS.get(r["unit"], "counts and points") == panel]
        lo = min(min(r["paper"], r["ours"]) for r in sel)
        hi = max(max(r["paper"], r["ours"]) for r in sel)
        pad = 0.05 * (hi - lo or 1)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="k", lw=0.8, ls=":")
        for status in STATUS_COLORS:
            s = [r for r in sel if r["status"] == status]
            if s:
                ax.scatter([r["paper"] for r in s], [r["ours"] for r in s], s=18,
                           color=STATUS_COLORS[status], label=status, alpha=0.8)
        ax.set(title=panel, xlabel="paper's value", ylabel="ours")
        ax.grid(alpha=0.3)
    handles = {h.get_label(): h for ax in axes.flat for h in ax.collections}
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles), fontsize=9,
               frameon=False)
    fig.tight_layout(rect=(0, 0.4 / (3.3 * nrows + 0.4), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def summary_table(records: list[dict]) -> pd.DataFrame:
    """Every headline row of every executed notebook (the folded long table of the landing page)."""
    rows = [{"notebook": f"{rec['paper']}, {rec['dataset']}",
             "quantity": f"{r['quantity']} ({r.get('unit', '%')})",
             "paper's": format_value(r["paper"], r.get("unit", "%")),
             "ours": format_value(r["ours"], r.get("unit", "%")),
             "status": r.get("status") or "—", "profile": rec["profile"]}
            for rec in records for r in rec["rows"]]
    return pd.DataFrame(rows, columns=["notebook", "quantity", "paper's", "ours", "status", "profile"])
