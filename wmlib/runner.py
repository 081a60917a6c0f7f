"""Run the paper notebooks with papermill, and build the book from them.

    python -m wmlib.runner run   [--profile cpu] [--paper adi2018] [--dataset mnist] [--seeds 0 1 2]
                                 [--executor inprocess|local|slurm] [--parallel N] [--partition P ...]
    python -m wmlib.runner plan  [--profile paper] [--seeds 0 1 2]   # the jobs, cached or not, their cost
    python -m wmlib.runner book                                      # build the site, no execution
    python -m wmlib.runner smoke [--out build/smoke]                 # smoke notebooks for nbval (not run)

``run`` writes ``build/executed/<paper>-<dataset>.ipynb`` (the lowest seed: the page) and
``build/executed/seeds/<paper>-<dataset>-seed<k>.ipynb`` (the other seeds), and every seed's results
record (``build/executed/results/<paper>-<dataset>-<profile>-seed<k>.json``); ``book`` renders
``_build/html`` from them without re-executing, with each headline's spread over the seeds.
The independent trainings run first as jobs of their own, then the notebooks (:mod:`wmlib.grid`).
The profile defaults to ``paper`` on a GPU and ``cpu`` otherwise (``PROFILE`` overrides;
``SEEDS`` gives the default seeds).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

from . import data as D
from . import grid, papers, report, results, seeds as seeds_mod, settings
from .files import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
EXECUTED = grid.EXECUTED
BOOK_FILES = ("_config.yml", "_toc.yml", "book", "references.bib")


pairs = papers.pairs


def notebook_path(paper: str, dataset: str, out_dir: Path, seed: int = 0, page: bool = True) -> Path:
    """Where a run's executed notebook goes: the page's (``page``) or a further seed's."""
    out_dir = Path(out_dir)
    return out_dir / f"{paper}-{dataset}.ipynb" if page else out_dir / "seeds" / f"{paper}-{dataset}-seed{seed}.ipynb"


def execute(paper: str, dataset: str, profile: str, out_dir: Path, *, prepare_only: bool = False,
            progress: bool = True, seed: int = 0, tiny: bool = False, page: bool = True, kernel=None) -> Path:
    """Execute (or only parametrise) ``notebooks/<paper>.py`` for ``dataset`` at ``profile``.

    ``tiny``: the profile's models and steps at a size that runs in seconds (a test that the
    ``paper`` profile still runs on a CPU). ``page``: the notebook the book shows (else it goes to
    ``seeds/``); every seed's record goes to ``out_dir/results`` (a prepared notebook's too, when
    something else runs it: nbval). ``kernel``: a started kernel (a jupyter_client ``KernelManager``
    from :func:`shared_kernel`) to run in instead of a new one; its names are cleared first
    (:func:`clear_kernel`) and the modules it imported stay, so a series of runs imports torch,
    scipy and the rest once (about 8 s of CPU per notebook)."""
    import jupytext
    import papermill

    papers.settings(paper, profile, dataset)          # validates the three names
    out_dir = Path(out_dir)
    out = notebook_path(paper, dataset, out_dir, seed, page)
    out.parent.mkdir(parents=True, exist_ok=True)
    nb = jupytext.read(ROOT / "notebooks" / f"{paper}.py")
    params = dict(dataset=dataset, profile=profile, seed=seed)
    if tiny:
        params["tiny"] = True
    params["results_dir"] = str((out_dir / "results").resolve())
    if not prepare_only:
        for stale in (out_dir / "results").glob(f"{paper}-{dataset}-*.json"):
            if not stale.name.startswith(f"{paper}-{dataset}-{profile}-seed") or \
                    stale == results.results_path(paper, dataset, profile, out_dir / "results", seed):
                stale.unlink()   # another profile's record would contradict the notebook; this seed's is redone
    tmp = out.with_name(f".{out.stem}.part.ipynb")
    failed = out.with_name(f"{out.stem}.failed.ipynb")
    failed.unlink(missing_ok=True)
    if kernel is not None and not prepare_only:
        clear_kernel(kernel)
    try:
        papermill.execute_notebook(nb, str(tmp), parameters=params, cwd=str(ROOT),
                                   kernel_name="python3", prepare_only=prepare_only,
                                   progress_bar=progress and not prepare_only,
                                   **({"km": kernel} if kernel is not None else {}))
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


def shared_kernel(env: dict[str, str] | None = None):
    """A started python3 kernel in the repository root, for :func:`execute`'s ``kernel``, with
    environment ``env`` (None: this process's); shut it down with ``kernel.shutdown_kernel(now=True)``."""
    from jupyter_client import KernelManager
    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(ROOT), env=dict(os.environ if env is None else env))
    return km


def clear_kernel(km, timeout: float = 120) -> None:
    """Forget every name the last notebook defined in kernel ``km`` (IPython's ``%reset -f``) and
    close its figures; imported modules stay loaded. Raises if the kernel does not answer."""
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=timeout)
        reply = kc.execute_interactive("get_ipython().run_line_magic('reset', '-f')\n"
                                       "import matplotlib.pyplot\nmatplotlib.pyplot.close('all')\ndel matplotlib",
                                       timeout=timeout, output_hook=lambda msg: None)
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"the shared kernel could not be cleared: {reply['content']}")
    finally:
        kc.stop_channels()


def run_notebook(job: grid.Job, out_dir: Path = EXECUTED) -> dict:
    """Job body: execute one notebook; return its timing (the parent writes ``timings.json``)."""
    from .train import trained_minutes_since
    t0 = time.time()
    execute(job.paper, job.dataset, job.profile, out_dir, seed=job.seed, page=job.page, progress=False)
    minutes = (time.time() - t0) / 60
    trained = trained_minutes_since(t0)                       # the owner's trainings this run made
    path = results.results_path(job.paper, job.dataset, job.profile, Path(out_dir) / "results", job.seed)
    rec = dict(results.read(path), wall_minutes=minutes, trained_minutes=trained)   # what its run took
    atomic_write_json(rec, path)
    return {"paper": job.paper, "dataset": job.dataset, "profile": job.profile, "seed": job.seed,
            "wall_minutes": minutes, "trained_minutes": trained, "other_minutes": max(minutes - trained, 0.0),
            "compute_minutes": rec.get("compute_minutes"), "ran_on": rec.get("ran_on")}


def _estimates(profile: str, papers, datasets, seeds, out_dir: Path, nb_jobs: list[grid.Job]):
    """Before a run: each job's estimated minutes here (the plan's rows: what the run's bar advances
    by) and each notebook's estimate from an empty cache (:func:`wmlib.plan.estimate`, kept beside its
    measured time). Empty at ``smoke`` (seconds: the bar counts jobs) or where data is missing."""
    if profile == "smoke":
        return {}, {}
    from . import plan as plan_mod
    try:
        df = plan_mod.plan(profile, papers, datasets, seeds, out_dir)
        speeds: dict = {}
        empty = {j.label: plan_mod.estimate(j.paper, j.dataset, j.profile, j.seed, speeds)["minutes"] for j in nb_jobs}
    except (FileNotFoundError, RuntimeError, ValueError):     # data missing: the run says so itself
        return {}, {}
    return dict(zip(df["job"], df["minutes"])), empty


def run(profile: str, out_dir: Path = EXECUTED, papers=None, datasets=None, seeds=(0,),
        executor: str = "inprocess", parallel: int = 1, slurm: grid.Slurm | None = None) -> list[grid.Outcome]:
    """Execute every selected (paper, dataset) notebook at ``profile`` for every seed, the
    independent trainings first; record the minutes each took. A failed job is reported with its
    log and the command that reruns it alone; what the others produced is kept."""
    out_dir = Path(out_dir)
    selected, train_jobs, nb_jobs = grid.grid_jobs(profile, papers, datasets, seeds, out_dir)
    for dataset in sorted({d for _, d in selected}):
        D.require(dataset)          # a dataset that is not here stops the run before it starts
    from .train import is_trained
    todo = [j for j, cfg in train_jobs if not is_trained(cfg)]
    log_dir = out_dir / "logs"
    print(f"[wmbook] {len(nb_jobs)} notebook(s) at profile {profile}, seeds {sorted(set(seeds))}, on "
          f"{executor}; {len(todo)} independent training(s) to run first "
          f"({len(train_jobs) - len(todo)} cached)", flush=True)
    minutes, planned = _estimates(profile, papers, datasets, seeds, out_dir, nb_jobs)
    # one bar over the whole run: in the plan's estimated minutes (its ETA is the time left), else in jobs
    weight = (lambda j: max(minutes.get(j.label, 0.0), 0.1)) if minutes else None   # a job the plan cannot count still moves it
    total = sum(map(weight, [*todo, *nb_jobs])) if minutes else len(todo) + len(nb_jobs)
    bar = tqdm(total=round(total, 1), desc=f"run ({'estimated minutes' if minutes else 'jobs'})",
               unit="min" if minutes else "job", disable=not (todo or nb_jobs),
               bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} [{elapsed}<{remaining}{postfix}]" if minutes else None)
    try:
        outcomes = grid.execute(todo, grid.run_training, executor, log_dir=log_dir, parallel=parallel,
                                slurm=slurm, bar=bar, weight=weight)
        outcomes += grid.execute(nb_jobs, functools.partial(run_notebook, out_dir=out_dir), executor, log_dir=log_dir,
                                 parallel=parallel, slurm=slurm, bar=bar, weight=weight)
    finally:
        bar.close()
    timings_file = out_dir / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    jobs_minutes = _jobs_minutes(outcomes, [j for j, _ in train_jobs], todo)
    for o in outcomes:
        if o.ok and o.job.kind == "notebook":
            t = o.value
            k = f"{t['paper']}-{t['dataset']}" + ("" if o.job.page else f"-seed{t['seed']}")
            old = timings.get(k, {}) if timings.get(k, {}).get("profile") == profile else {}
            first = {f: old[f] for f in ("first_run_minutes", "first_run_other_minutes", "first_run_trained_minutes",
                                         "first_run_jobs_minutes", "planned_minutes") if old.get(f) is not None}
            timings[k] = {**t, "first_run_minutes": t["wall_minutes"], "first_run_other_minutes": t["other_minutes"],
                          "first_run_trained_minutes": t["trained_minutes"], "planned_minutes": planned.get(o.job.label),
                          "first_run_jobs_minutes": jobs_minutes.get((o.job.paper, o.job.dataset, o.job.seed)),
                          **first}
    atomic_write_json(timings, timings_file)
    write_summary(out_dir)
    failed = grid.report_failures(outcomes, out_dir / "failed.json")
    if failed:
        print(f"[wmbook] {len(failed)} job(s) failed (listed in {out_dir / 'failed.json'}); the others' "
              "results are kept:", file=sys.stderr, flush=True)
        for o in failed:
            print(f"  {o.job.label}: {o.error}\n    log: {o.log}\n    rerun: {o.job.rerun()}", file=sys.stderr)
    return outcomes


def prepare_smoke(out_dir: Path = ROOT / "build" / "smoke") -> list[Path]:
    """Every (paper, dataset) notebook of the book with smoke parameters injected, not executed
    (for nbval; their records go to ``out_dir/results``)."""
    return [execute(p, d, "smoke", out_dir, prepare_only=True) for p, d in pairs()]


def write_summary(executed_dir: Path) -> Path:
    """``summary.md`` for the landing page, from the results records of the executed notebooks:
    per paper, published numbers and how many we regenerate with which status; one figure of the
    paper's value against ours for every numeric claim (``landing.png``); and every headline row,
    folded."""
    executed_dir = Path(executed_dir)
    every_seed = results.read_all(executed_dir / "results")
    records = results.pages(every_seed)
    write_spreads(executed_dir, every_seed)
    write_verdicts(executed_dir, records)
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
    over = seeds_mod.figure(every_seed, executed_dir / "seeds.png")
    if not over:
        (executed_dir / "seeds.png").unlink(missing_ok=True)
    parts += ["**Over seeds.** " + seeds_mod.markdown(every_seed, figure_path="../build/executed/seeds.png"
                                                        if over else None), ""]
    parts += ["**What the status words mean.** Each paper page opens with a verdict box: the paper's headline "
              "claims, and for each dataset one of these words, applied alike to every paper:", "",
              report.status_definitions()]
    path = executed_dir / "summary.md"
    path.write_text("\n".join(parts))
    write_timings(executed_dir)
    plan_md = executed_dir / "plan-paper.md"
    if not plan_md.exists():
        plan_md.write_text("*No plan was made for this build: `python -m wmlib.runner plan --profile paper "
                           "--markdown build/executed/plan-paper.md` (which `make book` runs) writes it here.*\n")
    return path


def write_verdicts(executed_dir: Path, records: list[dict]) -> list[Path]:
    """``verdicts/<paper>.md``: the verdict box that opens each paper's page (:func:`report.verdict_markdown`)."""
    folder = Path(executed_dir) / "verdicts"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for pid in papers.PAPERS:
        notebooks = {d: f"/build/executed/{p}-{d}" for p, d in pairs() if p == pid}
        path = folder / f"{pid}.md"
        path.write_text(report.verdict_markdown(pid, records, notebooks))
        out.append(path)
    return out


def write_spreads(executed_dir: Path, records: list[dict]) -> list[Path]:
    """``spread/<paper>.md`` for each paper's page: its headlines over the seeds that ran."""
    folder = Path(executed_dir) / "spread"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for pid in papers.PAPERS:
        path = folder / f"{pid}.md"
        path.write_text(seeds_mod.markdown(records, pid))
        out.append(path)
    return out


def _jobs_minutes(outcomes: list[grid.Outcome], train_jobs: list[grid.Job], todo: list[grid.Job]) -> dict:
    """(paper, dataset, seed) → wall minutes of its independent trainings (0 for a notebook without
    any), for the notebooks none of whose trainings was cached when the run began or failed (what
    its empty-cache time adds to the notebook's)."""
    warm = {(j.paper, j.dataset, j.seed) for j in train_jobs if j not in todo}
    out: dict = {}
    for o in outcomes:
        key = (o.job.paper, o.job.dataset, o.job.seed)
        if key not in warm:
            out[key] = out.get(key, 0.0) + (0.0 if o.job.kind == "notebook" else o.minutes if o.ok else float("nan"))
    return {k: v for k, v in out.items() if v == v}


def write_timings(executed_dir: Path) -> Path:
    """``timings.md``: per notebook, the first and last runs' wall time, the compute its record counts,
    and its time from an empty cache (where its first run began empty) beside the plan's estimate made
    before it ran."""
    from .plan import empty_cache_minutes
    src = Path(executed_dir) / "timings.json"
    rows = json.loads(src.read_text()).values() if src.exists() else []
    fmt = (lambda v: "—" if v is None else f"{v:.1f}")

    def ratio(r):
        m, p = empty_cache_minutes(r), r.get("planned_minutes")
        return "—" if not m or p is None else f"{p / m:.2f}"
    lines = ["Minutes per notebook:", "",
             "| notebook | ran on | first run | last run | compute of what it used (its record) "
             "| empty cache, measured | plan | plan / measured |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['paper']} {r['dataset']} {r['profile']}, seed {r.get('seed', 0)} | {_ran_on(r.get('ran_on'))} "
              f"| {fmt(r.get('first_run_minutes'))} | {fmt(r['wall_minutes'])} | {fmt(r['compute_minutes'])} "
              f"| {fmt(empty_cache_minutes(r))} | {fmt(r.get('planned_minutes'))} | {ratio(r)} |"
              for r in sorted(rows, key=lambda r: (r["paper"], r["dataset"], r.get("seed", 0)))]
    if not rows:
        lines.append("| not recorded: these notebooks were not run by `wmlib.runner run` | — | — | — | — | — | — | — |")
    path = Path(executed_dir) / "timings.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _ran_on(r: dict | None) -> str:
    return "—" if not r else f"{r.get('device', '?')}, {r.get('precision', '?')}, {r.get('cpu capability', '')}".rstrip(", ")


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


def _seeds_default() -> list[int]:
    env = os.environ.get("SEEDS", "").replace(",", " ").split()
    try:
        return [int(x) for x in env] or [0]
    except ValueError:
        raise ValueError(f"SEEDS={os.environ['SEEDS']!r} must be whole numbers, e.g. SEEDS=\"0 1 2\"") from None


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m wmlib.runner", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def grid_args(p):
        p.add_argument("--profile", default=os.environ.get("PROFILE") or settings.default_profile(),
                       choices=settings.PROFILES)
        p.add_argument("--paper", action="append", help="paper(s) to run (default: all)")
        p.add_argument("--dataset", action="append", help="dataset(s) to run (default: all)")
        p.add_argument("--seeds", type=int, nargs="+", default=None,
                       help="seeds to run, e.g. --seeds 0 1 2 (default: $SEEDS or 0)")
        p.add_argument("--out", type=Path, default=EXECUTED)

    r = sub.add_parser("run", help="execute notebooks with papermill")
    grid_args(r)
    r.add_argument("--executor", default="inprocess", choices=grid.EXECUTORS,
                   help="inprocess (default), local (a process per job, submitit) or slurm (submitit)")
    r.add_argument("--parallel", type=int, default=1, help="local: jobs at once (default 1)")
    r.add_argument("--partition", help="slurm: the partition")
    r.add_argument("--gpus-per-job", type=int, default=1, help="slurm: GPUs per job (default 1)")
    r.add_argument("--time-limit", type=int, default=240, help="slurm: minutes per job (default 240)")
    r.add_argument("--cpus-per-job", type=int, default=8, help="slurm: CPUs per job (default 8)")
    r.add_argument("--mem-gb", type=int, default=32, help="slurm: memory per job (default 32)")
    pl = sub.add_parser("plan", help="list the jobs a run would start, what is cached, and their cost")
    grid_args(pl)
    pl.add_argument("--markdown", type=Path, help="also write the plan as markdown to this file")
    sub.add_parser("book", help="build the book from build/executed")
    s = sub.add_parser("smoke", help="write smoke-parameter notebooks for nbval")
    s.add_argument("--out", type=Path, default=ROOT / "build" / "smoke")
    a = ap.parse_args(argv)
    try:
        if a.cmd in ("run", "plan"):
            seeds = a.seeds if a.seeds is not None else _seeds_default()
            if any(s < 0 for s in seeds):
                raise ValueError(f"--seeds {seeds}: seeds must be >= 0")
        if a.cmd == "run":
            slurm = grid.Slurm(a.partition, a.gpus_per_job, a.time_limit, a.cpus_per_job, a.mem_gb)
            outcomes = run(a.profile, a.out, a.paper, a.dataset, seeds, a.executor, a.parallel, slurm)
            if not all(o.ok for o in outcomes):
                sys.exit(1)
        elif a.cmd == "plan":
            from . import plan as plan_mod
            df = plan_mod.plan(a.profile, a.paper, a.dataset, seeds, a.out)
            text = plan_mod.markdown(df, a.profile)
            print(text)
            if a.markdown:
                a.markdown.parent.mkdir(parents=True, exist_ok=True)
                a.markdown.write_text(text)
        elif a.cmd == "book":
            print("built", build_book())
        else:
            for p in prepare_smoke(a.out):
                print("prepared", p)
    except (ValueError, FileNotFoundError) as err:     # bad input or missing data: one line, no traceback
        ap.exit(2, f"{ap.prog}: error: {err}\n")


if __name__ == "__main__":
    main()
