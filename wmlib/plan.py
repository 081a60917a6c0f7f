"""What a run would cost before it starts: its jobs, which are already cached, and the training
each needs, in images seen and in minutes on this machine from measured throughput.

Throughput (training images per second, per model and dataset) is measured, never assumed: from
the plain trainings already in the model cache (their recorded seconds) when there are any on this
device and precision, else by timing a few training steps here (kept in the cache). Run ``plan``
on the machine the jobs will run on (a GPU node for ``paper``) to get that machine's estimate.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import pandas as pd
import torch

from . import grid
from .cache import key_hash, memo
from .files import cache_dir
from .data import dataset_info
from .device import train_step_seconds, default_device, precision
from .results import results_path
from .train import TrainConfig, is_trained

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
    if seen:
        return statistics.median(seen), f"{len(seen)} cached training(s)"
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

    def minutes(cfgs: list[TrainConfig]) -> float:
        total = 0.0
        for c in cfgs:
            k = (c.model, c.dataset)
            if k not in speeds:
                speeds[k] = throughput(*k)
            total += images(c) / speeds[k][0] / 60
        return total

    rows = []
    for job, cfg in train_jobs:
        cached = _cached(cfg)
        rows.append({"job": job.label, "kind": "training", "cached": cached, "models": 1,
                     "images (M)": images(cfg) / 1e6, "minutes": 0.0 if cached is True else minutes([cfg])})
    for job in nb_jobs:
        own = list(grid.owner_trainings(job.paper, job.dataset, job.profile, job.seed).values())
        done = results_path(job.paper, job.dataset, job.profile, out_dir / "results", job.seed)   # has its record
        rows.append({"job": job.label, "kind": "notebook", "cached": done.exists(), "models": len(own),
                     "images (M)": sum(map(images, own)) / 1e6, "minutes": minutes(own)})
    df = pd.DataFrame(rows)
    dev = default_device()
    df.attrs["device"] = (torch.cuda.get_device_name() if dev.type == "cuda" else
                          f"CPU ({torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads)")
    df.attrs["precision"] = precision(dev.type)
    df.attrs["throughput"] = {f"{m}/{d}": f"{v:,.0f} images/s ({how})" for (m, d), (v, how) in speeds.items()}
    return df


def _cached(cfg: TrainConfig):
    try:
        return is_trained(cfg)
    except (FileNotFoundError, RuntimeError, ValueError):
        return "data missing"


def markdown(df: pd.DataFrame, profile: str) -> str:
    """The plan as the reproduce page shows it."""
    todo = df[df["cached"] != True]           # noqa: E712 ("data missing" is not cached)
    hours = df["minutes"].sum() / 60
    lines = [f"`python -m wmlib.runner plan --profile {profile}` on {df.attrs.get('device')} "
             f"({df.attrs.get('precision')}): {len(df)} jobs ({(df['kind'] == 'training').sum()} independent "
             f"trainings, {(df['kind'] == 'notebook').sum()} notebooks), {len(df) - len(todo)} already done; "
             f"the trainings it can count take **{hours:,.1f} device-hours here**. Notebook jobs count the "
             "owner's own trainings only (marking, attacks and certification come on top).", "",
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
