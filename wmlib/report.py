"""Tables for the notebooks and the book, read like a paper's: words in headers, numbers
formatted by unit, a dash (never NaN) where there is no number, the profile named once."""
from __future__ import annotations

import math

import pandas as pd

from .results import Row

DECIMALS = {"%": 1, "points": 2, "of 100": 1, "models": 0, "parameters": 0, "count": 0, "minutes": 1}


def span(values, fmt: str, suffix: str = "") -> str:
    """The smallest and largest of ``values`` as a sentence gives them ("64–68 %"), one number when
    both print alike; NaN is ignored."""
    import numpy as np
    lo, hi = format(float(np.nanmin(values)), fmt), format(float(np.nanmax(values)), fmt)
    return f"{lo}{suffix}" if lo == hi else f"{lo}–{hi}{suffix}"


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
                 "different regime": "tab:orange", "needs GPU": "tab:gray", "needs online data": "tab:gray",
                 "not in paper": "tab:blue", "not claimed at smoke": "tab:purple"}
UNIT_PANELS = {"%": "accuracy (%)", "MR": "matching rate", "CMR": "matching rate",
               "ℓ2": "ℓ2 distance", "R/σ": "radius (R/σ)"}


def claim_rows(records: list[dict]) -> list[dict]:
    """Every results row that compares with a published number, with its record's paper,
    dataset and profile."""
    return [dict(r, paper_id=rec["paper"], dataset=rec["dataset"], profile=rec["profile"])
            for rec in records for r in rec["rows"] if r.get("claim")]


def paper_overview(records: list[dict], registry) -> pd.DataFrame:
    """Per paper (linked to its page, which opens with its verdict box): published numbers and
    statements (claims files), how many the executed notebooks regenerate, and with which status."""
    from . import claims
    rows = []
    for p in registry.values():
        cl = claims.load(p.id)
        rec_rows = [r for r in claim_rows(records) if r["paper_id"] == p.id]
        counts = pd.Series([r["status"] for r in rec_rows]).value_counts()
        numbers = sum(c.value is not None for c in cl.values())
        status = ", ".join(f"{int(counts[k])} {k}" for k in ("reproduced", "qualitatively", "not yet",
                                                              "different regime")
                           if counts.get(k, 0))
        published = (f"{numbers} numbers, {len(cl) - numbers} statements "
                     f"({sum(not c.attempted for c in cl.values())} not attempted)" if numbers else
                     f"qualitative only: the {getattr(p, 'source', 'paper')} gives no numbers "
                     f"({len(cl)} statements)")
        rows.append({"paper": f"{{doc}}`{p.cite} </book/{p.id}>`", "published": published,
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


# ----------------------------------------------------------------------------- the verdict box
HEADLINE_STATUSES = {
    "reproduced": "every number of the claim within its tolerance of the paper's",
    "qualitatively": "the claim holds on our models, though some of its numbers lie outside the tolerance",
    "not reproduced": "the claim does not hold on our models for at least one of its numbers or statements",
    "different regime": "we ran it, but not like for like (another σ, another scale): the numbers are shown, not "
                        "compared",
    "needs GPU": "not attempted at this profile: the paper's setting needs a GPU",
    "needs online data": "not attempted: the data cannot be downloaded where this book was built",
    "not attempted": "the paper claims it for this dataset, but no notebook that ran records it",
    "not claimed at smoke": "a `smoke` run (seconds, for CI) claims nothing",
}
"""What each status word of a verdict box means: defined once, on the landing page, applied alike to
every paper."""

_DATASET_NAMES = {"mnist": "MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet": "ImageNet"}


def headline_status(statuses: list[str], reasons: list[str]) -> str:
    """One headline claim's status on one dataset from its rows' statuses (:data:`results.STATUSES`);
    ``reasons``: the ``not_attempted`` notes of its claims when no row ran."""
    if not statuses:
        if reasons and all("online" in r for r in reasons):
            return "needs online data"
        return "needs GPU" if reasons and all("GPU" in r or "online" in r for r in reasons) else "not attempted"
    if "not claimed at smoke" in statuses:
        return "not claimed at smoke"
    ran = [s for s in statuses if s in ("reproduced", "qualitatively", "not yet")]
    if not ran:
        if "different regime" in statuses:
            return "different regime"
        return "needs online data" if all(s == "needs online data" for s in statuses) else "needs GPU"
    if "not yet" in ran:
        return "not reproduced"
    return "reproduced" if all(s == "reproduced" for s in ran) else "qualitatively"


def verdict_box(paper: str, records: list[dict], notebooks: dict[str, str]) -> pd.DataFrame:
    """The paper's headline claims (``claims/<paper>.yaml``), one per row, and per dataset the
    paper claims them on: our status (:func:`headline_status`) from the records of the page's runs,
    linked to the notebook that decides it (``notebooks``: dataset → doc path), with how many of the
    numbers lie within tolerance."""
    from . import claims
    rows = [r for r in claim_rows(records) if r["paper_id"] == paper]
    heads = claims.headlines(paper)
    datasets = [d for d in _DATASET_NAMES if d in notebooks or any(c.dataset == d for h in heads for c in h.members())]
    table = {}
    for h in heads:
        members = {c.id: c for c in h.members()}
        cells = {}
        for d in datasets:
            mine = [c for c in members.values() if c.dataset == d]
            if not mine:
                cells[_DATASET_NAMES[d]] = "— (not in the paper)" if d in notebooks else "—"
                continue
            got = [r for r in rows if r["claim"] in members and members[r["claim"]].dataset == d]
            status = headline_status([r["status"] for r in got], [c.not_attempted for c in mine if c.not_attempted])
            numbers = [r for r in got if r["paper"] is not None and r["status"] in ("reproduced", "qualitatively", "not yet")]
            within = sum(r["status"] == "reproduced" for r in numbers)
            profile = ", ".join(sorted({r["profile"] for r in got}))
            word = f"{{doc}}`{status} <{notebooks[d]}>`" if d in notebooks and got else status
            detail = [f"{within} of {len(numbers)} numbers within tolerance"] if numbers else []
            detail += [f"at {profile}"] if profile and status not in ("not claimed at smoke",) else []
            cells[_DATASET_NAMES[d]] = word + (f" ({'; '.join(detail)})" if detail else "")
        table[f"{h.statement} — *{h.see}*"] = cells
    df = pd.DataFrame.from_dict(table, orient="index")
    df.index.name = "the paper's claim — where we test it"
    return df


def verdict_markdown(paper: str, records: list[dict], notebooks: dict[str, str]) -> str:
    """The verdict box as the paper's page includes it (a table under an admonition)."""
    df = verdict_box(paper, records, notebooks)
    return "\n".join([":::{admonition} Verdicts: the paper's claims and what we find", ":class: tip", "",
                      df.to_markdown(disable_numparse=True), "",
                      "Status words as defined on the {doc}`landing page </book/index>`; each links to the "
                      "notebook that decides it. Generated from the results records.", ":::", ""])


def status_definitions() -> str:
    """The status words of every verdict box, for the landing page."""
    return "\n".join(f"- **{k}** — {v}" for k, v in HEADLINE_STATUSES.items()) + "\n"


def console(text: str):
    """A terminal session as a notebook shows it and a page pastes it (``glue``): preformatted HTML, the
    text escaped (a Markdown object would be pasted as its repr)."""
    import html

    from IPython.display import HTML
    return HTML(f'<pre class="console">{html.escape(text)}</pre>')
