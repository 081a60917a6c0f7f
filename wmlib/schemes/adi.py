"""Adi et al. 2018: watermarking by backdooring with a trigger set of abstract images.

Embedding appends 2 trigger images to every training batch (the authors' ``train.py``):
FROMSCRATCH from random initialisation, PRETRAINED by continuing to train a clean model.
Verification counts the trigger images classified as their secret labels.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import torch

from .. import data as D
from ..stats import binomial_tail, matches_threshold
from ..train import TrainConfig, Trained, predict, train

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


def authors_trigger(dataset: str, preprocess: str = "center-crop", root: Path | None = None) -> TriggerSet:
    """The authors' 100 abstract images and labels (``adiyoss/WatermarkNN``, ``data/trigger_set``).

    Files are paired with labels in sorted *string* order (``1.jpg, 10.jpg, 100.jpg, 11.jpg, ...``)
    as the authors' loader does. ``center-crop`` takes the middle patch at the dataset's
    resolution (the authors' ``CenterCrop(32)``); ``resize`` shrinks the whole image instead.
    Labels are the authors' CIFAR-10 labels (0-9) for every dataset.
    """
    from PIL import Image
    from torchvision.transforms import functional as TF

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
    images = []
    for f in files:
        img = Image.open(f).convert("RGB" if info.channels == 3 else "L")
        if preprocess == "center-crop":
            img = TF.center_crop(img, [info.size, info.size])
        else:
            img = img.resize((info.size, info.size), Image.BILINEAR)
        images.append(TF.pil_to_tensor(img))
    return TriggerSet(torch.stack(images), torch.tensor(labels, dtype=torch.int64) % info.classes,
                      f"authors ({preprocess})")


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


@dataclass
class Verification:
    """Result of querying a model on a trigger set."""

    n: int
    matches: int
    threshold: int      # matches needed to claim ownership
    p_random: float     # P[a model answering at random matches >= `matches`] (binomial tail)

    @property
    def accuracy(self) -> float:
        return self.matches / self.n

    @property
    def verified(self) -> bool:
        return self.matches >= self.threshold


def verify(model: torch.nn.Module, trigger: TriggerSet, classes: int, *,
           threshold: float | None = None, alpha: float = 0.05) -> Verification:
    """Trigger-set accuracy against a decision threshold.

    ``threshold`` is a fraction of the trigger set (e.g. 0.9 tolerates 10 errors); by default it is
    the fewest matches that a model guessing uniformly among ``classes`` reaches with probability
    at most ``alpha`` (binomial tail).
    """
    n = len(trigger)
    if threshold is None:
        k = matches_threshold(n, 1 / classes, alpha)
    elif 0 < threshold <= 1:
        k = int(torch.tensor(threshold * n).ceil())
    else:
        raise ValueError(f"threshold={threshold} must be a fraction in (0, 1] or None")
    matches = int((predict(model, trigger.x) == trigger.y).sum())
    return Verification(n, matches, k, binomial_tail(matches, n, 1 / classes))


def functionality_claims(measured: dict, expect: dict) -> dict[str, dict[str, bool]]:
    """The paper's functionality claims checked on our models, against a profile's floors.

    ``measured[name] = {"test": acc, "trigger": acc}`` for NO-WM, FROMSCRATCH, PRETRAINED.
    NO-WM must be accurate and answer the trigger set at chance; the watermarked models must answer
    it and lose at most ``max_acc_drop`` test accuracy against NO-WM.
    """
    clean = measured["NO-WM"]
    out = {"NO-WM": {"test": clean["test"] >= expect["min_clean_acc"],
                     "trigger": clean["trigger"] <= expect["max_nowm_trigger"]}}
    for name in measured.keys() - {"NO-WM"}:
        out[name] = {"test": clean["test"] - measured[name]["test"] <= expect["max_acc_drop"],
                     "trigger": measured[name]["trigger"] >= expect["min_wm_trigger"]}
    return out
