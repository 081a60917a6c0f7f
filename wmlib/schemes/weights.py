"""Tartaglione, Grangetto, Cavagnino & Botta 2020: a white-box watermark written into the weights.

(Poster ``003_b4b9dbef59826297.txt``; settings from the authors' code, reproduction brief §3.)

* the payload (:func:`payload`): 3,306 values in [−1, 1] divided by the scale factor SF = 0.1.
  The authors embed an RGB logo of 38×29 px; we use a seeded uniform sequence of the same length
  (the brief: any sequence of that length is a faithful payload);
* the key (:func:`make_key`): one position per payload value, drawn at random over *all*
  parameter tensors (probability ∝ tensor size, no repeats — uniform over the flattened model);
* the naive embedding Γ₀ and the robust one (:class:`Embedding`, :func:`watermark`): the key
  positions carry the payload while the other weights train; the robust embedding also pushes
  the free weights away from where noise on the key positions raises the loss;
* extraction (:func:`extract`): the Pearson correlation between the key positions and the
  payload, with its one-sided p-value against a model that never saw the payload.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from scipy import stats
from torch import nn
from torch.nn import functional as F

from .. import data as D
from ..align import align as align_models
from ..align import file_stamp
from ..align import summary as align_summary
from ..cache import load_or_create
from ..device import autocast
from ..models import Classifier, build_model
from ..stats import prediction_bound
from ..train import TrainConfig, Trained, fit, seed_everything
from ..verdict import Verdict

PAYLOAD_SIZE = 3306          # 38 x 29 px x 3 channels, the authors' logo
SCALE_FACTOR = 0.1           # SF of the authors' code: embedded values lie in [−1/SF, 1/SF]
ALPHA = 1e-6                 # false-claim rate the default threshold is set at
ALIGN_ROUNDS = 5             # weight matching's rounds: a transformed copy converges in 2-3, unrelated models never
ALIGNED_ALPHA = 0.01         # false-claim rate of the aligned extraction, calibrated on a few independent models


# ----------------------------------------------------------------------------- payload and key
def payload(n: int = PAYLOAD_SIZE, seed: int = 0, scale: float = SCALE_FACTOR) -> torch.Tensor:
    """The watermark sequence (brief §3, "Payload and key"): ``n`` values uniform in [−1, 1],
    seeded, divided by ``scale`` (SF). A seeded sequence stands in for the authors' 38×29 logo."""
    if n < 3:
        raise ValueError(f"n={n} must be >= 3 (a correlation needs at least 3 values)")
    if not scale > 0:
        raise ValueError(f"scale={scale} must be > 0")
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1).float() / scale


@dataclass(frozen=True)
class Key:
    """The secret positions: position ``i`` carries payload value ``i`` in parameter tensor
    ``names[i]`` (a name of ``model.named_parameters()``) at flat (row-major) index ``index[i]``."""

    names: tuple[str, ...]
    index: tuple[int, ...]

    def __post_init__(self):
        if len(self.names) != len(self.index):
            raise ValueError(f"names ({len(self.names)}) and index ({len(self.index)}) differ in length")

    def __len__(self) -> int:
        return len(self.index)

    @property
    def tensors(self) -> set[str]:
        """The parameter tensors the key touches."""
        return set(self.names)

    @property
    def digest(self) -> str:
        blob = json.dumps([self.names, self.index]).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def coordinates(self) -> dict[str, torch.Tensor]:
        """Per tensor name: the flat indices the key holds there (what an oracle attack takes)."""
        return {name: flat for name, (_pos, flat) in self.groups().items()}

    def groups(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per tensor name: (positions in the key, flat indices in the tensor), both int64."""
        names = np.asarray(self.names)
        index = np.asarray(self.index, dtype=np.int64)
        out = {}
        for name in dict.fromkeys(self.names):
            pos = np.flatnonzero(names == name)
            out[name] = (torch.from_numpy(pos), torch.from_numpy(index[pos]))
        return out


def make_key(model: nn.Module, n: int = PAYLOAD_SIZE, seed: int = 0) -> Key:
    """Brief §3 / the authors' ``bury_watermark``: ``n`` distinct positions over every parameter
    tensor (weights, biases, batch-norm affine, output layer), each draw choosing a tensor with
    probability ∝ its free size — the same as drawing without replacement uniformly over the
    flattened parameters, which is what we do (seeded). The key depends only on the shapes."""
    named = [(name, p.numel()) for name, p in model.named_parameters()]
    total = sum(size for _, size in named)
    if not 1 <= n <= total:
        raise ValueError(f"n={n} must lie in [1, {total}] (the model's parameter count)")
    g = torch.Generator().manual_seed(seed)
    flat = torch.randperm(total, generator=g)[:n]
    ends = torch.tensor(np.cumsum([size for _, size in named]))
    which = torch.searchsorted(ends, flat, right=True)
    starts = ends - torch.tensor([size for _, size in named])
    index = flat - starts[which]
    return Key(tuple(named[i][0] for i in which.tolist()), tuple(index.tolist()))


def _positions(model: nn.Module, key: Key) -> list[tuple[nn.Parameter, torch.Tensor, tuple[torch.Tensor, ...]]]:
    """(parameter, key positions, its multi-index) per touched tensor; the multi-index works
    whatever the memory format (``fit`` trains convolutions channels-last)."""
    params = dict(model.named_parameters())
    missing = key.tensors - set(params)
    if missing:
        raise ValueError(f"the key names tensors the model does not have: {sorted(missing)[:5]}")
    out = []
    for name, (pos, flat) in key.groups().items():
        p = params[name]
        out.append((p, pos, tuple(i.to(p.device) for i in torch.unravel_index(flat, p.shape))))
    return out


@torch.no_grad()
def embed_values(model: nn.Module, key: Key, values: torch.Tensor) -> None:
    """Write ``values`` at the key positions, in place (the authors' ``bury_watermark``)."""
    if len(values) != len(key):
        raise ValueError(f"values has {len(values)} entries but the key {len(key)} positions")
    for p, pos, idx in _positions(model, key):
        p[idx] = values[pos].to(p.device, p.dtype)


@torch.no_grad()
def read_values(model: nn.Module, key: Key) -> torch.Tensor:
    """The values at the key positions, in key order (the authors' ``exhume_watermark``)."""
    out = torch.empty(len(key), dtype=torch.float64)
    for p, pos, idx in _positions(model, key):
        out[pos] = p[idx].detach().double().cpu()
    return out


# ----------------------------------------------------------------------------- extraction
def threshold(n: int, alpha: float = ALPHA) -> float:
    """The correlation whose one-sided p-value is ``alpha`` at ``n`` values: r* = t*/√(n−2+t*²),
    t* the (1 − α) quantile of Student's t with n − 2 degrees of freedom (the test of
    :func:`scipy.stats.pearsonr`). About 0.083 for n = 3,306 and α = 1e-6."""
    if n < 3:
        raise ValueError(f"n={n} must be >= 3")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha} must lie in (0, 1)")
    t = stats.t.isf(alpha, n - 2)
    return float(t / np.sqrt(n - 2 + t * t))


def calibrated_threshold(null, alpha: float = ALIGNED_ALPHA) -> tuple[float, float, float]:
    """(threshold, mean, scale) of the aligned extraction from the correlations ``null`` of n ≥ 3
    independent models aligned to the owner's file: the one-sided (1 − ``alpha``) prediction bound
    for one more such model (:func:`wmlib.stats.prediction_bound`)."""
    return prediction_bound(null, alpha)


def correlation(model: nn.Module, key: Key, values: torch.Tensor, *,
                owner: nn.Module | None = None) -> tuple[float, float, str | None]:
    """(Pearson correlation of the key positions with the payload, its one-sided p under the
    paper's null, what alignment did): the reading of :func:`extract`, aligned to ``owner`` first
    when given (the key positions left out of the matching); 0 and p = 1 for constant values."""
    if len(values) != len(key):
        raise ValueError(f"values has {len(values)} entries but the key {len(key)} positions")
    if owner is None:
        return _correlation(model, key, values, None)
    memo = (file_stamp(model), file_stamp(owner), key.digest, D.digest(values.detach().double().cpu()))
    if memo not in _READINGS:                  # a page reads one file against one owner many times
        if len(_READINGS) >= 1024:
            _READINGS.pop(next(iter(_READINGS)))
        _READINGS[memo] = _correlation(model, key, values, owner)
    return _READINGS[memo]


_READINGS: dict = {}
"""Aligned readings of this process, by the contents of (suspect file, owner's file, key, payload):
alignment takes a second where the reading itself takes a millisecond."""


def _correlation(model, key, values, owner):
    alignment = None
    if owner is not None:
        try:
            model, report = align_models(model, owner, ignore=key.coordinates(), max_rounds=ALIGN_ROUNDS,
                                         measure=False)
            alignment = align_summary(report)
        except ValueError as e:
            alignment = f"not aligned ({e})"
    got = read_values(model, key).numpy()
    want = values.detach().double().cpu().numpy()
    if np.ptp(got) == 0 or np.ptp(want) == 0:
        return 0.0, 1.0, alignment
    res = stats.pearsonr(got, want, alternative="greater")
    return float(res.statistic), float(res.pvalue), alignment


def extract(model: nn.Module, key: Key, values: torch.Tensor, alpha: float = ALPHA, *,
            owner: nn.Module | None = None, null=None, null_alpha: float = ALIGNED_ALPHA) -> Verdict:
    """Read the key positions back and score their Pearson correlation with the payload (the
    authors' ``corr_compute``). ``p_value``: one-sided (correlation > 0) p of
    :func:`scipy.stats.pearsonr` under the null of an unwatermarked model, whose values at the key
    positions are independent of the payload. The model is claimed when the correlation reaches
    :func:`threshold` (``n``, ``alpha``), i.e. when p ≤ ``alpha`` (default 1e-6). Values that are
    all equal (e.g. zeroed) have no correlation: score 0, p = 1.

    ``owner``: the owner's file; the suspect is first aligned to it (:func:`wmlib.align.align`,
    weight matching, the key positions left out so that the payload cannot be copied into an
    unrelated model), so that permuting, rescaling or padding the units — edits that keep every
    prediction — cannot move the key positions away. None reads the file as it is (the paper's
    extraction). A suspect that is no transform of the owner's architecture is read as it is,
    and the verdict says so.

    Alignment pulls an unrelated model's weights towards the owner's: matched on every weight,
    the payload itself is copied (measured at smoke: never-watermarked LeNet5-caffe models read
    0.36–0.40 aligned that way, far above the 0.083 of p = 1e-6); with the key left out of the
    matching they read about 0. So an aligned reading is checked against the null it creates:
    with ``owner``, the threshold is the larger of the paper's and the one calibrated on ``null``,
    the aligned correlations of never-watermarked models (:func:`calibrated_threshold` at
    ``null_alpha``), and the p-value the larger of the two. Without ``null`` an aligned reading
    is refused."""
    if owner is not None and null is None:
        raise ValueError("null is None: an aligned extraction needs the aligned correlations of independent "
                         "models to set its threshold (calibrated_threshold)")
    score, p, alignment = correlation(model, key, values, owner=owner)
    thr = threshold(len(key), alpha)
    if owner is not None:         # the paper's null, unless the aligned null calls for more
        cal, mean, scale = calibrated_threshold(null, null_alpha)
        thr = max(thr, cal)
        p = max(p, float(stats.t.sf((score - mean) / scale, len(null) - 1)) if scale > 0 else float(score <= mean))
    return Verdict(scheme="tartaglione", score=score, threshold=thr, p_value=p, n=len(key), alignment=alignment)


# ----------------------------------------------------------------------------- embedding
@dataclass(eq=False)
class Embedding:
    """The watermark-aware training of Tartaglione et al. (poster, "How to delve in the loss
    landscape?"; brief §3 "Training"), for :func:`wmlib.train.fit`.

    Naive Γ₀ (``robust=False``): after every optimiser step the key positions are written back to
    the payload. We *restore* rather than mask gradients (the authors' ``freeze_watermark``): the
    free weights see exactly the same gradients, and the key weights stay exactly at the payload.
    The authors' optimiser weight decay still shrinks their masked weights by (1 − lr·wd) per
    step; we do not keep that quirk (a common scale, which Pearson correlation ignores anyway).

    Robust (``robust=True``), the authors' ``train``/``replicalib``, each minibatch: the
    ``replicas`` copies Γ_r = the central model *before* its step + N(0, σ²) on the key positions
    only (σ = ``sigma``) each take one gradient-*ascent* step of rate ``ascent_lr`` on the
    minibatch loss; then every free weight of the central model moves by −λ·mean_r(Γ_r weights)
    (λ = ``lam``). Replicas run in the training mode of the central model (batch statistics,
    dropout); their batch-norm running statistics are thrown away.

    Use it as both ``criterion`` (:meth:`criterion`: cross-entropy that also records the batch and,
    when robust, the pre-step weights) and ``after_step``; :func:`watermark` does.
    """

    key: Key
    values: torch.Tensor
    robust: bool = False
    replicas: int = 4
    sigma: float = 0.01
    ascent_lr: float = 1.0
    lam: float = 1e-6
    _state: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if len(self.values) != len(self.key):
            raise ValueError(f"values has {len(self.values)} entries but the key {len(self.key)} positions")
        if self.replicas < 1:
            raise ValueError(f"replicas={self.replicas} must be >= 1")
        if self.sigma < 0:
            raise ValueError(f"sigma={self.sigma} must be >= 0")

    @property
    def digest(self) -> str:
        head = f"tartaglione:{self.key.digest}:{D.digest(self.values.detach().float().cpu())}"
        if not self.robust:
            return f"{head}:naive"
        return (f"{head}:robust:R={self.replicas}:sigma={self.sigma}:ascent_lr={self.ascent_lr}:"
                f"lam={self.lam}")

    def _where(self, model: nn.Module):
        cached = self._state.get("where")
        if cached is None or cached[0] is not model or cached[1] != next(model.parameters()).device:
            where = [(p, idx, self.values[pos].to(p.device, p.dtype)) for p, pos, idx in _positions(model, self.key)]
            self._state["where"] = cached = (model, next(model.parameters()).device, where)
        return cached[2]

    @torch.no_grad()
    def restore(self, model: nn.Module) -> None:
        """Write the payload back at the key positions."""
        for p, idx, v in self._where(model):
            p[idx] = v

    def criterion(self, logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the batch (as ``fit``'s default); records ``(x, y)`` and, when robust,
        the weights before the step, for :meth:`__call__`."""
        self._state["batch"] = (x.detach(), y.detach())
        if self.robust and self._state.get("model") is not None:
            self._state["before"] = [p.detach().clone() for p in self._state["model"].parameters()]
        return F.cross_entropy(logits, y)

    def bind(self, model: nn.Module) -> None:
        """Tell :meth:`criterion` which model it trains (it only sees logits)."""
        self._state["model"] = model
        self._state.pop("before", None)

    def __call__(self, model: Classifier, optimizer: torch.optim.Optimizer, epoch: int, step: int) -> None:
        if self.robust and self.lam != 0:
            self._replica_step(model)
        self.restore(model)

    def _replica_step(self, model: nn.Module) -> None:
        if "batch" not in self._state or "before" not in self._state:
            raise RuntimeError("the robust embedding needs its criterion: pass criterion=emb.criterion "
                               "and call emb.bind(model) before fit (wmlib.schemes.weights.watermark does)")
        x, y = self._state["batch"]
        before = self._state.pop("before")
        params = list(model.parameters())
        after = [p.detach().clone() for p in params]
        buffers = [b.detach().clone() for b in model.buffers()]
        total = [torch.zeros_like(p) for p in params]
        where = self._where(model)
        pindex = {id(p): i for i, p in enumerate(params)}
        device = x.device
        for _ in range(self.replicas):
            with torch.no_grad():
                for p, b in zip(params, before):
                    p.copy_(b)
                for p, idx, _v in where:
                    p[idx] += self.sigma * torch.randn(len(idx[0]), device=p.device, dtype=p.dtype)
            for p in params:
                p.grad = None
            with autocast(device):
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            with torch.no_grad():
                for t, p in zip(total, params):
                    t.add_(p)
                    if p.grad is not None:
                        t.add_(p.grad, alpha=self.ascent_lr)      # ascent: Γ_r + lr·∇L(Γ_r)
        with torch.no_grad():
            for p, a in zip(params, after):
                p.copy_(a)
                p.grad = None
            for b, saved in zip(model.buffers(), buffers):
                b.copy_(saved)
            for t in total:
                t.div_(self.replicas)
            for p, idx, _v in where:                              # key positions do not move
                total[pindex[id(p)]][idx] = 0
            for p, t in zip(params, total):
                if p.requires_grad:                               # frozen layers stay frozen
                    p.sub_(self.lam * t)


def watermark(cfg: TrainConfig, key: Key, values: torch.Tensor, *, robust: bool = False,
              replicas: int = 4, sigma: float = 0.01, ascent_lr: float = 1.0, lam: float = 1e-6,
              progress: bool = True) -> Trained:
    """Train ``cfg`` from scratch with the payload at the key positions (naive Γ₀ or robust), or
    load it from the cache (kind ``models``, keyed like :func:`wmlib.train.train` plus the
    embedding's digest).

    The model is built as ``train`` builds it (seeded), the payload is written before the first
    step, and :func:`wmlib.train.fit` trains it with the :class:`Embedding` as ``criterion`` and
    ``after_step``. (``train`` takes no ``criterion``, which the robust step needs to see the
    batch; this function is ``train``'s ``create`` with those two arguments.)
    """
    emb = Embedding(key, values, robust=robust, replicas=replicas, sigma=sigma,
                    ascent_lr=ascent_lr, lam=lam)
    cache_key = {"config": asdict(cfg), "data": D.source(cfg.dataset), "extra": None,
                 "after_step": emb.digest, "init": None, "tag": "tartaglione"}
    info = D.dataset_info(cfg.dataset)

    def create():
        seed_everything(cfg.seed)
        model = build_model(cfg.model, cfg.dataset)
        embed_values(model, key, values)
        emb.bind(model)
        data = D.splits(cfg.dataset, n_train=cfg.n_train).train
        t0 = time.time()
        history = fit(model, data, epochs=cfg.epochs, lr=cfg.lr, momentum=cfg.momentum,
                      weight_decay=cfg.weight_decay, batch_size=cfg.batch_size,
                      schedule=cfg.schedule, augment=info.augment, seed=cfg.seed,
                      criterion=emb.criterion, after_step=emb,
                      desc=f"{'robust' if robust else 'naive'} {cfg.model}/{cfg.dataset}",
                      progress=progress)
        return model.cpu(), {"history": history, "seconds": time.time() - t0}

    model, record = load_or_create("models", cache_key, lambda: build_model(cfg.model, cfg.dataset), create)
    return Trained(model.eval(), record)


@dataclass(frozen=True)
class Payload:
    """A payload at a key, as an embedding that trains itself into a model (what
    :func:`wmlib.attacks.overwrite_own` takes for a watermark in the weights)."""

    key: Key
    values: torch.Tensor

    @property
    def digest(self) -> str:
        return f"weights:{self.key.digest}:{D.digest(self.values)}"

    def train(self, model: Classifier, data: D.TensorData, **fit_kw) -> list[dict]:
        return train_embedded(model, data, self.key, self.values, **fit_kw)


def train_embedded(model: Classifier, data: D.TensorData, key: Key, values: torch.Tensor, *,
                   robust: bool = False, **fit_kw) -> list[dict]:
    """Write the payload into ``model`` and train it in place on ``data`` with
    :func:`wmlib.train.fit` (``fit_kw``: its settings) and the :class:`Embedding`; no cache.
    ``replicas``, ``sigma``, ``ascent_lr`` and ``lam`` go to the embedding. Returns fit's history."""
    emb_kw = {k: fit_kw.pop(k) for k in ("replicas", "sigma", "ascent_lr", "lam") if k in fit_kw}
    emb = Embedding(key, values, robust=robust, **emb_kw)
    embed_values(model, key, values)
    emb.bind(model)
    return fit(model, data, criterion=emb.criterion, after_step=emb, **fit_kw)


__all__ = ["PAYLOAD_SIZE", "SCALE_FACTOR", "ALPHA", "payload", "Key", "Payload", "make_key", "embed_values",
           "read_values", "threshold", "extract", "Embedding", "watermark", "train_embedded"]
