"""Tables and figures for the notebooks: ours beside the paper's, the profile named."""
from __future__ import annotations

import math

import pandas as pd

from .results import Row


def format_value(v, unit: str) -> str:
    """A number as tables show it: one decimal for percentages, three significant digits else."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.1f}" if unit == "%" else f"{v:.3g}"


def comparison(rows: list[Row], profile: str) -> pd.DataFrame:
    """A table with the paper's number, ours (at ``profile``) and the gap, one row per quantity."""
    ours_col = f"ours ({profile})"
    out = []
    for r in rows:
        gap = (r.ours - r.paper) if (r.ours is not None and r.paper is not None) else None
        out.append({"quantity": r.quantity, "paper": format_value(r.paper, r.unit),
                    ours_col: format_value(r.ours, r.unit),
                    "gap": format_value(gap, r.unit) if gap is not None else "—",
                    "status": r.status or "—", "note": r.note})
    return pd.DataFrame(out).set_index("quantity")


def markdown(df: pd.DataFrame):
    """Display a DataFrame as a Markdown table (renders as a real table in the book)."""
    from IPython.display import Markdown
    return Markdown(df.to_markdown())
