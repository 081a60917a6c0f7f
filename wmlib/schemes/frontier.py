"""Le Merrer et al. 2020, frontier stitching: a zero-bit watermark queried remotely.

The key K holds FGSM adversaries near the decision frontier, half *true* adversaries (the
perturbed copy is misclassified) and half *false* ones (still correct), each labelled with its
source's true label (Algorithm 1). Extraction counts the key inputs a suspect model labels
differently (Algorithm 2) and compares the count with a coin-flipping null model.

Embedding fine-tunes the model, with the key inputs mixed into batches of training data, until
every key input gets its label (Algorithm 1 step 3).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Iterator

import torch
from scipy import stats
from torch import nn

from .. import data as D
from ..cache import load_or_create, memo_tensors
from ..device import default_device
from ..attacks import fgsm
from ..train import Trained, fit, predict
from ..verdict import Verdict


@dataclass
class Key:
    """Key inputs ``x`` (float in [0, 1]), their labels ``y`` (the sources' true labels) and
    which of them are true adversaries."""

    x: torch.Tensor
    y: torch.Tensor
    true_adversary: torch.Tensor   # bool per key input
    source_index: torch.Tensor     # index of each key input's source in the candidate set

    def __len__(self):
        return len(self.y)


@dataclass
class Candidates:
    """FGSM copies ``x`` of correctly classified sources (labels ``y``, positions ``source_index``
    in the candidate set) and whether each is a true adversary (k̂(x*) ≠ y)."""

    x: torch.Tensor
    y: torch.Tensor
    true_adversary: torch.Tensor
    source_index: torch.Tensor
    eps: float
    norm: str

    def key(self, size: int, seed: int = 0) -> Key:
        """Algorithm 1 step 2: ``size``/2 true and ``size``/2 false adversaries picked at random."""
        if size <= 0 or size % 2:
            raise ValueError(f"size={size} must be a positive even number (half true, half false)")
        true_pos = torch.nonzero(self.true_adversary).flatten()
        false_pos = torch.nonzero(~self.true_adversary).flatten()
        half = size // 2
        if len(true_pos) < half or len(false_pos) < half:
            raise ValueError(
                f"eps={self.eps} ({self.norm}) gives {len(true_pos)} true and {len(false_pos)} false "
                f"adversaries from {len(self.y)} correctly classified candidates; size={size} needs "
                f"{half} of each (use more candidates or another eps)")
        g = torch.Generator().manual_seed(seed)
        pick = torch.cat([true_pos[torch.randperm(len(true_pos), generator=g)[:half]],
                          false_pos[torch.randperm(len(false_pos), generator=g)[:half]]])
        return Key(self.x[pick], self.y[pick], self.true_adversary[pick].clone(),
                   self.source_index[pick])

    @property
    def fooling_rate(self) -> float:
        """Fraction of the correctly classified sources whose FGSM copy is misclassified."""
        return float(self.true_adversary.float().mean()) if len(self.y) else 0.0


def adversaries(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                norm: str = "linf") -> Candidates:
    """Algorithm 1 step 1: FGSM copies of the correctly classified ``x``, sorted into true
    adversaries (k̂(x*) ≠ y) and false ones (k̂(x*) = y)."""
    idx = torch.nonzero(predict(model, x) == y).flatten()
    adv = fgsm(model, x[idx], y[idx], eps, norm)
    return Candidates(adv, y[idx].clone(), predict(model, adv) != y[idx], idx, eps, norm)


def cached_adversaries(base: Trained, data: D.TensorData, eps: float, norm: str = "linf") -> Candidates:
    """:func:`adversaries` of a cached model on ``data``, itself cached by the model's hash, the
    data, ε, the norm and the device type (FGSM's rounding may differ across devices)."""
    key = dict(kind="frontier-candidates", model=base.hash, data=data.digest, eps=eps, norm=norm,
               device=default_device().type)

    def compute():
        c = adversaries(base.model, data.x, data.y, eps, norm)
        return {"x": c.x, "y": c.y, "true_adversary": c.true_adversary, "source_index": c.source_index}

    t = memo_tensors("candidates", key, compute)
    return Candidates(t["x"], t["y"], t["true_adversary"], t["source_index"], eps, norm)


def make_key(model: nn.Module, x: torch.Tensor, y: torch.Tensor, size: int, eps: float,
             seed: int = 0, norm: str = "linf") -> Key:
    """Algorithm 1 (steps 1-2): a key of ``size`` FGSM adversaries of ``model`` made from ``x``,
    half true, half false."""
    return adversaries(model, x, y, eps, norm).key(size, seed)


def extraction_threshold(key_size: int, alpha: float = 0.05) -> int:
    """θ of Algorithm 2: the smallest t with P[Bin(|K|, ½) ≤ t] ≥ alpha.

    Success means m_K < θ, i.e. the mismatch count itself has p < alpha under the null model that
    answers each key input correctly with probability ½. Gives the paper's θ = 42 for |K| = 100
    and θ = 6 for |K| = 20.
    """
    t = 0
    while stats.binom.cdf(t, key_size, 0.5) < alpha:
        t += 1
    return t


def extract(model: nn.Module, key: Key, alpha: float = 0.05) -> Verdict:
    """Algorithm 2: query ``model`` on the key and count the mismatches m_K; the mark is found
    when m_K < θ (:func:`extraction_threshold`).

    As a :class:`~wmlib.verdict.Verdict`: ``score`` is the fraction of key inputs answered with
    their label, (|K| − m_K)/|K|; ``threshold`` is (|K| − θ + 1)/|K|, the score of m_K = θ − 1
    mismatches, so ``passed`` ⇔ m_K < θ; ``p_value`` = P[Bin(|K|, ½) ≤ m_K], the chance that a
    coin-flipping null model does at least this well; ``n`` = |K|. :func:`mismatches` reads m_K back.
    """
    n = len(key)
    m = int((predict(model, key.x) != key.y).sum())
    theta = extraction_threshold(n, alpha)
    return Verdict("frontier stitching", (n - m) / n, (n - theta + 1) / n,
                   p_value=float(stats.binom.cdf(m, n, 0.5)), n=n)


def mismatches(verdict: Verdict) -> int:
    """m_K of an extraction: the key inputs the suspect model labels differently."""
    return verdict.n - verdict.matches


@dataclass(frozen=True)
class KeyBatches:
    """Appends ``per_batch`` key inputs to each training batch, cycling through the shuffled key."""

    key: Key
    per_batch: int = 2

    @property
    def digest(self) -> str:
        return f"frontier:{D.digest(self.key.x, self.key.y)}:{self.per_batch}"

    def batches(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.key), generator=generator)
        i = 0
        while True:
            idx = order[torch.arange(i, i + self.per_batch) % len(order)]
            yield self.key.x[idx], self.key.y[idx]
            i += self.per_batch


def mark(base: Trained, key: Key, data: D.TensorData, *, lr: float, max_epochs: int,
         per_batch: int = 2, batch_size: int = 128, epoch_size: int | None = None, seed: int = 0,
         progress: bool = False) -> tuple[Trained, int | None]:
    """Algorithm 1 step 3: fine-tune a copy of ``base`` at ``lr`` (the paper: a tenth of the
    training rate) on ``data`` with key inputs in every batch, one epoch at a time, until every key
    input gets its label. An epoch is ``epoch_size`` images (None: all of ``data``), taken in turn
    from ``data`` so that successive epochs see fresh images. Returns the marked model and the
    epochs it took, or ``None`` when ``max_epochs`` did not suffice (a failed marking)."""
    extra = KeyBatches(key, per_batch)
    cache_key = dict(scheme="frontier-mark", base=base.hash, key=extra.digest,
                     data=data.digest, lr=lr, max_epochs=max_epochs, batch_size=batch_size,
                     seed=seed, epoch_size=epoch_size)
    n = min(epoch_size or len(data), len(data))

    def create():
        model, t0 = copy.deepcopy(base.model), time.time()
        needed = 0 if bool((predict(model, key.x) == key.y).all()) else None
        epoch = 0
        while needed is None and epoch < max_epochs:
            epoch += 1
            chunk = data.subset((torch.arange(n) + (epoch - 1) * n) % len(data))
            fit(model, chunk, epochs=1, lr=lr, batch_size=batch_size, schedule="constant",
                seed=seed + epoch, extra=extra, desc=f"marking, epoch {epoch}", progress=progress)
            if bool((predict(model, key.x) == key.y).all()):
                needed = epoch
        return model.cpu(), {"epochs_needed": needed, "seconds": time.time() - t0}

    model, record = load_or_create("marks", cache_key, lambda: copy.deepcopy(base.model), create)
    return Trained(model.eval(), record), record["epochs_needed"]
