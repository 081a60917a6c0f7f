"""Certification over model parameters: votes of Gaussian-noised models and their certificates.

Both certified IP-protection frameworks smooth a model θ with Gaussian noise on *all of its
parameters* and query the noisy models θ + ε, ε ~ N(0, σ²I), on the IP set (x_i, y_i), i = 1..n.
The engine noises ``model.parameters()`` of the module it is given: pass
:func:`wmlib.certspace.fold` of a model to certify its whole file (batch-norm statistics and
normalisation included, the default of the notebooks); the model itself gives the papers'
parameter-only certificate, which an edit of buffers alone escapes.

* **IPCert** (Jiang, Fang, Gong 2023, §4) takes a majority vote per IP point,
  G(θ, x) = argmax_c P[F(θ + ε, x) = c], and certifies each vote with the radius of Eq. 5
  (:func:`majority_certificate`); MR is Eq. 4 (:func:`matching_rate`) and CMR(R) Eq. 6
  (:func:`certified_matching_rate`).
* **MS** (Bansal et al. 2022, after Chiang et al. 2020) takes the median over noisy models of
  the per-model matching rate and certifies it with an order statistic
  (:func:`median_certificate`).

Both only need, per noisy draw, the labels of the whole IP set under θ + ε, so one Monte-Carlo
pass (:func:`noisy_votes`) serves both: m forward passes of an n-image batch.

**Noise order** (what a seed means). Draw j takes one flat standard-normal vector z_j of length
P = Σ numel over ``model.parameters()`` (in that order), ``torch.randn(P, generator=g)`` with one
``torch.Generator`` on the model's device seeded with ``seed``, computes ``σ·z_j`` (one rounding)
and adds it to the flat copy of θ (a second rounding); parameter k is the k-th consecutive piece.
:func:`reference_votes` spells this out with a deep copy per draw; the engine reproduces it bit
for bit.
"""
from __future__ import annotations

import contextlib
import copy
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from scipy import stats
from torch import nn
from torch.func import functional_call
from tqdm import tqdm

from . import data as D
from .device import default_device
from .models import laid_out


@dataclass
class Votes:
    """Monte-Carlo votes of m noisy models θ + ε_j on an IP set of n points (IPCert §4.3)."""

    counts: np.ndarray        # (n, |Y|) int64: counts[i, c] = m_c of point i
    draw_match: np.ndarray | None  # (m,) float64: matching rate of draw j on (x, y); None without y
    sigma: float
    m: int
    seed: int
    prefixes: dict = field(default_factory=dict, repr=False)  # m' -> Votes of the first m' draws

    @property
    def labels(self) -> np.ndarray:
        """G(θ, x_i): the majority label of each point (IPCert §4.1; ties go to the smaller label)."""
        return self.counts.argmax(1)

    @property
    def median_match(self) -> float:
        """MS matching rate: the median over draws of the per-draw matching rate (Bansal et al. 2022)."""
        if self.draw_match is None:
            raise ValueError("draw_match is None: pass IP labels y to noisy_votes")
        return float(np.median(self.draw_match))


@dataclass
class Certificate:
    """Per-point IPCert certificate (Eq. 5); ``radius`` 0 means not certified at any R ≥ 0."""

    label: np.ndarray    # (n,) G(θ, x_i) = A
    p_lower: np.ndarray  # (n,) p̲_A
    p_upper: np.ndarray  # (n,) p̄_B = max_{c≠A} p̄_c
    radius: np.ndarray   # (n,) max(0, σ/2 (Φ⁻¹(p̲_A) − Φ⁻¹(p̄_B)))
    sigma: float
    alpha: float

    @property
    def certified(self) -> np.ndarray:
        """Points with r_i > 0, i.e. p̲_A > p̄_B and σ > 0 (Lemma 4.1)."""
        return self.radius > 0


# ----------------------------------------------------------------------------- input checks
def _check_sigma(sigma) -> float:
    if not (np.isscalar(sigma) and np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma={sigma!r} must be a finite number >= 0")
    return float(sigma)


def _check_alpha(alpha) -> float:
    if not (np.isscalar(alpha) and 0 < alpha < 1):
        raise ValueError(f"alpha={alpha!r} must lie in the open interval (0, 1)")
    return float(alpha)


def _check_radii(R) -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if np.any(~np.isfinite(R)) or np.any(R < 0):
        raise ValueError(f"R={R!r} must be finite and >= 0")
    return R


# ----------------------------------------------------------------------------- Monte Carlo
def _flat_parameters(model: nn.Module):
    """Names, shapes and one flat copy of the model's parameters, in ``model.parameters()`` order."""
    named = list(model.named_parameters())
    if not named:
        raise ValueError("model has no parameters to perturb")
    kinds = {(p.dtype, p.device) for _, p in named}
    if len(kinds) != 1:
        raise ValueError(f"model parameters must share one dtype and device; found {sorted(map(str, kinds))}")
    flat = torch.cat([p.detach().reshape(-1) for _, p in named])
    return [n for n, _ in named], [p.shape for _, p in named], flat


def _prepare(model, x, y, sigma, m, seed, device):
    sigma = _check_sigma(sigma)
    if not isinstance(m, (int, np.integer)) or m <= 0:
        raise ValueError(f"m={m!r} must be a positive integer (number of noisy draws)")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} must be an integer >= 0")
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"x must be a non-empty batch [n, ...]; got shape {tuple(x.shape)}")
    if y is not None and (y.ndim != 1 or len(y) != len(x)):
        raise ValueError(f"y must have shape ({len(x)},) to match x; got {tuple(y.shape)}")
    device = torch.device(device) if device is not None else default_device()
    model.to(device)
    x = laid_out(D.to_float(x.to(device)), model)
    y = y.to(device) if y is not None else None
    return sigma, int(m), device, x, y


class _Tally:
    """Accumulates per-point label counts and per-draw matches on the device (no host syncs), with
    a copy of the counts after each draw count in ``prefixes``."""

    def __init__(self, n, m, y, device, prefixes=()):
        self.counts, self.y, self.n = None, y, n
        self.match = torch.zeros(m, dtype=torch.int64, device=device) if y is not None else None
        self.prefixes, self.snapshots = set(prefixes), {}

    def add(self, j: int, logits: torch.Tensor):
        pred = logits.argmax(1)
        if self.counts is None:
            self.counts = torch.zeros(self.n, logits.shape[1], dtype=torch.int64, device=logits.device)
        self.counts.scatter_add_(1, pred[:, None], torch.ones_like(pred)[:, None])
        if self.match is not None:
            self.match[j] = (pred == self.y).sum()
        if j + 1 in self.prefixes:
            self.snapshots[j + 1] = self.counts.clone()

    def votes(self, sigma, m, seed) -> Votes:
        match = None if self.match is None else self.match.cpu().numpy() / self.n
        out = Votes(self.counts.cpu().numpy(), match, sigma, m, seed)
        out.prefixes = {k: Votes(c.cpu().numpy(), None if match is None else match[:k], sigma, k, seed)
                        for k, c in sorted(self.snapshots.items())}
        return out


class _OverlapChooser:
    """Per draw, whether to prepare the next draw in a background thread, chosen by measured speed.

    Which is faster depends on the load, not on the code: on an idle 2-core CPU the extra thread
    competes with the forward pass's OpenMP threads (slower), while on a CPU shared with other jobs
    it also makes libgomp throttle its spin-waiting (measured up to 2x faster). So each period of
    ``period`` draws starts with a probe block of ``block`` draws without and one with the thread,
    and spends the rest in the mode whose median time per draw was lower (the first draw of each
    block, a transition, is not timed). Only speed depends on it, never the votes.
    """

    def __init__(self, block: int = 4, period: int = 128):
        self.block, self.period = block, period
        self.times = {False: [], True: []}
        self.last = self.last_mode = None

    def __call__(self, j: int) -> bool:
        now = time.perf_counter()
        phase = j % self.period
        if self.last is not None and (j - 1) % self.period % self.block:   # time draw j-1 (not a block start)
            self.times[self.last_mode].append(now - self.last)
        if phase == 0:
            self.times = {False: [], True: []}
        if phase < 2 * self.block:
            mode = phase >= self.block
        else:
            mode = bool(self.times[True]) and (not self.times[False] or
                                                np.median(self.times[True]) < np.median(self.times[False]))
        self.last, self.last_mode = now, mode
        return mode


def _noisy_flats(flat: torch.Tensor, sigma: float, m: int, seed: int, overlap) -> Iterator[torch.Tensor]:
    """Yield θ + σ·z_j for j = 0..m−1 in the noise order. When ``overlap(j)`` is true, draw j+1 is
    computed in a background thread (streams keep their order) while the caller runs draw j. The two
    work buffers are reused: a yielded tensor is valid until the next one is asked for."""
    gen = torch.Generator(device=flat.device).manual_seed(seed)
    bufs = [torch.empty_like(flat) for _ in range(2)]
    producer = pending = None

    def fill(buf):
        torch.randn(flat.shape, generator=gen, out=buf)
        return buf.mul_(sigma).add_(flat)   # (σ·z) + θ: the reference's two roundings

    try:
        for j in range(m):
            cur = pending.result() if pending is not None else fill(bufs[j % 2])
            pending = None
            if overlap(j) and j + 1 < m:
                producer = producer or ThreadPoolExecutor(1)
                pending = producer.submit(fill, bufs[(j + 1) % 2])
            elif producer is not None:          # let the thread (and its OpenMP team) go
                producer.shutdown()
                producer = None
            yield cur
    finally:
        if producer is not None:
            producer.shutdown()                 # waits for a pending fill


def noisy_votes(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *, sigma: float,
                m: int, seed: int = 0, batch_size: int | None = None, device=None,
                overlap: bool | None = None, progress: bool = False, prefixes=()) -> Votes:
    """Votes of m noisy models θ + ε_j, ε_j ~ N(0, σ²I) on all parameters, on the IP set (IPCert §4.3).

    Streaming: each draw writes θ + σ·z_j into a reused flat buffer and classifies the whole IP set
    ``x`` (uint8 or float images, n at once or ``batch_size`` at a time) through
    ``torch.func.functional_call`` with views of that buffer, in eval mode without gradients. The
    model itself is never written (its parameters stay bit-identical) and no model is copied;
    memory is three flat parameter vectors whatever m is. Labels ``y`` add the per-draw matching
    rates used by median smoothing. The P Gaussians of a draw are its main cost besides the
    forward pass; ``overlap=True`` draws them for j+1 in a background thread while draw j's
    forward pass runs, ``False`` in line; the default (None) chooses by measured speed on the CPU
    (:class:`_OverlapChooser`) and never overlaps on a GPU. Deterministic given ``seed`` on a
    given device, whatever the overlap, and equal draw for draw to :func:`reference_votes`. Since
    the draws of a seed do not depend on m, the votes of the first m' draws are those of a run
    with m'; ``prefixes`` (draw counts below m) returns them too, as ``votes.prefixes[m']``, from
    the same pass.
    """
    sigma, m, device, x, y = _prepare(model, x, y, sigma, m, seed, device)
    prefixes = sorted({int(k) for k in prefixes})
    if any(not 0 < k < m for k in prefixes):
        raise ValueError(f"prefixes={prefixes} must be draw counts in (0, m={m})")
    names, shapes, flat = _flat_parameters(model)
    sizes = [s.numel() for s in shapes]
    if overlap is None:
        overlap = _OverlapChooser() if device.type == "cpu" else (lambda j: False)
    elif not callable(overlap):
        overlap = (lambda j, on=bool(overlap): on)
    chunks = [x] if batch_size is None else list(torch.split(x, batch_size))
    tally = _Tally(len(x), m, y, device, prefixes)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            draws = contextlib.closing(_noisy_flats(flat, sigma, m, seed, overlap))
            with draws as it, tqdm(total=m, disable=not progress, desc="noisy draws", leave=False,
                                   mininterval=2) as bar:
                for j, theta in enumerate(it):
                    params = {n: t.view(s) for n, t, s in zip(names, theta.split(sizes), shapes)}
                    tally.add(j, torch.cat([functional_call(model, params, (xb,)) for xb in chunks]))
                    bar.update()
    finally:
        model.train(was_training)
    return tally.votes(sigma, m, seed)


def reference_votes(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *, sigma: float,
                    m: int, seed: int = 0, device=None) -> Votes:
    """Reference definition of the votes of IPCert §4.3: a deep copy of the model per draw, noised.

    Slow but obviously right; it fixes the noise order (module docstring) that :func:`noisy_votes`
    must reproduce exactly.
    """
    sigma, m, device, x, y = _prepare(model, x, y, sigma, m, seed, device)
    total = sum(p.numel() for p in model.parameters())
    dtype = next(model.parameters()).dtype
    gen = torch.Generator(device=device).manual_seed(seed)
    tally = _Tally(len(x), m, y, device)
    with torch.no_grad():
        for j in range(m):
            noise = torch.randn(total, generator=gen, dtype=dtype, device=device) * sigma
            noisy = copy.deepcopy(model).eval()
            offset = 0
            for p in noisy.parameters():
                p.copy_(noise[offset:offset + p.numel()].view_as(p) + p)
                offset += p.numel()
            tally.add(j, noisy(x))
    return tally.votes(sigma, m, seed)


# ----------------------------------------------------------------------------- IPCert (majority vote)
def _upper_bounds(counts: np.ndarray, q: float) -> np.ndarray:
    """p̄_c = B(1 − q; m_c + 1, m − m_c) for every cell (IPCert §4.3); m_c = 0 in closed form.

    For m_c = 0 the Beta(1, m) quantile is 1 − q^(1/m) (computed as −expm1(log q / m)); the cell
    m_c = m (only ever label A, which is excluded from p̄_B) would need shape 0 and is set to 1.
    """
    m = counts.sum(1, keepdims=True).astype(float)
    out = np.ones(counts.shape)
    mid = (counts > 0) & (counts < m)
    mm = np.broadcast_to(m, counts.shape)
    out[mid] = stats.beta.ppf(1 - q, counts[mid] + 1, mm[mid] - counts[mid])
    zero = counts == 0
    out[zero] = -np.expm1(np.log(q) / mm[zero])
    return out


def majority_certificate(counts, sigma: float, alpha: float = 0.001) -> Certificate:
    """IPCert certified radius per IP point from vote counts (Eq. 5, bounds of §4.3).

    With A = argmax_c m_c (ties: smaller label), q = α/|Y| (Bonferroni over the |Y| one-sided
    Clopper-Pearson bounds, simultaneous level 1 − α):
    p̲_A = B(q; m_A, m − m_A + 1), p̄_B = max_{c≠A} B(1 − q; m_c + 1, m − m_c),
    r = σ/2 (Φ⁻¹(p̲_A) − Φ⁻¹(p̄_B)). Lemma 4.1 needs only p̲_A ≥ p̄_B (not p̲_A > 1/2); a point
    with r ≤ 0 (p̲_A ≤ p̄_B, e.g. a 50/50 split, or σ = 0) is not certified and gets radius 0, so
    with Eq. 6's strict r_i > R it never counts, not even at R = 0.
    """
    sigma, alpha = _check_sigma(sigma), _check_alpha(alpha)
    counts = np.asarray(counts)
    if counts.ndim != 2 or counts.shape[1] < 2 or not np.issubdtype(counts.dtype, np.integer):
        raise ValueError("counts must be an integer array [n, |Y|] with |Y| >= 2; "
                         f"got {counts.dtype} {counts.shape}")
    m = counts.sum(1)
    if np.any(counts < 0) or np.any(m <= 0) or np.any(m != m[0]):
        raise ValueError("counts must be >= 0 with the same positive number of draws m in every row")
    q = alpha / counts.shape[1]
    rows = np.arange(len(counts))
    label = counts.argmax(1)
    m_a = counts[rows, label]
    p_lower = stats.beta.ppf(q, m_a, m - m_a + 1)
    upper = _upper_bounds(counts, q)
    upper[rows, label] = -np.inf
    p_upper = upper.max(1)
    r = sigma / 2 * (stats.norm.ppf(p_lower) - stats.norm.ppf(p_upper))
    return Certificate(label, p_lower, p_upper, np.where(r > 0, r, 0.0), sigma, alpha)


def matching_rate(labels, y) -> float:
    """MR = (1/n) Σ 1[G(θ, x_i) = y_i] (IPCert Eq. 4)."""
    labels, y = np.asarray(labels), np.asarray(y)
    if labels.shape != y.shape or labels.ndim != 1:
        raise ValueError(f"labels and y must be 1-D of equal length; got {labels.shape} and {y.shape}")
    return float(np.mean(labels == y))


def certified_matching_rate(cert: Certificate, y, R):
    """CMR(R) = (1/n) Σ 1[G(θ, x_i) = y_i]·1[r_i > R] (IPCert Eq. 6), for a scalar or an array of R ≥ 0.

    The inequality is strict, so CMR(0) counts only certified points (r_i > 0) and
    CMR(R) ≤ MR for every R; the curve is non-increasing in R.
    """
    y = np.asarray(y)
    if y.shape != cert.label.shape:
        raise ValueError(f"y must have shape {cert.label.shape} to match the certificate; got {y.shape}")
    R = _check_radii(R)
    ok = (cert.label == y)[:, None] & (cert.radius[:, None] > R.reshape(1, -1))
    out = ok.mean(0)
    return float(out[0]) if R.ndim == 0 else out.reshape(R.shape)


# ----------------------------------------------------------------------------- MS (median smoothing)
def order_statistic_index(m: int, p: float, alpha: float) -> int:
    """Largest k in 1..m with P[Bin(m, p) ≥ k] ≥ 1 − α, else 0 (Chiang et al. 2020 §4, lower bound).

    The k-th smallest of m i.i.d. samples lies at or below their p-quantile q_p unless fewer than
    k samples fall at or below q_p; that count is Bin(m, P[X ≤ q_p]) with P[X ≤ q_p] ≥ p, so
    P[X_(k) ≤ q_p] ≥ P[Bin(m, p) ≥ k] = 1 − F(k − 1). Hence k = #{j ∈ 0..m−1 : F_Bin(m,p)(j) ≤ α}.
    """
    cdf = stats.binom.cdf(np.arange(m), m, p)
    return int(np.searchsorted(cdf, alpha, side="right"))


def median_certificate(draw_match, sigma: float, R, alpha: float = 0.001):
    """MS certified matching rate at radius R (Bansal et al. 2022; Chiang et al. 2020, Thm. 1).

    Median smoothing: the smoothed MR of θ is the median over noise of MR(θ + ε). For any
    ‖δ‖₂ ≤ R, the median at θ + δ is at least the p̲-quantile at θ, p̲ = Φ(Φ⁻¹(1/2) − R/σ) = Φ(−R/σ).
    From m sorted per-draw rates X_(1) ≤ … ≤ X_(m) that quantile is lower-bounded, with
    probability ≥ 1 − α, by X_(k), k = max{k : P[Bin(m, p̲) ≥ k] ≥ 1 − α}
    (:func:`order_statistic_index`); when no k qualifies the bound is the trivial 0.
    (Bansal et al.'s code picks the same order statistic; Chiang et al.'s public code uses k as a
    0-based index into the sorted samples, one position higher.)
    σ = 0 certifies only R = 0. Returns a float for scalar R, else an array shaped like R.
    """
    sigma, alpha = _check_sigma(sigma), _check_alpha(alpha)
    x = np.sort(np.asarray(draw_match, dtype=float).ravel())
    if len(x) == 0:
        raise ValueError("draw_match must hold at least one per-draw matching rate")
    R = _check_radii(R)
    out = np.zeros(R.shape)
    for idx, r in np.ndenumerate(R):
        p = 0.5 if r == 0 else (stats.norm.cdf(-r / sigma) if sigma > 0 else 0.0)
        k = order_statistic_index(len(x), p, alpha)
        out[idx] = x[k - 1] if k >= 1 else 0.0
    return float(out) if R.ndim == 0 else out


def backward_under_noise(params: list[torch.Tensor], center: list[torch.Tensor], sigma: float, draws: int,
                         loss, generator: torch.Generator | None = None) -> None:
    """Accumulate into ``params``' gradients ∇ of the mean of ``loss()`` over ``draws`` noisy
    copies ``center`` + ε, ε ~ N(0, σ²I) (from ``generator`` on the CPU, else the global RNG).
    The parameters are left at the last noisy copy: the caller restores them."""
    for _ in range(draws):
        with torch.no_grad():
            for p, c in zip(params, center):
                z = torch.randn_like(c) if generator is None else torch.randn(c.shape, generator=generator)
                p.copy_(c + sigma * z.to(c.device))
        (loss() / draws).backward()
