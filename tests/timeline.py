"""Summarise a ``WMLIB_TIMELINE`` file: per worker its busy time and its units of work in order, and
the units that took longest (the suite's critical path is the busiest worker)."""
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from conftest import unit  # noqa: E402


def main(path: str) -> None:
    rows = [line.rstrip("\n").split("\t") for line in open(path)]
    t0 = min(float(r[1]) for r in rows)
    units = defaultdict(lambda: [None, 0.0, 0.0, 0])        # worker, first start, last end, tests
    for worker, start, end, node in rows:
        u = units[(worker, unit(node))]
        u[0] = worker
        u[1] = float(start) - t0 if u[3] == 0 else min(u[1], float(start) - t0)
        u[2] = max(u[2], float(end) - t0)
        u[3] += 1
    by_worker = defaultdict(list)
    for (worker, name), (w, a, b, n) in units.items():
        by_worker[worker].append((a, b, n, name))
    for worker in sorted(by_worker):
        items = sorted(by_worker[worker])
        print(f"{worker}: ends at {max(b for _, b, _, _ in items):.0f} s, "
              f"busy {sum(b - a for a, b, _, _ in items):.0f} s")
        for a, b, n, name in items:
            print(f"   {a:6.0f} → {b:6.0f} ({b - a:5.0f} s, {n:3d} tests) {name}")


if __name__ == "__main__":
    main(sys.argv[1])
