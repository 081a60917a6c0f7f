"""Jiang, Fang & Gong 2023 (IPCert): the building blocks around the certificate.

* worst-case post-processing (§3.1, Eq. 2–3, Alg. 1) is :func:`wmlib.attacks.worst_case`;
* IPGuard fingerprints (Eq. 1, Cao et al. 2021) and IPCert's robust selection of them (Eq. 7);
* training with noise (§4.4, Alg. 2 of their appendix): the watermark's IP-set loss is also
  minimised under Gaussian noise on every parameter, so that noisy models keep the watermark;
* the verdict on a suspect model (:func:`verify`): its smoothed MR against the owner's
  threshold, with the radius up to which the claim is certified (Eq. 4-6).

Noise is always absolute, N(0, σ²I), and models are used in eval mode. Training with noise and
the attacks perturb the parameters, as the paper; the certificate (:func:`smoothed_votes`) adds
its noise in the certified space of the whole model file by default (:mod:`wmlib.certspace`:
batch-norm statistics and the input normalisation folded into parameters), the paper's
parameter-only certificate on request (``space="parameters"``).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F
from tqdm import tqdm

from .. import certspace
from .. import data as D
from ..align import aligned, aligned_key
from ..cache import key_hash, memo
from ..files import atomic_save, cache_dir
from ..certify import (
    Votes,
    backward_under_noise,
    certified_matching_rate,
    majority_certificate,
    matching_rate,
    median_certificate,
    noisy_votes,
)
from ..device import autocast, default_device
from ..models import Classifier
from ..train import TrainConfig, Trained, predict, train
from ..verdict import Verdict
from .adi import TriggerCycler, TriggerSet


# ----------------------------------------------------------------------------- training with noise
@dataclass(frozen=True)
class NoiseTraining:
    """IPCert §4.4 (Alg. 2): after an update, step on the IP-set loss averaged over ``draws`` noisy
    models θ + ε, ε ~ N(0, σ²I) on every parameter (gradient at θ + ε, applied to θ).

    Passed to :func:`wmlib.train.fit` / :func:`~wmlib.train.train` as ``after_step``. It runs every
    ``every`` steps, on ``ip_batch`` random IP points (None: all of them),
    with the training optimiser (so momentum and weight decay apply), the model in eval mode (the
    batch-norm running statistics are used, not updated, as when certifying), and ε from the
    global RNG that ``fit`` seeds. The extra cost per step is ``draws`` passes of the IP batch.
    ``clip`` (None: off) caps the ℓ2 norm of that step's gradient: far from convergence a noisy
    model's loss and gradient are large (measured on the CPU CNN at σ = 0.1: gradient norm 60–80
    against 0.7 without noise), and one unclipped step at the training rate can blow the weights up.
    """

    ip: TriggerSet
    sigma: float
    draws: int = 4
    every: int = 1
    ip_batch: int | None = None
    clip: float | None = None

    def __post_init__(self):
        if self.sigma < 0:
            raise ValueError(f"sigma={self.sigma} must be >= 0")
        for name in ("draws", "every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.ip_batch is not None and self.ip_batch < 1:
            raise ValueError(f"ip_batch={self.ip_batch} must be >= 1 or None")
        if self.clip is not None and not self.clip > 0:
            raise ValueError(f"clip={self.clip} must be > 0 or None")

    @property
    def digest(self) -> str:
        return (f"ipcert-noise:{self.ip.digest}:sigma={self.sigma}:draws={self.draws}:"
                f"every={self.every}:ip_batch={self.ip_batch}:clip={self.clip}")

    def __call__(self, model: Classifier, optimizer: torch.optim.Optimizer, epoch: int, step: int) -> None:
        if step % self.every:
            return
        device = next(model.parameters()).device
        idx = torch.randperm(len(self.ip))[:self.ip_batch] if self.ip_batch else slice(None)
        x, y = D.to_float(self.ip.x[idx].to(device)), self.ip.y[idx].to(device)
        params = list(model.parameters())
        clean = [p.detach().clone() for p in params]
        modes = [(m, m.training) for m in model.modules()]
        model.eval()
        optimizer.zero_grad(set_to_none=True)

        def loss():
            with autocast(device):
                return F.cross_entropy(model(x), y)

        try:
            backward_under_noise(params, clean, self.sigma, self.draws, loss)
        finally:
            with torch.no_grad():
                for p, c in zip(params, clean):
                    p.copy_(c)
            for m, mode in modes:
                m.training = mode
        if self.clip is not None:
            nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], self.clip)
        optimizer.step()


def watermark(cfg: TrainConfig, trigger: TriggerSet, noise: NoiseTraining | None = None,
              per_batch: int = 2, **kw) -> Trained:
    """The watermarked target: Adi et al.'s FROMSCRATCH (trigger images in every batch), plus
    training with ``noise`` if given. Without noise it is the very model (and cache entry) of
    :func:`wmlib.schemes.adi.fromscratch`."""
    return train(cfg, extra=TriggerCycler(trigger, per_batch), after_step=noise, tag="adi-fromscratch", **kw)


# ----------------------------------------------------------------------------- worst-case post-processing
def l2_distance(a: nn.Module, b: nn.Module) -> float:
    """ℓ2 distance between two models' parameters, all layers together (IPCert Table 2, "ℓ2
    perturbation"); buffers are not counted (:func:`wmlib.certspace.distance` counts them)."""
    return certspace.distance(a, b, "parameters")


def parameter_norm(model: nn.Module) -> float:
    """‖θ‖₂ over every parameter (the scale against which an absolute σ or radius R is read)."""
    return float(sum((p.detach().cpu().double() ** 2).sum() for p in model.parameters())) ** 0.5


# ----------------------------------------------------------------------------- fingerprints
@dataclass
class Fingerprints(TriggerSet):
    """IP points ``x`` (float in [0, 1]) with IP labels ``y`` = the model's predictions, the label
    pairs (i, j) of Eq. 1, and each point's objective before and after optimisation."""

    i: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    j: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    initial_loss: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    loss: torch.Tensor = field(default_factory=lambda: torch.zeros(0))


def ipguard_loss(logits: torch.Tensor, i: torch.Tensor, j: torch.Tensor, k: float = 5.0) -> torch.Tensor:
    """IPGuard, IPCert Eq. 1, per point: ReLU(Z_i − Z_j + k) + ReLU(max_{t≠i,j} Z_t − Z_i).

    Zero iff Z_j ≥ Z_i + k and Z_i ≥ every other logit: the point is classified as j, with i the
    runner-up, at a logit margin of at least k."""
    zi, zj = logits.gather(1, i[:, None])[:, 0], logits.gather(1, j[:, None])[:, 0]
    others = logits.scatter(1, i[:, None], float("-inf")).scatter(1, j[:, None], float("-inf"))
    return F.relu(zi - zj + k) + F.relu(others.max(1).values - zi)


def robust_loss(model: nn.Module, x: torch.Tensor, j: torch.Tensor, *, sigma: float, draws: int = 16,
                gamma: float = 8.0, generator: torch.Generator | None = None,
                eps: float = 1e-6) -> torch.Tensor:
    """IPCert §4.4, per point: L_C + L_R under ``draws`` noisy models θ + ε, ε ~ N(0, σ²I) (one
    noisy model classifies every point). ĝ = mean softmax over the draws;
    L_C = ReLU(max_{c≠j} ĝ_c − ĝ_j), L_R = σ/2·ReLU(γ − ξ), ξ = Φ⁻¹(ĝ_j) − Φ⁻¹(max_{t≠j} ĝ_t),
    with the probabilities clamped to [eps, 1 − eps] before Φ⁻¹."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    state = dict(model.named_buffers())
    g_hat = 0
    for _ in range(draws):
        noisy = {n: p + sigma * torch.randn(p.shape, generator=generator, device=p.device, dtype=p.dtype)
                 for n, p in params.items()}
        g_hat = g_hat + F.softmax(functional_call(model, {**noisy, **state}, (x,)).float(), 1) / draws
    gj = g_hat.gather(1, j[:, None])[:, 0]
    runner = g_hat.scatter(1, j[:, None], float("-inf")).max(1).values
    xi = torch.special.ndtri(gj.clamp(eps, 1 - eps)) - torch.special.ndtri(runner.clamp(eps, 1 - eps))
    return F.relu(runner - gj) + sigma / 2 * F.relu(gamma - xi)


def ipguard_fingerprints(model: Trained | Classifier, dataset: str, n: int = 100, *, k: float = 5.0,
                         steps: int = 500, lr: float = 0.01, eta: float = 0.0, sigma: float = 0.01,
                         draws: int = 16, gamma: float = 8.0, seed: int = 0, start: torch.Tensor | None = None,
                         device: torch.device | None = None, progress: bool = True) -> Fingerprints:
    """``n`` IP points by IPGuard (Eq. 1) or, with ``eta`` > 0, IPCert's robust selection (Eq. 7:
    L = L_IP + η(L_C + L_R) with ``draws`` noise draws of scale ``sigma``, γ = ``gamma``).

    By default (IPCert §5.1) each x starts uniform in [0, 1]^(C×H×W) with a random pair i ≠ j.
    ``start`` (n images in [0, 1]) starts from real images instead, as the public reimplementations
    of IPGuard do: i is then the model's prediction on the image and j a random other label. x is
    optimised by Adam (``lr``, ``steps``), clamped to [0, 1] after each step; fresh noise draws
    every step. The IP label is the model's prediction on the final x. A :class:`Trained` model's
    points are cached by its hash and every setting.
    """
    if eta < 0:
        raise ValueError(f"eta={eta} must be >= 0")
    if n < 1 or steps < 0:
        raise ValueError(f"n={n} must be >= 1 and steps={steps} >= 0")
    info = D.dataset_info(dataset)
    if start is not None and (tuple(start.shape) != (n, info.channels, info.size, info.size)
                              or not bool(((start >= 0) & (start <= 1)).all())):
        raise ValueError(f"start must be None or n={n} images of shape {(info.channels, info.size, info.size)} "
                         f"with values in [0, 1]; got shape {tuple(start.shape)}")
    net = model.model if isinstance(model, Trained) else model
    if not isinstance(model, Trained):
        return _ipguard(net, dataset, n, k, steps, lr, eta, sigma, draws, gamma, seed, start, device, progress)
    key = dict(kind="ipguard", model=model.hash, dataset=dataset, n=n, k=k, steps=steps, lr=lr, eta=eta,
               sigma=sigma, draws=draws, gamma=gamma, seed=seed)
    if start is not None:
        key["start"] = D.digest(start)
    path = cache_dir() / "fingerprints" / f"{key_hash(key)}.pt"
    if path.exists():
        return Fingerprints(**torch.load(path, weights_only=True))
    fp = _ipguard(net, dataset, n, k, steps, lr, eta, sigma, draws, gamma, seed, start, device, progress)
    atomic_save(vars(fp), path)
    return fp


def _ipguard(model, dataset, n, k, steps, lr, eta, sigma, draws, gamma, seed, start, device, progress) -> Fingerprints:
    device = device or default_device()
    info = D.dataset_info(dataset)
    classes = model.head.out_features
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(n, info.channels, info.size, info.size, generator=g)
    i = torch.randint(0, classes, (n,), generator=g)
    if start is not None:
        x0, i = start.float().clone(), predict(model, start.float())
    j = (i + torch.randint(1, classes, (n,), generator=g)) % classes
    noise_gen = torch.Generator(device).manual_seed(seed)
    net = copy.deepcopy(model).eval().requires_grad_(False).to(device)
    x, i_d, j_d = x0.clone().to(device).requires_grad_(True), i.to(device), j.to(device)
    opt = torch.optim.Adam([x], lr=lr)

    def objective(x):
        loss = ipguard_loss(net(x).float(), i_d, j_d, k)
        if eta > 0:
            loss = loss + eta * robust_loss(net, x, j_d, sigma=sigma, draws=draws, gamma=gamma,
                                            generator=noise_gen)
        return loss

    with torch.no_grad():
        initial = objective(x).cpu()
    for _ in tqdm(range(steps), desc="ipguard", disable=not progress, leave=False, mininterval=2):
        opt.zero_grad(set_to_none=True)
        objective(x).sum().backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)
    with torch.no_grad():
        final = objective(x).cpu()
    x = x.detach().cpu()
    source = (f"ipguard (k={k}, steps={steps}, lr={lr}, eta={eta}, sigma={sigma}, seed={seed}, "
              f"start={'uniform' if start is None else 'images'})")
    return Fingerprints(x, predict(net, x), source, i=i, j=j, initial_loss=initial, loss=final)


# ----------------------------------------------------------------------------- data and smoothing
def attacker_data(dataset: str, n_owner: int, n: int | None = None) -> D.TensorData:
    """The attacker's post-processing data (IPCert §3.2: the other half of the training set).

    The owner trains on the first ``n_owner`` images of the fixed shuffled training set (what
    ``TrainConfig(n_train=n_owner)`` uses); the attacker gets the next ``n`` (None: all the rest),
    so the two never overlap."""
    full = D.splits(dataset).train
    if n_owner is None or not 0 < n_owner < len(full):
        raise ValueError(f"n_owner={n_owner!r} must leave training images to the attacker "
                         f"(the training set has {len(full)})")
    stop = len(full) if n is None else n_owner + n
    if n is not None and (n < 1 or stop > len(full)):
        raise ValueError(f"n={n} must be >= 1 and at most {len(full) - n_owner} (the images after "
                         f"the owner's {n_owner})")
    return full.subset(torch.arange(n_owner, stop))


@dataclass
class SmoothedVotes(Votes):
    """:class:`~wmlib.certify.Votes` with the seconds the Monte-Carlo pass took (0 if never run here)."""

    seconds: float = 0.0


def smoothed_votes(model: Trained, ip: TriggerSet, *, sigma: float, m: int, seed: int = 0,
                   space: str = "folded", progress: bool = False, prefixes=(),
                   owner: Trained | None = None) -> SmoothedVotes:
    """:func:`wmlib.certify.noisy_votes` of a cached model on an IP set, itself cached (JSON) by the
    model's hash, the IP set, σ, m, the seed, the space and the device type (the noise differs by
    device).

    ``space="folded"`` (the default) adds the noise in the certified space of the whole model file
    (:func:`wmlib.certspace.fold`: batch-norm statistics and normalisation folded into
    parameters), so the certificate covers every tensor a thief could edit; ``"parameters"`` is
    the papers' certificate, over ``model.parameters()`` only (buffers outside it). With one
    seed, the votes for m' < m draws are those of the first m' draws of m: when this pass runs,
    it also caches the votes of each m' in ``prefixes`` (seconds 0: no pass of their own).

    ``owner``: the owner's file; the votes are then those of the suspect aligned to it
    (:func:`wmlib.align.aligned`), so that rescaling units or batch norms — which keeps every
    prediction but makes the same σ relatively larger or smaller — cannot change the verdict, and
    the certificate covers every file whose aligned form lies within its radius. None: the file as
    it is (the papers' verification)."""
    align = owner is not None and model.hash != owner.hash
    name = key_hash(aligned_key(model, owner)) if align else model.hash     # aligned only if not cached
    device = default_device()
    certspace.check_space(space)

    def key(draws):
        return dict(kind="ipcert-votes", model=name, ip=ip.digest, sigma=sigma, m=draws, seed=seed,
                    device=device.type, **({"space": certspace.space_key(space)} if space != "parameters" else {}))

    def compute():
        t0 = time.time()
        suspect = aligned(model, owner) if align else model
        v = noisy_votes(certspace.folded(suspect.model, space), ip.x, ip.y, sigma=sigma, m=m, seed=seed,
                        progress=progress, prefixes=prefixes)
        for k, p in v.prefixes.items():
            memo("votes", key(k), lambda p=p, k=k: {"counts": p.counts.tolist(), "draw_match": p.draw_match.tolist(),
                                                     "seconds": 0.0})
        return {"counts": v.counts.tolist(), "draw_match": v.draw_match.tolist(),
                "seconds": time.time() - t0}

    rec = memo("votes", key(m), compute)
    return SmoothedVotes(np.asarray(rec["counts"], dtype=np.int64), np.asarray(rec["draw_match"]),
                         sigma, m, seed, seconds=rec["seconds"])


def cmr_curves(votes: Votes, y, radii, alpha: float = 0.001) -> dict[str, np.ndarray]:
    """Certified matching rate at each radius R from one set of votes, for both frameworks:
    ``IPCert`` (majority vote, Eq. 5–6) and ``MS`` (median smoothing, Bansal et al.)."""
    y = np.asarray(y)
    cert = majority_certificate(votes.counts, votes.sigma, alpha)
    return {"IPCert": certified_matching_rate(cert, y, radii),
            "MS": np.asarray(median_certificate(votes.draw_match, votes.sigma, radii, alpha))}


def largest_radius(radii, curve, level: float = 1.0) -> float:
    """The largest grid radius up to which a non-increasing curve stays ≥ ``level`` (0.0 if it
    starts below; NaN if the grid is empty)."""
    radii, curve = np.asarray(radii, dtype=float), np.asarray(curve, dtype=float)
    if len(radii) == 0:
        return float("nan")
    below = np.flatnonzero(curve < level)
    if len(below) == 0:
        return float(radii[-1])
    return float(radii[below[0] - 1]) if below[0] > 0 else 0.0


def verify(votes: Votes, y, *, threshold: float, radii, alpha: float = 0.001,
           scheme: str = "IPCert") -> Verdict:
    """IPCert's verdict on a suspect model from its votes (§4): ``score`` = its smoothed MR (the
    majority label per IP point, Eq. 4), claimed when ``score >= threshold`` (the MR the owner
    needs to claim); ``certified_radius`` = the largest R of ``radii`` with CMR(R) ≥ ``threshold``
    (Eq. 6: every model within ℓ2 distance R of this one would still be claimed), None when not
    even the smallest radius is certified. ``n``: the size of the IP set."""
    y = np.asarray(y)
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold={threshold} must be a matching rate in [0, 1]")
    radii = np.asarray(radii, dtype=float)
    if radii.ndim != 1 or len(radii) == 0 or np.any(np.diff(radii) < 0):
        raise ValueError("radii must be a non-empty increasing 1-D grid")
    curve = cmr_curves(votes, y, radii, alpha)["IPCert"]
    ok = curve >= threshold
    radius = float(radii[np.flatnonzero(~ok)[0] - 1]) if not ok.all() else float(radii[-1])
    radius = None if not ok[0] else radius
    return Verdict(scheme, matching_rate(votes.labels, y), threshold, certified_radius=radius, n=len(y))
