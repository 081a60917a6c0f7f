"""What a run would cost before it starts: its jobs, which are already cached, and the training
each needs, in images seen and in minutes on this machine from measured throughput.

Throughput (training images per second, per model and dataset) is measured, never assumed: from
the plain trainings already in the model cache (their recorded seconds; the fastest, since a
training that shared the cores with other jobs only ran slower) when there are any on this
device and precision, else by timing a few training steps here (kept in the cache). Run ``plan``
on the machine the jobs will run on (a GPU node for ``paper``) to get that machine's estimate.

A notebook does more than train its owner's models: attacks, votes, certificates, checks. That
*other work* is measured too, not modelled: ``work.json`` (beside this module) holds, per profile and
notebook, the minutes a first run spent outside training (its wall time less the trainings it made,
:func:`wmlib.train.trained_minutes_since`) and the training throughput of the notebook's host model
on the machine that measured it; here it is scaled by this machine's throughput of the same model.
``python benchmarks/speed_bench.py book --update-work`` rewrites it from a run's ``timings.json``. A
notebook without a measurement at the profile is counted as its trainings only, and the plan says so.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import pandas as pd
import torch

from . import grid
from .cache import key_hash, memo
from .files import atomic_write_json, cache_dir
from .data import dataset_info
from .device import train_step_seconds, default_device, precision
from .results import results_path
from .train import TrainConfig, is_trained

WORK_FILE = Path(__file__).with_name("work.json")
"""Measured work per profile and notebook (``<paper>-<dataset>``): ``other_minutes``, ``owner_minutes``
(where the measuring run trained the owner's models), ``images_per_second`` of ``host``
(``model/dataset``) where it was measured, ``ran_on``."""


def measured_work(path: Path | None = None) -> dict:
    path = Path(path or WORK_FILE)
    return json.loads(path.read_text()) if path.exists() else {}


def host(paper: str, dataset: str, profile: str, seed: int = 0) -> tuple[str, str]:
    """The (model, dataset) whose training throughput scales a notebook's other work: its owner's
    first model, else its first independent one."""
    cfgs = list(grid.owner_trainings(paper, dataset, profile, seed).values()) or \
        list(grid.trainings(paper, dataset, profile, seed).values())
    return (cfgs[0].model, cfgs[0].dataset) if cfgs else ("cifar_cnn", dataset)


def images(cfg: TrainConfig) -> int:
    """Training images a configuration sees: epochs × its training set."""
    return cfg.epochs * (cfg.n_train or dataset_info(cfg.dataset).train_size)


def _measured_in_cache(model: str, dataset: str) -> list[float]:
    """Images per second of the plain trainings of ``model`` on ``dataset`` in the cache (this
    precision; long enough to time: ≥ 20 s)."""
    out = []
    for js in (cache_dir() / "models").glob("*.json"):
        try:
            rec = json.loads(js.read_text())
            key, cfg = rec["key"], rec["key"]["config"]
        except (KeyError, ValueError, OSError):
            continue
        if (cfg.get("model"), cfg.get("dataset")) != (model, dataset) or key.get("extra") or \
                key.get("after_step") or key.get("init") or rec.get("seconds", 0) < 20 or \
                key_hash(key) != js.stem:           # trained in another precision
            continue
        n = cfg["epochs"] * (cfg.get("n_train") or dataset_info(dataset).train_size)
        out.append(n / rec["seconds"])
    return out


def _benchmark(model: str, dataset: str, steps: int = 4, batch: int = 100) -> float:
    """Images per second of SGD steps of ``model`` on random ``dataset``-shaped batches here, in
    this device's precision (:func:`wmlib.device.train_step_seconds`, as the precision choice times)."""
    dev = default_device()
    dtype = torch.bfloat16 if precision(dev.type) == "bf16" else None
    return batch / train_step_seconds(dtype, steps, model, dataset, dev, batch)


def throughput(model: str, dataset: str) -> tuple[float, str]:
    """(images per second, how it was measured) for training ``model`` on ``dataset`` here."""
    seen = _measured_in_cache(model, dataset)
    if seen:          # the fastest: other jobs on the cores only ever slow a training down
        return max(seen), f"fastest of {len(seen)} cached training(s)"
    dev = default_device()
    key = {"model": model, "dataset": dataset, "device": dev.type,
           "name": torch.cuda.get_device_name() if dev.type == "cuda" else torch.backends.cpu.get_cpu_capability()}
    return memo("throughput", key, lambda: _benchmark(model, dataset)), "timed steps"


def plan(profile: str, papers_=None, datasets=None, seeds=(0,), out_dir=None) -> pd.DataFrame:
    """One row per job of ``runner run`` with these arguments: what it trains, whether that is
    cached, and the minutes its counted trainings take here."""
    out_dir = Path(out_dir or grid.EXECUTED)
    selected, train_jobs, nb_jobs = grid.grid_jobs(profile, papers_, datasets, seeds, out_dir)
    speeds: dict[tuple[str, str], tuple[float, str]] = {}
    minutes = functools.partial(_training_minutes, speeds=speeds)
    itself = functools.partial(_notebook_minutes, profile=profile, work=measured_work().get(profile, {}), speeds=speeds)
    rows = []
    for job, cfg in train_jobs:
        cached = _cached(cfg)
        rows.append({"job": job.label, "kind": "training", "cached": cached, "models": 1,
                     "images (M)": images(cfg) / 1e6, "minutes": 0.0 if cached is True else minutes([cfg]),
                     "counts": "the training"})
    for job in nb_jobs:
        own = list(grid.owner_trainings(job.paper, job.dataset, job.profile, job.seed).values())
        done = results_path(job.paper, job.dataset, job.profile, out_dir / "results", job.seed)   # has its record
        mins, measured = itself(job.paper, job.dataset, job.seed, own)
        rows.append({"job": job.label, "kind": "notebook", "cached": done.exists(), "models": len(own),
                     "images (M)": sum(map(images, own)) / 1e6, "minutes": mins,
                     "counts": "everything (measured other work)" if measured else
                               "its trainings only (other work not measured at this profile)"})
    df = pd.DataFrame(rows)
    dev = default_device()
    df.attrs["device"] = (torch.cuda.get_device_name() if dev.type == "cuda" else
                          f"CPU ({torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads)")
    df.attrs["precision"] = precision(dev.type)
    df.attrs["throughput"] = {f"{m}/{d}": f"{v:,.0f} images/s ({how})" for (m, d), (v, how) in speeds.items()}
    return df


def _speed(k: tuple[str, str], speeds: dict) -> float:
    if k not in speeds:
        speeds[k] = throughput(*k)
    return speeds[k][0]


def _training_minutes(cfgs: list[TrainConfig], speeds: dict) -> float:
    """Minutes the trainings ``cfgs`` take here (throughputs memoised in ``speeds``)."""
    return sum(images(c) / _speed((c.model, c.dataset), speeds) / 60 for c in cfgs)


def _notebook_minutes(paper: str, dataset: str, seed: int, own: list[TrainConfig], *, profile: str, work: dict,
                      speeds: dict) -> tuple[float, bool]:
    """(minutes the notebook itself runs here: its owner's trainings and its other work; whether that
    is all measured). Measured: ``work`` (a first run at ``profile``) scaled by this machine's
    throughput of the host; its owner's trainings too where that run trained them (``owner_minutes``:
    noise and trigger batches included), else counted from plain throughput. Not measured (no entry,
    or one measured on another host model: the notebook's model changed since): the owner's trainings
    from throughput only."""
    w = work.get(f"{paper}-{dataset}")
    k = host(paper, dataset, profile, seed)
    if w is None or w.get("host", "/".join(k)) != "/".join(k):
        return _training_minutes(own, speeds), False
    scale = w["images_per_second"] / _speed(k, speeds)
    owner = w.get("owner_minutes")
    trained = owner * scale if owner else _training_minutes(own, speeds)
    return trained + w["other_minutes"] * scale, True


def estimate(paper: str, dataset: str, profile: str, seed: int = 0, speeds: dict | None = None) -> dict:
    """What one notebook costs here from an empty cache: its independent trainings (plain throughput)
    plus what the notebook itself runs (:func:`_notebook_minutes`). ``measured``: whether its other
    work was measured at ``profile`` (else the minutes count the trainings only)."""
    speeds = {} if speeds is None else speeds
    own = list(grid.owner_trainings(paper, dataset, profile, seed).values())
    itself, measured = _notebook_minutes(paper, dataset, seed, own, profile=profile,
                                         work=measured_work().get(profile, {}), speeds=speeds)
    independent = _training_minutes(list(grid.trainings(paper, dataset, profile, seed).values()), speeds)
    return {"minutes": independent + itself, "measured": measured}


def began_empty(r: dict) -> bool:
    """Whether a notebook's first run (a ``timings.json`` record) began from an empty cache: every
    independent training of its grid ran in the same call (``first_run_jobs_minutes`` measured), and
    it then trained its owner's models itself — or, having none (every model of Le Merrer et al.'s
    page is a job of the grid), the grid trained some."""
    jobs = r.get("first_run_jobs_minutes")
    if jobs is None:
        return False
    if (r.get("first_run_trained_minutes") or 0) > 0:
        return True
    return jobs > 0 and not grid.owner_trainings(r["paper"], r["dataset"], r["profile"], r.get("seed", 0))


def empty_cache_minutes(r: dict) -> float | None:
    """A notebook's time from an empty cache, measured where its first run began empty
    (:func:`began_empty`): the wall minutes of its independent trainings plus the notebook's. None
    where that run found some of its work cached: the records cannot rebuild it (what each paper's
    ``compute_minutes`` counts differs, and the votes and attacks that run found cached are in none)."""
    return r["first_run_jobs_minutes"] + r["first_run_minutes"] if began_empty(r) else None


def measured_other_work(r: dict) -> bool:
    """Whether a ``timings.json`` record measured its notebook's other work for the plan: seed 0's
    first run, begun from an empty cache (:func:`began_empty`)."""
    return r.get("seed", 0) == 0 and r.get("first_run_other_minutes") is not None and began_empty(r)


def update_work(timings: list[dict], path: Path | None = None) -> dict:
    """Write the measured work of the first runs in ``timings`` (``runner run``'s ``timings.json``
    values; seed 0 only) into ``path``: the minutes outside training, the owner's trainings the run
    made (when it made any), and this machine's throughput of each notebook's host model: run it
    where those notebooks ran. Only a first run that began from an empty cache measured its other
    work (:func:`measured_other_work`): one that found votes or attacks cached would understate it,
    and is left out. Returns the file's new content."""
    path = Path(path or WORK_FILE)
    work = measured_work(path)
    speeds: dict = {}
    for r in timings:
        if not measured_other_work(r):
            continue
        k = host(r["paper"], r["dataset"], r["profile"])
        ran_on = r.get("ran_on") or {}
        entry = {"other_minutes": round(r["first_run_other_minutes"], 3), "host": "/".join(k),
                 "images_per_second": round(_speed(k, speeds), 1),
                 "ran_on": ", ".join(str(ran_on.get(f, "?")) for f in ("device", "precision", "cpu capability"))}
        if r.get("first_run_trained_minutes"):
            entry["owner_minutes"] = round(r["first_run_trained_minutes"], 3)
        work.setdefault(r["profile"], {})[f"{r['paper']}-{r['dataset']}"] = entry
    atomic_write_json(work, path)
    return work


def _cached(cfg: TrainConfig):
    try:
        return is_trained(cfg)
    except (FileNotFoundError, RuntimeError, ValueError):
        return "data missing"


def _counted(df: pd.DataFrame) -> str:
    nbs = df[df["kind"] == "notebook"]
    full = nbs["counts"].str.startswith("everything").sum()
    if full == len(nbs):
        return ("Each notebook counts everything it runs: its owner's trainings from throughput, its other "
                "work (attacks, votes, certificates) from a measured first run, scaled to this machine.")
    return (f"{full} of {len(nbs)} notebooks count everything they run (their other work — attacks, votes, "
            "certificates — measured on a first run at this profile, scaled to this machine); the others count "
            "their owner's trainings only, so their real time is longer.")


def markdown(df: pd.DataFrame, profile: str) -> str:
    """The plan as the reproduce page shows it."""
    todo = df[df["cached"] != True]           # noqa: E712 ("data missing" is not cached)
    hours = df["minutes"].sum() / 60
    lines = [f"`python -m wmlib.runner plan --profile {profile}` on {df.attrs.get('device')} "
             f"({df.attrs.get('precision')}): {len(df)} jobs ({(df['kind'] == 'training').sum()} independent "
             f"trainings, {(df['kind'] == 'notebook').sum()} notebooks), {len(df) - len(todo)} already done; "
             f"together **{hours:,.1f} device-hours here**. " + _counted(df), "",
             "Throughput measured: " + "; ".join(f"{k}: {v}" for k, v in df.attrs.get("throughput", {}).items()), ""]
    nb = df["job"].str.split(":").str[0].str.rsplit("/", n=2).str[0]
    groups = df.assign(notebook=nb, done=df["cached"] == True).groupby("notebook", sort=False).agg(  # noqa: E712
        jobs=("job", "size"), done=("done", "sum"), models=("models", "sum"),
        images=("images (M)", "sum"), hours=("minutes", lambda m: m.sum() / 60))
    groups = groups.reset_index().rename(columns={"notebook": "paper/dataset", "images": "images (M)",
                                                  "hours": "device-hours here"})
    groups["images (M)"] = groups["images (M)"].map(lambda v: f"{v:,.1f}")
    groups["device-hours here"] = groups["device-hours here"].map(lambda v: f"{v:,.1f}")
    lines += [groups.to_markdown(index=False, disable_numparse=True), ""]
    show = df.assign(**{"images (M)": df["images (M)"].map(lambda v: f"{v:,.1f}"),
                        "minutes": df["minutes"].map(lambda v: f"{v:,.0f}"),
                        "cached": df["cached"].map(lambda v: {True: "yes", False: "no"}.get(v, v))})
    lines += [f"::::{{dropdown}} Every job ({len(df)})", "",
              show.to_markdown(index=False, disable_numparse=True), "", "::::"]
    return "\n".join(lines) + "\n"
