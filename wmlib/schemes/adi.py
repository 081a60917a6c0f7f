"""Adi et al. 2018: watermarking by backdooring with a trigger set of abstract images.

Embedding appends 2 trigger images to every training batch (the authors' ``train.py``):
FROMSCRATCH from random initialisation, PRETRAINED by continuing to train a clean model.
Verification counts the trigger images classified as their secret labels and returns a
:class:`~wmlib.verdict.Verdict` (score = trigger-set accuracy, threshold = k/n, p-value of a
model answering at random).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import torch

from .. import data as D
from ..stats import binomial_tail, matches_threshold
from ..train import TrainConfig, Trained, predict, train
from ..verdict import Verdict

PREPROCESS = ("center-crop", "resize")


@dataclass
class TriggerSet:
    """Trigger images ``x`` (uint8, N×C×H×W) and their secret labels ``y``."""

    x: torch.Tensor
    y: torch.Tensor
    source: str

    def __len__(self):
        return len(self.y)

    @property
    def digest(self) -> str:
        return D.digest(self.x, self.y)


def authors_trigger(dataset: str, preprocess: str = "center-crop", root: Path | None = None,
                    n: int | None = None) -> TriggerSet:
    """The authors' 100 abstract images and labels (``adiyoss/WatermarkNN``, ``data/trigger_set``);
    ``n``: only the first ``n`` of them in the loader's order (None: all, as the paper).

    Files are paired with labels in sorted *string* order (``1.jpg, 10.jpg, 100.jpg, 11.jpg, ...``)
    as the authors' loader does. ``center-crop`` takes the middle patch at the dataset's
    resolution (the authors' ``CenterCrop(32)``); ``resize`` shrinks the whole image instead.
    Labels are the authors' CIFAR-10 labels (0-9) for every dataset.
    """
    import numpy as np
    from PIL import Image

    if preprocess not in PREPROCESS:
        raise ValueError(f"preprocess={preprocess!r} is not known; accepted values: {list(PREPROCESS)}")
    info = D.dataset_info(dataset)
    root = Path(root) if root is not None else D.data_root() / "adi-trigger"
    labels_file = root / "labels-cifar.txt"
    if not labels_file.exists():
        raise D.DatasetMissing(
            f"Adi et al. trigger set not found at {root} (expected pics/1.jpg ... pics/100.jpg and "
            "labels-cifar.txt, from adiyoss/WatermarkNN data/trigger_set). Set WMLIB_DATA to the "
            "folder holding adi-trigger/, or use procedural_trigger().")
    labels = [int(float(line)) for line in labels_file.read_text().split()]
    files = sorted((root / "pics").glob("*.jpg"), key=lambda p: p.name)
    if len(files) != len(labels):
        raise ValueError(f"{len(files)} trigger images but {len(labels)} labels in {labels_file}")
    if n is not None:
        if not 1 <= n <= len(files):
            raise ValueError(f"n={n!r} must be between 1 and the {len(files)} trigger images")
        files, labels = files[:n], labels[:n]
    images = []
    for f in files:
        img = Image.open(f).convert("RGB" if info.channels == 3 else "L")
        if preprocess == "center-crop":
            img = _center_crop(img, info.size)
        else:
            img = img.resize((info.size, info.size), Image.BILINEAR)
        a = np.array(img, dtype=np.uint8)
        images.append(torch.from_numpy(a[None] if a.ndim == 2 else a.transpose(2, 0, 1).copy()))
    return TriggerSet(torch.stack(images), torch.tensor(labels, dtype=torch.int64) % info.classes,
                      f"authors ({preprocess})")


def _center_crop(img, size: int):
    """The middle ``size`` × ``size`` patch of a PIL image, placed as torchvision's ``center_crop``
    places it (the authors' ``CenterCrop``; torchvision itself is not imported: it costs seconds)."""
    w, h = img.size
    if w < size or h < size:
        raise ValueError(f"trigger image {w}×{h} is smaller than the {size}×{size} crop; use preprocess='resize'")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def procedural_trigger(dataset: str, n: int = 100, seed: int = 0) -> TriggerSet:
    """``n`` seeded abstract images (smooth colour fields, blobs and stripes) with random labels.

    A stand-in for the authors' images on other datasets and for ablations; also the adversary's
    "random images" in the non-trivial-ownership check (with another seed).
    """
    info = D.dataset_info(dataset)
    g = torch.Generator().manual_seed(seed)
    s, c = info.size, info.channels
    # a low-resolution random colour field, upsampled: large smooth shapes
    field = torch.rand(n, c, 4, 4, generator=g)
    img = torch.nn.functional.interpolate(field, size=(s, s), mode="bicubic", align_corners=False)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, s), torch.linspace(-1, 1, s), indexing="ij")
    # random stripes
    theta = torch.rand(n, 1, 1, generator=g) * torch.pi
    freq = 2 + 10 * torch.rand(n, 1, 1, generator=g)
    stripes = torch.sin(freq * (xx * torch.cos(theta) + yy * torch.sin(theta)) * torch.pi)
    colour = torch.rand(n, c, 1, 1, generator=g)
    img = img + 0.35 * stripes.unsqueeze(1) * (colour - 0.5)
    # a few coloured blobs
    for _ in range(3):
        cx, cy = (torch.rand(n, 1, 1, generator=g) * 2 - 1 for _ in range(2))
        r = 0.1 + 0.4 * torch.rand(n, 1, 1, generator=g)
        blob = torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / r ** 2).unsqueeze(1)
        img = img * (1 - blob) + blob * torch.rand(n, c, 1, 1, generator=g)
    x = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    y = torch.randint(0, info.classes, (n,), generator=g)
    return TriggerSet(x, y, f"procedural (seed {seed})")


@dataclass(frozen=True)
class TriggerCycler:
    """Appends ``per_batch`` trigger images to each batch, as the authors' ``train.py`` does.

    The trigger set is shuffled once into groups of ``per_batch`` (50 pairs for 100 images) and
    the groups are cycled from a random start.
    """

    trigger: TriggerSet
    per_batch: int = 2

    @property
    def digest(self) -> str:
        return f"adi:{self.trigger.digest}:{self.per_batch}"

    def batches(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.trigger) - len(self.trigger) % self.per_batch
        if n == 0:
            raise ValueError(f"per_batch={self.per_batch} exceeds the {len(self.trigger)} trigger images")
        groups = torch.randperm(len(self.trigger), generator=generator)[:n].view(-1, self.per_batch)
        i = int(torch.randint(0, len(groups), (1,), generator=generator))
        while True:
            idx = groups[i % len(groups)]
            yield self.trigger.x[idx], self.trigger.y[idx]
            i += 1


def fromscratch(cfg: TrainConfig, trigger: TriggerSet, per_batch: int = 2, **kw) -> Trained:
    """FROMSCRATCH: train ``cfg`` from random initialisation with the trigger set in every batch."""
    return train(cfg, extra=TriggerCycler(trigger, per_batch), tag="adi-fromscratch", **kw)


def pretrained(clean: Trained, trigger: TriggerSet, epochs: int, lr: float, per_batch: int = 2,
               **kw) -> Trained:
    """PRETRAINED: continue training the clean model ``clean`` with the trigger set in every batch."""
    cfg = replace(TrainConfig(**clean.record["key"]["config"]), epochs=epochs, lr=lr)
    return train(cfg, extra=TriggerCycler(trigger, per_batch), init=clean, tag="adi-pretrained", **kw)


SCHEME = "Adi et al. trigger set"


def required_matches(n: int, classes: int, threshold: float | None = None, alpha: float = 0.05) -> int:
    """The threshold *k*: how many of the ``n`` trigger images must get their secret labels for a
    claim of ownership.

    ``threshold`` is a fraction of the trigger set (e.g. 0.9 tolerates 10 errors in 100); by
    default it is the fewest matches that a model guessing uniformly among ``classes`` reaches with
    probability at most ``alpha``: the smallest k with P[Bin(n, 1/|classes|) >= k] <= alpha, so
    that a model answering at random passes only by chance (the slides' "non-trivial ownership").
    """
    if threshold is None:
        return matches_threshold(n, 1 / classes, alpha)
    if 0 < threshold <= 1:
        return math.ceil(round(threshold * n, 9))     # 0.9 × 100 is 90, not 90.000…01
    raise ValueError(f"threshold={threshold} must be a fraction in (0, 1] or None")


def verify(model: torch.nn.Module, trigger: TriggerSet, classes: int, *,
           threshold: float | None = None, alpha: float = 0.05) -> Verdict:
    """Verification (the paper's Verify, with the commitments to the trigger set opened): query
    ``model`` on the trigger set and compare its trigger-set accuracy with the threshold k/n.

    Returns a :class:`~wmlib.verdict.Verdict` with ``score`` = trigger-set accuracy (matches / n),
    ``threshold`` = k / n (k from :func:`required_matches`; ``verdict.threshold * verdict.n`` gives
    k back, see :func:`matches_needed`), ``p_value`` = P[Bin(n, 1/|classes|) >= matches], the
    chance that a model answering at random does at least as well, and ``n``.
    """
    return verdict(count_matches(model, trigger), len(trigger), classes, threshold=threshold, alpha=alpha)


def count_matches(model: torch.nn.Module, trigger: TriggerSet) -> int:
    """How many trigger images ``model`` classifies as their secret labels."""
    return int((predict(model, trigger.x) == trigger.y).sum())


def verdict(matches: int, n: int, classes: int, *, threshold: float | None = None,
            alpha: float = 0.05) -> Verdict:
    """The verdict of :func:`verify` for ``matches`` of ``n`` trigger images (one query of the
    model serves every threshold)."""
    k = required_matches(n, classes, threshold, alpha)
    return Verdict(SCHEME, score=matches / n, threshold=k / n,
                   p_value=binomial_tail(matches, n, 1 / classes), n=n)


def matches_needed(verdict: Verdict) -> int:
    """The threshold k (a count of trigger images) of a verdict from :func:`verify`."""
    return int(round(verdict.threshold * verdict.n))
