"""Where people wait, against the budgets: the test suite (12 min on a fresh clone, install
included) and the first ``cpu`` book (2 h, each notebook 25 min, a rebuild from the cache 2 min).

    python benchmarks/speed_bench.py suite [--report build/suite.xml] [--install-seconds S] [-- PYTEST ARGS]
    python benchmarks/speed_bench.py book  [--executed build/executed]

``suite`` runs the README's test command (``make test``, with a JUnit report) unless ``--report``
names one already written, and prints per part of the suite (unit tests, the
notebooks under nbval, the paper profile shrunk by ``tiny()``, the smoke grid with the book and the
browser) the seconds its tests took, then the wall time against the budget as a ratio
(``--install-seconds``: what the install took, added to the wall time). Under pytest-xdist the
parts' seconds add up to more than the wall time: both cores work.

``book`` reads ``timings.json`` of an executed book (``runner run`` writes it) and prints each
notebook's first run against 25 minutes, its last run (from the cache), its time from an empty cache
where its first run began empty (its independent trainings + the notebook; ``—`` where that run found
work cached, and the book's total then counts its first run, marked ``≥``) beside the plan's estimate
made before it ran; then the totals against 2 hours and 2 minutes. ``--update-work`` records the
other work of the first runs that began empty in ``wmlib/work.json`` for the plan (run it on the
machine that ran them).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))             # wmlib from this checkout
SUITE_BUDGET_MIN = 12.0
BOOK_BUDGET_MIN, NOTEBOOK_BUDGET_MIN, REBUILD_BUDGET_MIN = 120.0, 25.0, 2.0
PLAN_TOLERANCE = 0.25


def part(classname: str, file: str) -> str:
    """The part of the suite a test case belongs to."""
    name = f"{file} {classname}"
    if ".ipynb" in name or "build.smoke" in name:
        return "notebooks at smoke (nbval)"
    if "test_paper_profile" in name:
        return "paper profile, tiny"
    if any(k in name for k in ("test_book", "test_browser")):
        return "smoke site: grid, book, browser"
    return "unit tests"


def suite(args) -> None:
    report = Path(args.report) if args.report else ROOT / "build" / "suite.xml"
    wall = None
    if not args.report:
        flags = " ".join([f"--junitxml={report}", *args.pytest_args])
        t0 = time.perf_counter()
        subprocess.run(["make", "test", f"PYTEST_EXTRA={flags}"], cwd=ROOT)
        wall = time.perf_counter() - t0
    seconds, counts = defaultdict(float), defaultdict(int)
    for case in ET.parse(report).getroot().iter("testcase"):
        p = part(case.get("classname", ""), case.get("file", ""))
        seconds[p] += float(case.get("time", 0))
        counts[p] += 1
    print(f"{'part':32s} {'tests':>6s} {'seconds':>9s}")
    for p in sorted(seconds, key=seconds.get, reverse=True):
        print(f"{p:32s} {counts[p]:6d} {seconds[p]:9.0f}")
    print(f"{'all parts':32s} {sum(counts.values()):6d} {sum(seconds.values()):9.0f}")
    if wall is not None:
        total = wall + args.install_seconds
        print(f"suite wall {wall / 60:.1f} min + install {args.install_seconds / 60:.1f} min = {total / 60:.1f} min; "
              f"budget {SUITE_BUDGET_MIN:.0f} min; ratio {total / 60 / SUITE_BUDGET_MIN:.2f}")


def book(args) -> None:
    from wmlib import plan
    from wmlib.plan import empty_cache_minutes
    folder = Path(args.executed)
    src = folder / "timings.json"
    if not src.exists():
        sys.exit(f"no {src}: run `python -m wmlib.runner run --profile cpu` first")
    rows = [r for r in json.loads(src.read_text()).values() if r.get("seed", 0) == 0]
    print(f"{'notebook':28s} {'first (min)':>11s} {'/25':>5s} {'rebuild (min)':>13s} "
          f"{'empty cache (min)':>17s} {'plan (min)':>10s} {'plan/measured':>13s}")
    first_total = last_total = empty_total = 0.0
    unmeasured = 0
    for r in sorted(rows, key=lambda r: (r["paper"], r["dataset"])):
        name = f"{r['paper']}-{r['dataset']}"
        first, last = r.get("first_run_minutes") or 0.0, r.get("wall_minutes") or 0.0
        empty, planned = empty_cache_minutes(r), r.get("planned_minutes")
        first_total, last_total = first_total + first, last_total + last
        empty_total += first if empty is None else empty
        unmeasured += empty is None
        ratio = f"{planned / empty:13.2f}" if empty and planned is not None else f"{'—':>13s}"
        print(f"{name:28s} {first:11.1f} {first / NOTEBOOK_BUDGET_MIN:5.2f} {last:13.1f} "
              f"{'—' if empty is None else f'{empty:.1f}':>17s} "
              f"{planned if planned is not None else float('nan'):10.1f} {ratio}")
    print(f"first book {first_total:.1f} min, from an empty cache {'≥ ' if unmeasured else ''}{empty_total:.1f} min"
          + (f" ({unmeasured} first run(s) found work cached: their first run counts)" if unmeasured else "")
          + ", budget "
          f"{BOOK_BUDGET_MIN:.0f}: ratio {empty_total / BOOK_BUDGET_MIN:.2f}; rebuild {last_total:.1f} min, "
          f"budget {REBUILD_BUDGET_MIN:.0f}: ratio {last_total / REBUILD_BUDGET_MIN:.2f}; the plan should lie "
          f"within {PLAN_TOLERANCE:.0%} of each measurement")
    if args.update_work:
        work = plan.update_work(rows)
        taken = sum(map(plan.measured_other_work, rows))
        print(f"wrote {plan.WORK_FILE}: the other work of {taken} first run(s) that began empty "
              f"({len(rows) - taken} left out); {sum(map(len, work.values()))} notebook(s) measured in all")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("suite")
    s.add_argument("--report", help="a JUnit XML report already written (do not run the suite)")
    s.add_argument("--install-seconds", type=float, default=0.0)
    s.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    b = sub.add_parser("book")
    b.add_argument("--executed", default=str(ROOT / "build" / "executed"))
    b.add_argument("--update-work", action="store_true",
                   help="record these first runs' other work in wmlib/work.json (the plan reads it)")
    a = ap.parse_args(argv)
    (suite if a.cmd == "suite" else book)(a)


if __name__ == "__main__":
    main()
