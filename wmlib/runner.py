"""Run the paper notebooks with papermill, and build the book from them.

    python -m wmlib.runner run   [--profile cpu] [--paper adi2018] [--dataset mnist]  # execute
    python -m wmlib.runner book                                                       # build site
    python -m wmlib.runner smoke [--out build/smoke]          # smoke notebooks for nbval (not run)

``run`` writes ``build/executed/<paper>-<dataset>.ipynb`` and their results records
(``build/executed/results/``); ``book`` renders ``_build/html`` from them without re-executing.
The profile defaults to ``paper`` on a GPU and ``cpu`` otherwise (``PROFILE`` overrides).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import data as D
from . import papers, report, results, settings
from .cache import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
EXECUTED = ROOT / "build" / "executed"
BOOK_FILES = ("_config.yml", "_toc.yml", "book", "references.bib")


pairs = papers.pairs


def execute(paper: str, dataset: str, profile: str, out_dir: Path, *, prepare_only: bool = False,
            progress: bool = True, seed: int = 0, tiny: bool = False) -> Path:
    """Execute (or only parametrise) ``notebooks/<paper>.py`` for ``dataset`` at ``profile``.

    ``tiny``: the profile's models and steps at a size that runs in seconds (a test that the
    ``paper`` profile still runs on a CPU)."""
    import jupytext
    import papermill

    papers.settings(paper, profile, dataset)          # validates the three names
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{paper}-{dataset}.ipynb"
    nb = jupytext.read(ROOT / "notebooks" / f"{paper}.py")
    params = dict(dataset=dataset, profile=profile, seed=seed)
    if tiny:
        params["tiny"] = True
    if not prepare_only:
        params["results_dir"] = str((out_dir / "results").resolve())
        for stale in (out_dir / "results").glob(f"{paper}-{dataset}-*.json"):
            stale.unlink()       # a record from another profile would contradict the notebook
    tmp = out.with_name(f".{out.stem}.part.ipynb")
    failed = out.with_name(f"{out.stem}.failed.ipynb")
    failed.unlink(missing_ok=True)
    try:
        papermill.execute_notebook(nb, str(tmp), parameters=params, cwd=str(ROOT),
                                   kernel_name="python3", prepare_only=prepare_only,
                                   progress_bar=progress and not prepare_only)
        os.replace(tmp, out)
    except Exception:
        if tmp.exists():         # keep what ran, outside the book, for the reader to inspect
            os.replace(tmp, failed)
            print(f"[wmbook] {paper} / {dataset} failed; the partly executed notebook is {failed}",
                  file=sys.stderr, flush=True)
        raise
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def run(profile: str, out_dir: Path = EXECUTED, papers=None, datasets=None) -> list[Path]:
    """Execute every selected (paper, dataset) notebook at ``profile``; record the minutes each took."""
    done = []
    timings_file = Path(out_dir) / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    selected = pairs(papers, datasets, profile if datasets else None)
    for dataset in sorted({d for _, d in selected}):
        D.require(dataset)          # a dataset that is not here stops the run before it starts
    for paper, dataset in selected:
        t0 = time.time()
        print(f"[wmbook] {paper} / {dataset} at profile {profile} ...", flush=True)
        done.append(execute(paper, dataset, profile, out_dir))
        minutes = (time.time() - t0) / 60
        print(f"[wmbook] {paper} / {dataset} done in {minutes:.1f} min", flush=True)
        rec = results.read(results.results_path(paper, dataset, profile, Path(out_dir) / "results"))
        old = timings.get(f"{paper}-{dataset}", {})
        first = old.get("first_run_minutes") if old.get("profile") == profile else None
        timings[f"{paper}-{dataset}"] = {"paper": paper, "dataset": dataset, "profile": profile,
                                         "first_run_minutes": first if first is not None else minutes,
                                         "wall_minutes": minutes,
                                         "compute_minutes": rec.get("compute_minutes")}
        atomic_write_json(timings, timings_file)
    write_summary(out_dir)
    return done


def prepare_smoke(out_dir: Path = ROOT / "build" / "smoke") -> list[Path]:
    """Every (paper, dataset) notebook of the book with smoke parameters injected, not executed
    (for nbval)."""
    return [execute(p, d, "smoke", out_dir, prepare_only=True) for p, d in pairs()]


def write_summary(executed_dir: Path) -> Path:
    """``summary.md`` for the landing page, from the results records of the executed notebooks:
    per paper, published numbers and how many we regenerate with which status; one figure of the
    paper's value against ours for every numeric claim (``landing.png``); and every headline row,
    folded."""
    executed_dir = Path(executed_dir)
    records = results.read_all(executed_dir / "results")
    overview = report.paper_overview(records, papers.PAPERS)
    parts = [overview.to_markdown(disable_numparse=True), ""]
    if report.landing_figure(records, executed_dir / "landing.png"):
        parts += ["```{figure} ../build/executed/landing.png", ":width: 100%", "",
                  "Every published number we regenerate: the paper's value (x) against ours (y), "
                  "coloured by status; on the dotted line they agree.", "```", ""]
    else:
        (executed_dir / "landing.png").unlink(missing_ok=True)
        parts += ["*No executed notebook yet: run `python -m wmlib.runner run`.*", ""]
    table = report.summary_table(records)
    body = table.to_markdown(index=False, disable_numparse=True) if len(table) else "no executed notebook yet"
    parts += [f"::::{{dropdown}} Every headline number ({len(table)} rows)", "", body, "", "::::", ""]
    path = executed_dir / "summary.md"
    path.write_text("\n".join(parts))
    write_timings(executed_dir)
    return path


def write_timings(executed_dir: Path) -> Path:
    """``timings.md``: per notebook, the first and last runs' wall time and the training it used
    (the training column counts models that were cached by then too: what an empty cache costs)."""
    src = Path(executed_dir) / "timings.json"
    rows = json.loads(src.read_text()).values() if src.exists() else []
    fmt = (lambda v: "—" if v is None else f"{v:.1f}")
    lines = ["| paper | dataset | profile | first run (min) | last run (min) "
             "| training of the models used (min) |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['paper']} | {r['dataset']} | {r['profile']} | {fmt(r.get('first_run_minutes'))} "
              f"| {fmt(r['wall_minutes'])} | {fmt(r['compute_minutes'])} |" for r in rows]
    if not rows:
        lines.append("| — | — | — | not recorded: these notebooks were not run by `wmlib.runner run` "
                     "| — | — |")
    path = Path(executed_dir) / "timings.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def stage(dst: Path, executed_dir: Path) -> Path:
    """A copy of the book's sources at ``dst`` with ``executed_dir`` as its ``build/executed``."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for name in BOOK_FILES:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst / name)
    shutil.copytree(executed_dir, dst / "build" / "executed")
    if (ROOT / "build" / "mathjax").is_dir():
        shutil.copytree(ROOT / "build" / "mathjax", dst / "build" / "mathjax")
    return dst


def build_book(source: Path = ROOT, strict: bool = True) -> Path:
    """``jupyter-book build`` (notebooks are not re-executed); returns ``_build/html``."""
    executed = Path(source) / "build" / "executed"
    missing = [f"{p}-{d}.ipynb" for p, d in pairs() if not (executed / f"{p}-{d}.ipynb").exists()]
    if missing:
        raise FileNotFoundError(f"executed notebooks missing in {executed}: {missing}; "
                                "run `python -m wmlib.runner run` first")
    write_summary(executed)
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(source), "--keep-going"]
    if strict:
        cmd.insert(-1, "-W")
    subprocess.run(cmd, check=True)
    return Path(source) / "_build" / "html"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m wmlib.runner", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute notebooks with papermill")
    r.add_argument("--profile", default=os.environ.get("PROFILE") or settings.default_profile(),
                   choices=settings.PROFILES)
    r.add_argument("--paper", action="append", help="paper(s) to run (default: all)")
    r.add_argument("--dataset", action="append", help="dataset(s) to run (default: all)")
    r.add_argument("--out", type=Path, default=EXECUTED)
    sub.add_parser("book", help="build the book from build/executed")
    s = sub.add_parser("smoke", help="write smoke-parameter notebooks for nbval")
    s.add_argument("--out", type=Path, default=ROOT / "build" / "smoke")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "run":
            run(a.profile, a.out, a.paper, a.dataset)
        elif a.cmd == "book":
            print("built", build_book())
        else:
            for p in prepare_smoke(a.out):
                print("prepared", p)
    except (ValueError, FileNotFoundError) as err:     # bad input or missing data: one line, no traceback
        ap.exit(2, f"{ap.prog}: error: {err}\n")


if __name__ == "__main__":
    main()
