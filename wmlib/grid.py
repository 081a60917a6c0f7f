"""The jobs of a run, through one executor: in this process, a local process pool or a Slurm
cluster. The engine is submitit (its ``LocalExecutor`` and ``AutoExecutor(cluster="slurm")``);
this module only says what the jobs are and reports how they went.

A run has two phases. First the *independent trainings* (models no other training depends on and
that a notebook asks for plainly: Le Merrer et al.'s networks and unmarked models, IPCert's clean
and non-stolen models, Tartaglione et al.'s unmarked ones), each a job, deduplicated by cache key
and skipped when cached. Then one job per *notebook*: (paper, dataset, profile, seed), which finds
those models in the shared cache (:mod:`wmlib.cache` locks an entry while it is made).
"""
from __future__ import annotations

import os
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from . import papers, results
from .train import TrainConfig

EXECUTORS = ("inprocess", "local", "slurm")
LOCAL_TIMEOUT_MIN = 7 * 24 * 60
"""A local job is not cut short (a paper-profile notebook may take a day on one machine)."""
KINDS = ("training", "notebook")
EXECUTED = Path(__file__).resolve().parents[1] / "build" / "executed"
"""Where ``runner run`` writes executed notebooks and results records by default."""


@dataclass(frozen=True)
class Job:
    """One unit of work: a training (``name`` says which) or a notebook."""

    kind: str
    paper: str
    dataset: str
    profile: str
    seed: int
    name: str = "notebook"
    page: bool = False          # a notebook job: the page's notebook (the lowest seed) or a seed's

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r} is not known; accepted values: {list(KINDS)}")

    @property
    def label(self) -> str:
        what = self.name if self.kind == "training" else "notebook"
        return f"{self.paper}/{self.dataset}/{self.profile}/seed{self.seed}: {what}"

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() or c in "-_" else "-" for c in self.label)

    def rerun(self) -> str:
        """The command that reruns this job alone."""
        return (f"python -m wmlib.runner run --paper {self.paper} --dataset {self.dataset} "
                f"--profile {self.profile} --seeds {self.seed}")


@dataclass(frozen=True)
class Slurm:
    """What each Slurm job asks for (submitit's ``slurm_*`` parameters)."""

    partition: str | None = None
    gpus_per_job: int = 1
    time_limit_min: int = 240
    cpus_per_job: int = 8
    mem_gb: int = 32

    def parameters(self) -> dict:
        p = dict(gpus_per_node=self.gpus_per_job, timeout_min=self.time_limit_min,
                 cpus_per_task=self.cpus_per_job, mem_gb=self.mem_gb, name="wmbook")
        if self.partition:
            p["slurm_partition"] = self.partition
        return p


@dataclass
class Outcome:
    job: Job
    ok: bool
    minutes: float
    log: str | None = None       # where the job's output is (a file)
    error: str = ""
    value: object = None         # what the job returned (a notebook: its timing)


# ----------------------------------------------------------------------------- the jobs of a run
def _hook(name: str, paper: str, dataset: str, profile: str, seed: int) -> dict[str, TrainConfig]:
    """``name`` → configurations from the paper's module (none when it has no such function)."""
    fn = getattr(papers.get(paper).module, name, None)
    return fn(papers.settings(paper, profile, dataset), dataset, seed) if fn else {}


def trainings(paper: str, dataset: str, profile: str, seed: int) -> dict[str, TrainConfig]:
    """The independent trainings a notebook asks for (``trainings`` in the paper's module)."""
    return _hook("trainings", paper, dataset, profile, seed)


def owner_trainings(paper: str, dataset: str, profile: str, seed: int) -> dict[str, TrainConfig]:
    """The owner's own trainings the notebook runs itself (``owner_trainings``; the plan's estimate)."""
    return _hook("owner_trainings", paper, dataset, profile, seed)


def training_jobs(selected: list[tuple[str, str]], profile: str, seeds) -> list[tuple[Job, TrainConfig]]:
    """Every independent training of the grid, once per cache key (seed s's unmarked model i is
    seed s + i: seeds share models)."""
    from .train import cache_key
    from .cache import key_hash
    seen, out = set(), []
    for paper, dataset in selected:
        for seed in seeds:
            for name, cfg in trainings(paper, dataset, profile, seed).items():
                h = key_hash(cache_key(cfg))
                if h not in seen:
                    seen.add(h)
                    out.append((Job("training", paper, dataset, profile, seed, name), cfg))
    return out


def page_seed(paper: str, dataset: str, profile: str, seeds, out_dir: Path, records: list[dict] | None = None) -> int:
    """The seed whose notebook the page shows: the lowest that ran (``records``, default: those
    in ``out_dir/results``) or will run at ``profile``."""
    if records is None:
        folder = Path(out_dir) / "results"
        records = results.read_all(folder) if folder.is_dir() else []
    have = [r.get("seed", 0) for r in records if (r["paper"], r["dataset"], r["profile"]) == (paper, dataset, profile)]
    return min([*seeds, *have])


def grid_jobs(profile: str, papers_=None, datasets=None, seeds=(0,), out_dir: Path = EXECUTED):
    """The jobs of a run: independent trainings (not yet cached) and one notebook per seed."""
    selected = papers.pairs(papers_, datasets, profile if datasets else None)
    seeds = sorted({int(s) for s in seeds})
    train_jobs = training_jobs(selected, profile, seeds)
    folder = Path(out_dir) / "results"
    records = results.read_all(folder) if folder.is_dir() else []      # read once for every pair
    nb_jobs = []
    for paper, dataset in selected:
        first = page_seed(paper, dataset, profile, seeds, out_dir, records)
        nb_jobs += [Job("notebook", paper, dataset, profile, s, page=(s == first)) for s in seeds]
    return selected, train_jobs, nb_jobs


def run_training(job: Job) -> dict:
    """Job body: train (or find cached) ``job``'s model."""
    from .train import train
    cfg = trainings(job.paper, job.dataset, job.profile, job.seed)[job.name]
    t = train(cfg, progress=False)
    return {"hash": t.hash, "cache_hit": bool(t.record.get("cache_hit"))}


# ----------------------------------------------------------------------------- executors
def _executor(kind: str, log_dir: Path, slurm: Slurm | None):
    import submitit
    folder = Path(log_dir) / "%j"
    if kind == "local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN)
        return ex
    try:
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
    except RuntimeError as err:              # submitit finds no srun: not on a Slurm cluster
        raise ValueError(f"executor='slurm' needs Slurm (submitit: {err}); run it on the cluster's "
                         "login node, or use --executor local here") from None
    ex.update_parameters(**(slurm or Slurm()).parameters())
    return ex


def execute(jobs: list[Job], fn: Callable[[Job], object], executor: str = "inprocess", *,
            log_dir: Path, parallel: int = 1, slurm: Slurm | None = None, progress: bool = True,
            desc: str = "jobs", bar: tqdm | None = None, weight: Callable[[Job], float] | None = None) -> list[Outcome]:
    """Run ``fn(job)`` for every job on ``executor``; at most ``parallel`` at once (local), all
    queued at once (slurm). A failed job is reported with its log; the others go on. ``bar``: a
    progress bar shared with other calls (advanced by ``weight(job)``, e.g. its estimated minutes,
    else by 1; left open), instead of one of its own."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor={executor!r} is not known; accepted values: {list(EXECUTORS)}")
    if parallel < 1:
        raise ValueError(f"parallel={parallel} must be >= 1")
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    outcomes: list[Outcome] = []
    own_bar = bar is None
    if own_bar:
        bar = tqdm(total=len(jobs), desc=desc, unit="job", disable=not progress or not jobs)

    def done(o: Outcome):
        outcomes.append(o)
        bar.update(weight(o.job) if weight else 1)
        bar.set_postfix(failed=sum(not x.ok for x in outcomes))
        state = "done" if o.ok else "FAILED"
        tqdm.write(f"[wmbook] {state}: {o.job.label} ({o.minutes:.1f} min)"
                   + ("" if o.ok else f"; log: {o.log}; rerun alone: {o.job.rerun()}"))

    if executor == "inprocess":
        for job in jobs:
            t0 = time.time()
            try:
                value = fn(job)
                done(Outcome(job, True, (time.time() - t0) / 60, value=value))
            except Exception as err:       # noqa: BLE001 - a failed job is reported, the grid goes on
                log = log_dir / f"{job.slug}.log"
                log.write_text(traceback.format_exc())
                done(Outcome(job, False, (time.time() - t0) / 60, str(log), f"{type(err).__name__}: {err}"))
        if own_bar:
            bar.close()
        return outcomes

    ex = _executor(executor, log_dir, slurm)
    window = len(jobs) if executor == "slurm" else parallel
    threads = os.environ.get("OMP_NUM_THREADS")
    if executor == "local" and parallel > 1 and threads is None:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // parallel))  # cores shared out
    try:
        return _poll(jobs, fn, ex, window, done, bar if own_bar else None, outcomes)
    finally:
        if threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)


def _poll(jobs, fn, ex, window, done, bar, outcomes) -> list[Outcome]:
    """Keep ``window`` jobs submitted until every job has ended; report each as it ends."""
    import signal
    import threading
    pending = list(jobs)
    running: list[tuple[Job, object, float]] = []
    old_term = None
    if threading.current_thread() is threading.main_thread():    # a killed runner stops its jobs too
        old_term = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while pending or running:
            while pending and len(running) < window:
                job = pending.pop(0)
                running.append((job, ex.submit(fn, job), time.time()))
            time.sleep(0.5)
            _collect(running, done)
    except KeyboardInterrupt:          # stop what runs; the cache keeps only finished entries
        for _, sj, _ in running:
            sj.cancel(check=False)
        raise
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    if bar is not None:
        bar.close()
    return outcomes


def _collect(running: list, done) -> None:
    """Report and drop the jobs of ``running`` that have ended."""
    for item in [r for r in running if r[1].done()]:
        running.remove(item)
        job, sj, t0 = item
        log = str(sj.paths.stderr)
        try:
            value = sj.result()
            done(Outcome(job, True, (time.time() - t0) / 60, log, value=value))
        except Exception as err:       # noqa: BLE001 - submitit raises the job's error here
            done(Outcome(job, False, (time.time() - t0) / 60, log, _error_line(err)))


def _error_line(err: Exception) -> str:
    """The job's own exception line out of submitit's report (which wraps its traceback)."""
    import re
    lines = [ln.strip() for ln in str(err).splitlines()]
    raised = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt|Exit)\b", ln)]
    return raised[-1] if raised else (lines[0] if lines else type(err).__name__)


def report_failures(outcomes: list[Outcome], path: Path) -> list[Outcome]:
    """Write the failed jobs (label, log, rerun command) to ``path`` (JSON); return them."""
    failed = [o for o in outcomes if not o.ok]
    from .files import atomic_write_json
    atomic_write_json([{"job": asdict(o.job), "log": o.log, "error": o.error, "rerun": o.job.rerun()}
                       for o in failed], Path(path))
    return failed
