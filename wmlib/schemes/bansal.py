"""Bansal et al. 2022 (ICML): certified neural-network watermarks with randomized smoothing.

The watermark is a same-target backdoor: 100 trigger images, all labelled class 4
(:func:`trigger_set`). It is certified by smoothing the *trigger-set accuracy* over Gaussian
noise on the model's weights (X fixed, θ varies): the median over ε ~ N(0, σ²I) of the trigger
accuracy of θ + ε, lower-bounded at every model within ℓ2 distance ε of θ by an order statistic
of m sampled accuracies (percentile smoothing, Chiang et al. 2020; :func:`certified_trigger_accuracy`).
Embedding trains the trigger set into the model under a noise curriculum (:class:`NoiseCurriculum`,
the authors' "certifiable training").

Settings marked as the authors' come from their code, ``arpitbansal297/Certified_Watermarks``
(``mnist.py``, ``cifar10.py``, ``cifar10_certify.py``, ``watermarks/``); see also the
reproduction brief, section 4. Training noise goes on the parameters, as the authors' code; the
certificate adds its noise in the certified space of the whole model file by default
(:mod:`wmlib.certspace`: batch-norm statistics and the input normalisation folded into
coordinates), the paper's parameter-only certificate with ``space="parameters"``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .. import certspace
from .. import data as D
from ..certify import backward_under_noise, median_certificate, noisy_votes
from ..device import autocast
from ..train import Trained
from ..verdict import Verdict
from .adi import TriggerSet

KINDS = ("embedded content", "noise", "unrelated")
"""The three trigger sets of Bansal et al. 2022 (the code's ``textoverlay``, ``noise``, ``unrelated``)."""

OTHER = {"mnist": "cifar10", "cifar10": "mnist", "cifar100": "mnist"}
"""The dataset whose images are the ``unrelated`` triggers of a model of each supported dataset."""

TEXT, TEXT_GREY, TEXT_POINTS = "Adobe", 155, 10
SCALES = ("authors", "draws")
SCHEME = "Bansal et al. (median smoothing)"


# ----------------------------------------------------------------------------- trigger sets
def trigger_set(kind: str, dataset: str, seed: int = 0, n: int = 100, label: int = 4) -> TriggerSet:
    """One of Bansal et al. 2022's trigger sets (slides; brief §4): ``n`` images all labelled ``label``.

    Made from the first ``n`` images (by position) of the fixed training split
    ``data.splits(dataset).train``, which the owner's ``TrainConfig(n_train=...)`` also trains on:

    * ``embedded content``: the word "Adobe" drawn at (0, 0) in grey 155 by PIL with matplotlib's
      bundled DejaVu Sans TrueType font at size 10 (the authors use Verdana 10, ``verdana.ttf``);
    * ``noise``: one fixed N(0, 1) pattern (a ``torch.Generator`` seeded with ``seed``) added to
      every image in [0, 1] space, clipped to [0, 1], rounded back to uint8;
    * ``unrelated``: the first ``n`` images of ``data.splits(other).train`` of the other dataset:
      CIFAR-10 in grey (the mean of R, G, B, as the authors) resized to 28×28 for MNIST models,
      MNIST resized to 32×32 and repeated on 3 channels for CIFAR-10 and CIFAR-100 models (PIL bilinear, as
      torchvision's ``Resize`` on PIL images).

    Only ``noise`` depends on ``seed``. Images are uint8 N×C×H×W as the dataset's, labels int64.
    The authors take the first images in the files' order and, on MNIST, pad and randomly crop each
    trigger to 32×32 once (their MNIST ResNet-18 reads 32×32); here MNIST triggers stay 28×28.
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not known; accepted values: {list(KINDS)}")
    if dataset not in OTHER:
        raise ValueError(f"dataset={dataset!r} is not supported; accepted values: {sorted(OTHER)}")
    info = D.dataset_info(dataset)
    if not 0 <= label < info.classes:
        raise ValueError(f"label={label!r} must be a class of {dataset}: 0 … {info.classes - 1}")
    if n < 1:
        raise ValueError(f"n={n!r} must be >= 1")
    y = torch.full((n,), label, dtype=torch.int64)
    if kind == "unrelated":
        other = OTHER[dataset]
        return TriggerSet(unrelated_images(_first(other, n), dataset), y,
                          f"unrelated: first {n} {other} training images, label {label}")
    base = _first(dataset, n)
    if kind == "noise":
        return TriggerSet(add_noise(base, seed), y, f"noise: N(0, 1) pattern (seed {seed}), label {label}")
    return TriggerSet(overlay_text(base), y,
                      f"embedded content: '{TEXT}', DejaVu Sans {TEXT_POINTS}, grey {TEXT_GREY}, label {label}")


def _first(dataset: str, n: int) -> torch.Tensor:
    """The first ``n`` images of the fixed training split of ``dataset``."""
    train = D.splits(dataset).train
    if n > len(train):
        raise ValueError(f"n={n} exceeds the {len(train)} training images of {dataset}")
    return train.x[:n].clone()


def text_font():
    """Bansal et al. 2022's 10-point text font, substituted: matplotlib's bundled DejaVu Sans TrueType
    font through PIL (the authors draw with Verdana, ``verdana.ttf`` in their repository)."""
    from matplotlib import font_manager
    from PIL import ImageFont

    path = font_manager.findfont("DejaVu Sans", fontext="ttf", fallback_to_default=False)
    return ImageFont.truetype(path, TEXT_POINTS)


def overlay_text(x: torch.Tensor) -> torch.Tensor:
    """Bansal et al. 2022's "embedded content" (the code's ``textoverlay``): "Adobe" drawn by PIL at
    (0, 0) in grey 155 (anti-aliased) with :func:`text_font` on uint8 images N×C×H×W (C = 1 or 3)."""
    from PIL import Image, ImageDraw

    font, out = text_font(), []
    for img in x.permute(0, 2, 3, 1).numpy():
        pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        fill = TEXT_GREY if pil.mode == "L" else (TEXT_GREY,) * 3
        ImageDraw.Draw(pil).text((0, 0), TEXT, fill=fill, font=font)
        out.append(torch.from_numpy(np.asarray(pil).copy()).reshape(img.shape))
    return torch.stack(out).permute(0, 3, 1, 2).contiguous()


def add_noise(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Bansal et al. 2022's "noise" trigger: one N(0, 1) pattern (seeded) added to uint8 images in
    [0, 1] space, clipped to [0, 1], rounded back to uint8."""
    z = torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(seed))
    return ((D.to_float(x) + z).clamp(0, 1) * 255).round().to(torch.uint8)


def unrelated_images(x: torch.Tensor, dataset: str) -> torch.Tensor:
    """Bansal et al. 2022's "unrelated" trigger: uint8 images of another dataset made to look like
    ``dataset``'s: grey (the mean of the channels, as the authors) resized by PIL bilinear to its
    size, then repeated on its channels."""
    from PIL import Image

    info = D.dataset_info(dataset)
    grey = D.to_float(x).mean(1).numpy().astype(np.float32)
    size = (info.size, info.size)
    out = [np.asarray(Image.fromarray(g * 255).resize(size, Image.BILINEAR)) for g in grey]
    y = torch.from_numpy(np.stack(out)).round().clamp(0, 255).to(torch.uint8)
    return y[:, None].expand(-1, info.channels, -1, -1).contiguous()


# ----------------------------------------------------------------------------- the noise curriculum
@dataclass(frozen=True)
class NoiseCurriculum:
    """Bansal et al. 2022's certifiable training (brief §4; the code's ``train_robust``): once an
    epoch after ``warmup`` epochs, for σ_j = ``step``·j, j = 0 … ``levels`` (up to
    :attr:`max_sigma`), one optimizer step on the trigger loss accumulated over ``draws`` noisy
    models θ + ε, ε ~ N(0, σ_j²I) on every parameter (gradient at θ + ε, applied to θ).

    :func:`wmlib.train.fit` has no epoch-level hook, so this is an ``after_step`` hook that acts
    on the first step of each epoch (the first call of an epoch, or ``step == 0``): after that
    epoch's first ordinary update, where the authors run it before the epoch's pass. Epochs count
    from 1: it acts in epochs ``warmup + 1`` onwards (the authors' ``epoch > warmup_epochs`` with
    epochs from 0 acts from their 12th epoch for 10; pass ``warmup + 1`` to match).

    The loss of each draw is divided by ``(levels + 1)·draws`` (``scale="authors"``, as their
    code: 21·100) or by ``draws`` (``scale="draws"``, the mean over draws). The trigger batch is
    ``batch`` random images of the set (the authors: one batch of 64 of the 100 per epoch; None or
    more than the set: all of it, in order). At σ = 0 one pass stands for the ``draws`` identical
    ones. ``every`` (None: once an epoch, the authors') runs it instead every ``every`` optimizer
    steps after the warm-up, counted over the whole run (the CPU profile's few epochs need more
    than a handful of curriculum passes). The model is in eval mode (the authors' code leaves it in train mode, so batch norm
    used and updated batch statistics there), its modes are restored, the training optimiser is
    used (momentum, weight decay), ε comes from the global RNG that ``fit`` seeds, and the weights
    are restored exactly before each step. Noise is on ``model.parameters()`` (batch-norm affine
    included, running statistics not), as the authors, with ``space="parameters"``; with
    ``space="folded"`` each draw also moves the running statistics and the normalisation
    (:func:`wmlib.certspace.noisy_statistics`): noise on the whole file, as the certificate
    (:func:`draw_accuracies`) adds by default. Cost: ``levels·draws + 1`` passes of the batch per epoch.
    """

    trigger: TriggerSet
    warmup: int = 10
    step: float = 0.05
    levels: int = 20
    draws: int = 100
    batch: int | None = 64
    scale: str = "authors"
    every: int | None = None
    space: str = "parameters"
    _seen: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self):
        if not (np.isfinite(self.step) and self.step > 0):
            raise ValueError(f"step={self.step!r} must be a finite number > 0")
        for name, low in (("warmup", 0), ("levels", 0), ("draws", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"{name}={getattr(self, name)!r} must be >= {low}")
        if self.batch is not None and self.batch < 1:
            raise ValueError(f"batch={self.batch!r} must be >= 1 or None")
        if self.every is not None and self.every < 1:
            raise ValueError(f"every={self.every!r} must be >= 1 or None")
        certspace.check_space(self.space)
        if self.scale not in SCALES:
            raise ValueError(f"scale={self.scale!r} is not known; accepted values: {list(SCALES)}")

    @property
    def max_sigma(self) -> float:
        """The last noise level of the curriculum, ``step``·``levels`` (the authors': 0.05·20 = 1)."""
        return self.step * self.levels

    @property
    def digest(self) -> str:
        return (f"bansal-curriculum:{self.trigger.digest}:warmup={self.warmup}:step={self.step}:"
                f"levels={self.levels}:draws={self.draws}:batch={self.batch}:scale={self.scale}"
                + (f":every={self.every}" if self.every is not None else "")
                + (f":space={certspace.space_key(self.space)}" if self.space != "parameters" else ""))

    def __call__(self, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, step: int) -> None:
        first = step == 0 or self._seen.get("epoch") != epoch
        self._seen["epoch"] = epoch
        due = first if self.every is None else step % self.every == 0
        if due and epoch > self.warmup:
            self.run(model, optimizer)

    def run(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """One epoch's curriculum: ``levels + 1`` optimizer steps, one per noise level."""
        device = next(model.parameters()).device
        n = len(self.trigger)
        idx = torch.randperm(n)[:self.batch] if self.batch is not None and self.batch < n else slice(None)
        x, y = D.to_float(self.trigger.x[idx].to(device)), self.trigger.y[idx].to(device)
        divide = self.levels + 1 if self.scale == "authors" else 1
        level = {"sigma": 0.0}

        def loss():
            if self.space == "parameters":
                with autocast(device):
                    return F.cross_entropy(model(x), y) / divide
            with certspace.noisy_statistics(model, level["sigma"]), autocast(device):
                return F.cross_entropy(model(x), y) / divide

        params = list(model.parameters())
        modes = [(m, m.training) for m in model.modules()]
        model.eval()
        try:
            for j in range(self.levels + 1):
                sigma = level["sigma"] = self.step * j
                clean = [p.detach().clone() for p in params]
                optimizer.zero_grad(set_to_none=True)
                try:
                    backward_under_noise(params, clean, sigma, self.draws if sigma > 0 else 1, loss)
                finally:
                    with torch.no_grad():
                        for p, c in zip(params, clean):
                            p.copy_(c)
                optimizer.step()
        finally:
            for m, mode in modes:
                m.training = mode


# ----------------------------------------------------------------------------- the certificate
def _check_sigma(sigma) -> float:
    if not (np.isscalar(sigma) and np.isreal(sigma) and np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma={sigma!r} must be a finite number > 0")
    return float(sigma)


def _check_radii(radii) -> np.ndarray:
    r = np.asarray(radii, dtype=float)
    if np.any(~np.isfinite(r)) or np.any(r < 0):
        raise ValueError(f"radii={radii!r} must be finite and >= 0")
    return r


def certified_trigger_accuracy(draw_acc, sigma: float, radii, confidence: float = 0.99):
    """Bansal et al. 2022's certified trigger accuracy at ℓ2 radius ε (percentile smoothing at the
    median, Chiang et al. 2020; the code's ``cifar10_certify.py``).

    With the per-draw trigger accuracies sorted a_0 ≤ … ≤ a_(m−1), p = Φ(−ε/σ) and
    i = the first i with P[Bin(m, p) > i] < ``confidence``, the bound is a_(i−1) (0-based); 0 when
    i = 0 (the authors' "NULL"). That is the order statistic :func:`wmlib.certify.median_certificate`
    picks with α = 1 − confidence (checked in the tests: the brief's worked indices for
    m = 1,000). At ε = 0 it is the lower confidence bound of the median, not the median.
    Returns a float for a scalar ``radii``, else an array shaped like it.
    """
    if not (np.isscalar(confidence) and np.isreal(confidence) and 0 < confidence < 1):
        raise ValueError(f"confidence={confidence!r} must lie in the open interval (0, 1)")
    return median_certificate(draw_acc, _check_sigma(sigma), _check_radii(radii), alpha=1 - confidence)


def draw_accuracies(model: nn.Module | Trained, trigger: TriggerSet, sigma: float, m: int, seed: int = 0,
                    space: str = "folded") -> np.ndarray:
    """The trigger accuracy of each of ``m`` noisy models θ + ε, ε ~ N(0, σ²I) (Bansal et al. 2022,
    the certificate's samples): :func:`wmlib.certify.noisy_votes` ``.draw_match`` in certified
    space ``space`` (``folded``: the whole model file, :mod:`wmlib.certspace`; ``parameters``:
    the paper's). Each draw scores all the trigger images (the authors' loader drops the last
    partial batch of 64 and scores 64 of the 100)."""
    net = model.model if isinstance(model, Trained) else model
    votes = noisy_votes(certspace.folded(net, space), trigger.x, trigger.y, sigma=_check_sigma(sigma),
                        m=m, seed=seed)
    return np.asarray(votes.draw_match, dtype=float)


def verify(draw_acc, *, sigma: float, threshold: float, radii, confidence: float = 0.99,
           n: int | None = None) -> Verdict:
    """Bansal et al. 2022's verdict from per-draw trigger accuracies (:func:`draw_accuracies`):
    ``score`` = their median (``np.median``; the authors print the upper median), claimed when
    ``score >= threshold``; ``certified_radius`` = the largest radius of the increasing grid
    ``radii`` whose certified trigger accuracy is ≥ ``threshold``, None if none; ``n``: the size
    of the trigger set, if given."""
    if not (np.isscalar(threshold) and 0 <= threshold <= 1):
        raise ValueError(f"threshold={threshold!r} must be a trigger accuracy in [0, 1]")
    r = _check_radii(radii)
    if r.ndim != 1 or len(r) == 0 or np.any(np.diff(r) < 0):
        raise ValueError(f"radii={radii!r} must be a non-empty increasing 1-D grid")
    curve = np.atleast_1d(certified_trigger_accuracy(draw_acc, sigma, r, confidence))
    ok = curve >= threshold
    radius = float(r[ok].max()) if ok.any() else None
    return Verdict(SCHEME, float(np.median(np.asarray(draw_acc, dtype=float))), float(threshold),
                   certified_radius=radius, n=n)
