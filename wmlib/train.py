"""The one training loop, evaluation, and trained models cached by their full configuration.

Schemes change *what* is trained through arguments, never by copying the loop:
``extra`` appends key images to every batch (Adi et al.'s trigger set), ``trainable`` freezes
everything but the head (last-layer fine-tuning), ``criterion`` replaces the cross-entropy
(distillation), ``after_step`` adds work after each update (IPCert's training with noise).
"""
from __future__ import annotations

import contextlib
import copy
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, Protocol

import torch
from torch import nn
from tqdm import tqdm

from . import data as D
from .files import cache_dir
from .cache import load_or_create, memo
from .device import autocast, default_device
from .models import Classifier, build_model, laid_out, memory_format

SCHEDULES = ("step", "late-step", "step30", "onecycle", "constant")
TRAINABLE = ("all", "head")
OPTIMIZERS = ("sgd", "adam")


class ExtraBatches(Protocol):
    """Something that appends ``(x, y)`` to each training batch (e.g. a trigger-set cycler)."""

    digest: str

    def batches(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


class AfterStep(Protocol):
    """Extra work after each optimiser step, e.g. a step on a noisy-model loss (IPCert §4.4)."""

    digest: str

    def __call__(self, model: Classifier, optimizer: torch.optim.Optimizer, epoch: int,
                 step: int) -> None: ...


Criterion = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``criterion(logits, x, y)`` → loss of a batch; the default is cross-entropy on ``y``."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model (and so its cache key)."""

    model: str
    dataset: str
    epochs: int
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 100
    schedule: str = "step"      # 'step': lr x 0.1 at 1/3 and 2/3 of the epochs (Adi: every 20 of 60);
                                # 'late-step': x 0.1 at 1/2 and 5/6 (Tartaglione: 150, 250 of 300);
                                # 'step30': x 0.1 every 30 epochs (Bansal et al.: 30, 60, 90 of 100);
                                # 'onecycle': linear warm-up to lr over 1/4 of the steps, then down to 0
    n_train: int | None = None  # first n of the (fixed) shuffled training set; None = all
    seed: int = 0

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r} is not known; accepted values: {list(SCHEDULES)}")
        if self.epochs < 0:
            raise ValueError(f"epochs={self.epochs} must be >= 0")


@dataclass
class Trained:
    model: Classifier
    record: dict = field(default_factory=dict)

    @property
    def hash(self) -> str:
        return self.record["hash"]


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000,
            device: torch.device | None = None, fp32: bool = False) -> torch.Tensor:
    """Predicted labels (on the CPU) for images ``x`` (uint8 or float in [0, 1]), at the
    machine's precision (:func:`wmlib.device.autocast`) or, with ``fp32``, without autocast."""
    device = device or default_device()
    was_training = model.training
    model.eval().to(device)
    out = []
    for i in range(0, len(x), batch_size):
        xb = laid_out(D.to_float(x[i:i + batch_size].to(device)), model)
        with contextlib.nullcontext() if fp32 else autocast(device):
            out.append(model(xb).argmax(1).cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kw) -> float:
    """Fraction of ``x`` classified as ``y``."""
    return (predict(model, x, **kw) == y).float().mean().item()


def evaluate(trained: Trained, data: D.TensorData) -> float:
    """Accuracy of a cached model on ``data``, itself cached (a rerun re-evaluates nothing)."""
    return memo("metrics", {"model": trained.hash, "data": data.digest},
                lambda: accuracy(trained.model, data.x, data.y))


def _set_trainable(model: Classifier, trainable: str) -> list[nn.Parameter]:
    if trainable not in TRAINABLE:
        raise ValueError(f"trainable={trainable!r} is not known; accepted values: {list(TRAINABLE)}")
    for p in model.parameters():
        p.requires_grad_(trainable == "all")
    for p in model.head.parameters():
        p.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def fit(model: Classifier, data: D.TensorData, *, epochs: int, lr: float, momentum: float = 0.9,
        weight_decay: float = 5e-4, batch_size: int = 100, schedule: str = "step",
        augment: bool = False, seed: int = 0, trainable: str = "all",
        extra: ExtraBatches | None = None, criterion: Criterion | None = None,
        after_step: AfterStep | Callable[..., None] | None = None,
        on_epoch: Callable[[int, Classifier], dict] | None = None, optimizer: str = "sgd",
        decay_epochs: int | None = None,
        device: torch.device | None = None, desc: str = "train", progress: bool = True) -> list[dict]:
    """Train ``model`` in place with SGD + momentum (or Adam: ``optimizer="adam"``, its default
    betas, ``momentum`` unused); return one record per epoch.

    ``on_epoch(epoch, model)`` may return metrics to record (it runs in eval mode, under
    ``no_grad``); epoch 0 is recorded before any training. With ``trainable='head'`` only the last
    layer learns and the rest stays in eval mode (batch-norm statistics frozen too).
    ``criterion(logits, x, y)`` replaces the cross-entropy; ``after_step(model, optimizer, epoch,
    step)`` runs after every update (epoch from 1, step counted from 0 over the whole run).
    ``decay_epochs``: weight decay applies in the first that many epochs only, then 0 (None: always).
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r} is not known; accepted values: {list(OPTIMIZERS)}")
    if decay_epochs is not None and decay_epochs < 0:
        raise ValueError(f"decay_epochs={decay_epochs!r} must be >= 0 or None")
    device = device or default_device()
    gen = seed_everything(seed)
    fmt = memory_format(model)
    model.to(device, memory_format=fmt) if fmt else model.to(device)
    params = _set_trainable(model, trainable)
    opt = (torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay) if optimizer == "sgd"
           else torch.optim.Adam(params, lr=lr, weight_decay=weight_decay))
    n = len(data)
    steps = (n + batch_size - 1) // batch_size
    if schedule == "onecycle":
        total = max(epochs * steps, 1)
        # torch divides by zero when the warm-up ends on step 0 (pct_start·total = 1: 4 steps)
        pct = 0.25 if total != 4 else 0.3
        batch_sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=lr, total_steps=total, pct_start=pct, anneal_strategy="linear", cycle_momentum=False)
        epoch_sched = None
    else:
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule={schedule!r} is not known; accepted values: {list(SCHEDULES)}")
        milestones = {"step": [round(epochs / 3), round(2 * epochs / 3)],
                      "late-step": [round(epochs / 2), round(5 * epochs / 6)],
                      "step30": list(range(30, epochs, 30))}.get(schedule, [])
        epoch_sched = torch.optim.lr_scheduler.MultiStepLR(opt, [m for m in milestones if m > 0], 0.1)
        batch_sched = None
    ce = nn.CrossEntropyLoss()
    loss_fn = criterion or (lambda out, x, y: ce(out, y))
    history = []

    def record(epoch, **extra_metrics):
        row = {"epoch": epoch, **extra_metrics}
        if on_epoch is not None:
            model.eval()
            with torch.no_grad():
                row.update(on_epoch(epoch, model))
        history.append(row)

    record(0)
    extra_batches = extra.batches(gen) if extra is not None else None
    bar = tqdm(total=epochs * steps, desc=desc, disable=not progress, leave=False, mininterval=2)
    for epoch in range(1, epochs + 1):
        if decay_epochs is not None and epoch > decay_epochs:
            for group in opt.param_groups:
                group["weight_decay"] = 0.0
        model.train()
        if trainable == "head":
            model.features.eval()
            model.normalize.eval()
        perm = torch.randperm(n, generator=gen)
        total, t0 = 0.0, time.time()
        for i in range(steps):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            xb, yb = D.to_float(data.x[idx].to(device)), data.y[idx].to(device)
            if augment:
                xb = D.augment(xb, gen)
            if extra_batches is not None:
                xe, ye = next(extra_batches)
                xb = torch.cat([xb, D.to_float(xe.to(device))])
                yb = torch.cat([yb, ye.to(device)])
            if fmt:
                xb = xb.contiguous(memory_format=fmt)
            with autocast(device):
                loss = loss_fn(model(xb), xb, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step(model, opt, epoch, (epoch - 1) * steps + i)
            if batch_sched is not None:
                batch_sched.step()
            total += loss.item()
            bar.update()
        if epoch_sched is not None:
            epoch_sched.step()
        record(epoch, loss=total / max(steps, 1), seconds=time.time() - t0)
    bar.close()
    for p in model.parameters():
        p.requires_grad_(True)
    if fmt:
        model.to(memory_format=torch.contiguous_format)
    model.eval()
    return history


def cache_key(cfg: TrainConfig, *, extra: ExtraBatches | None = None, init: Trained | None = None,
              after_step: AfterStep | None = None, tag: str = "") -> dict:
    """What identifies a trained model in the cache (see :func:`train`)."""
    return {"config": asdict(cfg), "data": D.source(cfg.dataset),
            "extra": extra.digest if extra is not None else None,
            "after_step": after_step.digest if after_step is not None else None,
            "init": init.hash if init is not None else None, "tag": tag}


def is_trained(cfg: TrainConfig) -> bool:
    """Whether the plain training ``cfg`` is in the cache."""
    from .cache import is_cached
    return is_cached("models", cache_key(cfg))


def train(cfg: TrainConfig, *, extra: ExtraBatches | None = None, init: Trained | None = None,
          after_step: AfterStep | None = None,
          on_epoch: Callable[[int, Classifier], dict] | None = None, tag: str = "",
          progress: bool = True) -> Trained:
    """Train ``cfg`` (continuing from ``init`` if given), or load it from the cache.

    The cache key is the whole configuration, the copy of the dataset (:func:`wmlib.data.source`),
    the digests of ``extra`` and ``after_step`` and the hash of ``init``; ``tag`` names a variant that the arguments alone do not tell apart.
    """
    key = cache_key(cfg, extra=extra, init=init, after_step=after_step, tag=tag)
    info = D.dataset_info(cfg.dataset)

    def build():
        return build_model(cfg.model, cfg.dataset)

    def create():
        if init is None:
            seed_everything(cfg.seed)
            model = build()
        else:
            model = copy.deepcopy(init.model)
        data = D.splits(cfg.dataset, n_train=cfg.n_train).train
        t0 = time.time()
        history = fit(model, data, epochs=cfg.epochs, lr=cfg.lr, momentum=cfg.momentum,
                      weight_decay=cfg.weight_decay, batch_size=cfg.batch_size,
                      schedule=cfg.schedule, augment=info.augment, seed=cfg.seed, extra=extra,
                      after_step=after_step, on_epoch=on_epoch, desc=f"{tag or 'train'} {cfg.model}/{cfg.dataset}",
                      progress=progress)
        return model.cpu(), {"history": history, "seconds": time.time() - t0}

    model, record = load_or_create("models", key, build, create)
    return Trained(model.eval(), record)


def trained_minutes_since(t0: float) -> float:
    """Minutes of training recorded by the model-cache entries written since ``t0`` (``time.time()``):
    what a run spent training, as opposed to its other work (attacks, votes, certificates). Counts
    every process sharing the cache: measure one run at a time."""
    total = 0.0
    for js in (cache_dir() / "models").glob("*.json"):
        try:
            if js.stat().st_mtime >= t0:
                total += float(json.loads(js.read_text()).get("seconds", 0.0))
        except (OSError, ValueError):
            continue
    return total / 60
