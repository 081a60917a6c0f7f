"""Removal attacks shared by every paper. They know no scheme: they take a model and data.

Fine-tuning in the four variants of Adi et al. 2018: FTLL / FTAL fine-tune the last layer /
all layers; RTLL / RTAL first re-initialise the last layer. Transfer learning swaps the head for
a new task and trains every layer. Distillation (IPCert, Jiang et al. 2023, Table 2) trains a
copy of the model on the teacher's soft labels. Attacked models are cached like trained ones. Magnitude
pruning and SVD compression (Le Merrer et al. 2020) change the weights without training.
"""
from __future__ import annotations

import copy
import time
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from . import data as D
from .cache import load_or_create
from .models import Classifier
from .train import Trained, fit, seed_everything

FINE_TUNING = ("FTLL", "FTAL", "RTLL", "RTAL")


def with_head(model: Classifier, head: nn.Linear) -> Classifier:
    """A copy of ``model`` with ``head`` plugged in (e.g. the owner's original last layer)."""
    out = copy.deepcopy(model)
    out.head = copy.deepcopy(head)
    return out


def _cached_attack(key: dict, base: Trained, make: Callable[[], Classifier], run: Callable) -> Trained:
    """Load the attacked model keyed by ``key`` and ``base``, or ``make`` a copy and ``run`` the attack."""
    def create():
        model = make()
        t0 = time.time()
        history = run(model)
        return model.cpu(), {"history": history, "seconds": time.time() - t0}

    model, record = load_or_create("attacks", dict(key, base=base.hash), make, create)
    return Trained(model.eval(), record)


def fine_tune(base: Trained, variant: str, data: D.TensorData, *, epochs: int, lr: float,
              batch_size: int = 100, momentum: float = 0.9, weight_decay: float = 5e-4,
              augment: bool = False, seed: int = 0,
              on_epoch: Callable[[int, Classifier], dict] | None = None, progress: bool = True) -> Trained:
    """Fine-tune a copy of ``base`` on the attacker's ``data`` at a constant learning rate.

    ``variant``: FTLL (last layer only), FTAL (all layers), RTLL / RTAL (re-initialise the last
    layer, then last layer only / all layers). Adi et al. 2018 §5.2; the authors' ``fine-tune.py``.
    """
    if variant not in FINE_TUNING:
        raise ValueError(f"variant={variant!r} is not known; accepted values: {list(FINE_TUNING)}")
    key = dict(attack="fine-tune", variant=variant, data=data.fingerprint, epochs=epochs, lr=lr,
               batch_size=batch_size, momentum=momentum, weight_decay=weight_decay, augment=augment,
               seed=seed)

    def make():
        model = copy.deepcopy(base.model)
        if variant.startswith("RT"):
            seed_everything(seed)
            model.head.reset_parameters()
        return model

    def run(model):
        return fit(model, data, epochs=epochs, lr=lr, momentum=momentum, weight_decay=weight_decay,
                   batch_size=batch_size, schedule="constant", augment=augment, seed=seed,
                   trainable="head" if variant.endswith("LL") else "all", on_epoch=on_epoch,
                   desc=variant, progress=progress)

    return _cached_attack(key, base, make, run)


def transfer(base: Trained, data: D.TensorData, classes: int, *, epochs: int, lr: float,
             batch_size: int = 100, momentum: float = 0.9, weight_decay: float = 5e-4,
             augment: bool = False, seed: int = 0,
             on_epoch: Callable[[int, Classifier], dict] | None = None, progress: bool = True) -> Trained:
    """Transfer learning: a new ``classes``-way head for a new task, every layer trained."""
    key = dict(attack="transfer", data=data.fingerprint, classes=classes, epochs=epochs, lr=lr,
               batch_size=batch_size, momentum=momentum, weight_decay=weight_decay, augment=augment,
               seed=seed)

    def make():
        model = copy.deepcopy(base.model)
        seed_everything(seed)
        model.head = nn.Linear(model.head.in_features, classes)
        return model

    def run(model):
        return fit(model, data, epochs=epochs, lr=lr, momentum=momentum, weight_decay=weight_decay,
                   batch_size=batch_size, schedule="constant", augment=augment, seed=seed,
                   on_epoch=on_epoch, desc="transfer", progress=progress)

    return _cached_attack(key, base, make, run)


def distill(base: Trained, data: D.TensorData, *, epochs: int, lr: float, temperature: float = 1.0,
            batch_size: int = 100, momentum: float = 0.9, weight_decay: float = 5e-4,
            augment: bool = False, seed: int = 0,
            on_epoch: Callable[[int, Classifier], dict] | None = None, progress: bool = True) -> Trained:
    """Distillation (IPCert Table 2): a student initialised from ``base`` learns the teacher's soft
    labels on the attacker's ``data`` (labels unused), minimising T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)).

    Starting from the teacher's weights keeps the student comparable parameter by parameter, so
    its ℓ2 drift from the target can be reported. The teacher (a frozen copy, eval mode) sees the
    same augmented batch as the student.
    """
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0")
    key = dict(attack="distill", data=data.fingerprint, epochs=epochs, lr=lr, temperature=temperature,
               batch_size=batch_size, momentum=momentum, weight_decay=weight_decay, augment=augment,
               seed=seed)
    teacher = copy.deepcopy(base.model).eval().requires_grad_(False)

    def criterion(logits, x, y):
        with torch.no_grad():
            target = F.log_softmax(teacher.to(x.device)(x).float() / temperature, 1)
        student = F.log_softmax(logits.float() / temperature, 1)
        return F.kl_div(student, target, reduction="batchmean", log_target=True) * temperature ** 2

    def run(model):
        return fit(model, data, epochs=epochs, lr=lr, momentum=momentum, weight_decay=weight_decay,
                   batch_size=batch_size, schedule="constant", augment=augment, seed=seed,
                   criterion=criterion, on_epoch=on_epoch, desc="distill", progress=progress)

    return _cached_attack(key, base, lambda: copy.deepcopy(base.model), run)


def _weights(model: nn.Module) -> list[torch.Tensor]:
    """The weight matrices and kernels of every linear, convolutional and recurrent layer (no
    biases, no BN)."""
    out = []
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            out.append(m.weight)
        elif isinstance(m, nn.RNNBase):
            out += [p for name, p in m.named_parameters(recurse=False) if name.startswith("weight")]
    return out


@torch.no_grad()
def prune(model: Classifier, rate: float) -> Classifier:
    """Global magnitude pruning (Le Merrer et al. 2020, Table 1): a copy of ``model`` with the fraction
    ``rate`` of all linear/conv weights of lowest |w| set to zero (ties broken by position)."""
    if not 0 <= rate <= 1:
        raise ValueError(f"rate={rate} must lie in [0, 1]")
    out = copy.deepcopy(model)
    weights = _weights(out)
    flat = torch.cat([w.detach().abs().flatten().cpu() for w in weights])
    k = int(round(rate * flat.numel()))
    mask = torch.ones_like(flat, dtype=torch.bool)
    mask[torch.argsort(flat, stable=True)[:k]] = False
    start = 0
    for w in weights:
        n = w.numel()
        w.mul_(mask[start:start + n].view_as(w).to(w.device, w.dtype))
        start += n
    return out


@torch.no_grad()
def svd_compress(model: Classifier, rate: float) -> Classifier:
    """SVD compression (Le Merrer et al. 2020, Table 2): a copy of ``model`` whose every linear weight
    (and conv kernel, reshaped to out × in·k·k) keeps only its top ⌈(1 − rate)·min(m, n)⌉ singular
    values."""
    if not 0 <= rate < 1:
        raise ValueError(f"rate={rate} must lie in [0, 1)")
    out = copy.deepcopy(model)
    for w in _weights(out):
        mat = w.reshape(w.shape[0], -1)
        u, s, vh = torch.linalg.svd(mat.float(), full_matrices=False)
        r = max(1, int(torch.tensor((1 - rate) * len(s)).ceil()))
        w.copy_(((u[:, :r] * s[:r]) @ vh[:r]).reshape(w.shape).to(w.dtype))
    return out
