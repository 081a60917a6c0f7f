"""Bansal et al. 2022, *Certified neural network watermarks with randomized smoothing*: settings
per profile and the experiment steps its notebook ``notebooks/bansal2022.py`` narrates.

The steps, in the notebook's order: the owner's models, per trigger kind a ``baseline`` watermark
(the authors' ``--simple``: the trigger set shuffled into training, no noise) and a ``certified``
one (the same plus the noise curriculum up to σ) (:func:`train_models`); the σ study, the
certified watermark trained up to each σ of ``sigma_study`` (:func:`sigma_study`); the certified
trigger accuracy per kind and radius (:func:`certified_table`); the ℓ2 adversary, PGD on every
coordinate of the model file at each radius (:func:`adversary_table`); fine-tuning and
distillation, reported black-box and white-box (:func:`attack_table`); the adaptive attacker
against the certificate (:func:`soundness`); the zero-cost edits of the certified file
(:func:`zero_cost`); the paper's rows (:func:`claim_rows`).

Radii are in units of σ throughout (``R/σ``): the paper certifies at σ = 1, where R/σ = R.
The certificate and every distance cover the whole model file (:mod:`wmlib.certspace`, space
``folded``); the paper's noise and its adversary touch the parameters only. The method is
:mod:`wmlib.schemes.bansal`; the published numbers are ``claims/bansal2022.yaml``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch

from .. import attacks, certspace, zerocost
from .. import claims as C
from .. import data as D
from ..models import narrow
from ..report import span
from ..results import Row, claimed, ours_only
from ..schemes import bansal as B
from ..schemes.adi import TriggerCycler, TriggerSet
from ..schemes.ipcert import smoothed_votes
from ..settings import Checks, Settings, Targets
from ..train import Trained, TrainConfig, accuracy, evaluate, train
from ..verdict import Verdict

PAPER = "bansal2022"
EMBEDDINGS = ("baseline", "certified")
RADII = (0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0)
"""The certificate's radii in units of σ (the paper's ℓ2 radii 0.2 … 2.0 at σ = 1)."""
PAPER_RADII = (0.2, 0.4, 0.6, 0.8, 1.0, 1.2)      # the certified-accuracy table's columns
ADVERSARY_RADII = (0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8)
ATTACKS = (("fine-tuning", 1e-4), ("fine-tuning", 1e-3), ("hard-label distillation", 1e-3),
           ("soft-label distillation", 1e-3), ("hard-label distillation + reg", 0.1))
"""The paper's removal attacks and their Adam learning rates (slides; the authors' ``*_attack.py``)."""


@dataclass(frozen=True, kw_only=True)
class BansalTargets(Targets):
    """What a profile checks (accuracies as fractions). ``max_acc_drop``: a certified model's test
    accuracy below its baseline's at most this (also the σ study's criterion);
    ``max_acc_drop_other``: the same for the trigger kinds other than the study's (σ is chosen on
    the study's kind); ``min_certified``: certified trigger accuracy at the smallest radius (0.2σ) at least this,
    every kind; ``min_adversary_gap``: under the ℓ2 adversary the certified watermark's verified
    (smoothed) trigger accuracy minus the baseline's (queried plainly, its only verification), at
    every radius, at least this (``min_adversary_gap_plain``: both queried plainly);
    ``min_white_minus_black``: after fine-tuning and distillation the white-box (median) minus the
    black-box trigger accuracy at least this (``min_white_minus_black_reg``: after the "+ reg"
    distillation at rate 0.1); ``max_sound_violations``: adaptive attacks whose fresh median falls
    below the certified value; ``max_null_claims``: never-watermarked models claimed as the paper
    reads them (the zero-cost edits' null)."""

    min_clean_acc: float
    max_acc_drop: float = 0.02
    max_acc_drop_other: float = 0.02
    min_certified: float = 0.9
    min_adversary_gap: float = 0.0
    min_adversary_gap_plain: float = 0.0
    min_white_minus_black: float = 0.0
    min_white_minus_black_reg: float = 0.0
    max_sound_violations: int = 0
    max_null_claims: int = 0


@dataclass(frozen=True, kw_only=True)
class BansalSettings(Settings):
    """One (profile, dataset) of the Bansal et al. notebook. ``n_*`` = None: the whole part.

    The owner trains ``model`` for ``epochs`` on the first ``n_train`` images of the first half of
    the (fixed, shuffled) training set, SGD at ``lr`` (``schedule``, ``momentum``,
    ``weight_decay``, batches of ``batch_size``), with ``per_batch`` trigger images appended to
    each batch (the trigger sets: ``n_trigger`` images, the paper's 100). The certified watermark adds the noise curriculum (:class:`~wmlib.schemes.bansal.NoiseCurriculum`)
    up to ``sigma`` in ``levels`` steps of ``draws`` noisy copies on ``curriculum_batch``
    triggers, after ``warmup`` epochs, every ``every`` steps (None: once an epoch), loss scaled
    by ``scale``, noise on ``noise_space`` (``folded``: the whole file, the certificate's space;
    ``parameters``: the authors'). The certificate reads ``m`` noisy models at ``sigma`` at ``confidence``;
    ``sigma_study``: the σ the study trains the ``study_kind`` watermark to (certificate from
    ``m_study`` draws). Attacks run on ``attack_kind``'s models with ``n_attack`` images of the
    second half: Adam for ``attack_epochs`` in batches of ``attack_batch`` at the rates of
    :data:`ATTACKS`; the "+ reg" run keeps weight decay 1e-4 for ``reg_decay_epochs`` epochs;
    white-box = mean and median over ``wb_draws`` noisy copies. The ℓ2 adversary runs
    ``adv_iters`` PGD steps at ``adv_lr`` (λ = ``adv_lam``, ``adv_val_batch`` of the attacker's
    images a step) at each radius of ``adv_radii`` × σ (the paper's: :data:`ADVERSARY_RADII`).
    Soundness: the adaptive PGD
    (loss averaged over ``adaptive_draws`` noise draws, ``adaptive_iters`` steps) at each of
    ``sound_radii`` × σ, checked on ``m_check`` fresh draws. Test accuracy on ``n_test`` images.
    ``claim_accuracy``: the smoothed trigger accuracy from which the owner claims a model (the
    verdict's threshold; the slides give none). ``n_independent``: never-watermarked models,
    trained as the owner's without triggers at the next seeds, which the zero-cost edits' null
    reads as they are and aligned to the owner's file.
    """

    model: str = "cifar_cnn"
    n_train: int | None = None
    n_attack: int | None = None
    n_test: int | None = None
    epochs: int
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 100
    schedule: str = "onecycle"
    per_batch: int = 1
    n_trigger: int = 100
    kinds: tuple[str, ...] = B.KINDS
    sigma: float
    warmup: int = 1
    levels: int = 5
    draws: int = 10
    curriculum_batch: int = 64
    every: int | None = 50
    scale: str = "authors"
    noise_space: str = "folded"
    m: int = 1000
    confidence: float = 0.99
    sigma_study: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
    study_kind: str = "embedded content"
    m_study: int = 200
    attack_kind: str = "embedded content"
    attack_epochs: int = 1
    attack_batch: int = 256
    reg_decay_epochs: int = 1
    wb_draws: int = 100
    adv_radii: tuple[float, ...] = ADVERSARY_RADII
    adv_iters: int = 20
    adv_lr: float = 0.05
    adv_lam: float = 1.0
    adv_val_batch: int | None = 100
    sound_radii: tuple[float, ...] = (0.5, 1.0)
    adaptive_draws: int = 2
    adaptive_iters: int = 20
    m_check: int = 50
    claim_accuracy: float = 0.5
    n_independent: int = 5
    targets: BansalTargets

    def __post_init__(self):
        for name in ("kinds",):
            for k in getattr(self, name):
                if k not in B.KINDS:
                    raise ValueError(f"{name}: {k!r} is not known; accepted values: {list(B.KINDS)}")
        for name in ("study_kind", "attack_kind"):
            if getattr(self, name) not in self.kinds:
                raise ValueError(f"{name}={getattr(self, name)!r} must be one of kinds={list(self.kinds)}")
        if self.sigma not in self.sigma_study:
            raise ValueError(f"sigma={self.sigma!r} must be one of sigma_study={list(self.sigma_study)} "
                             "(the profile runs at a σ the study measured)")

    def train_config(self, dataset: str, seed: int = 0) -> TrainConfig:
        return TrainConfig(model=self.model, dataset=dataset, epochs=self.epochs, lr=self.lr,
                           momentum=self.momentum, weight_decay=self.weight_decay,
                           batch_size=self.batch_size, schedule=self.schedule, n_train=self.n_train, seed=seed)

    def curriculum(self, trigger: TriggerSet, sigma: float) -> B.NoiseCurriculum:
        """The noise curriculum up to ``sigma`` in ``levels`` steps (the authors': 0.05 × 20 up to 1)."""
        return B.NoiseCurriculum(trigger, warmup=self.warmup, step=sigma / self.levels, levels=self.levels,
                                 draws=self.draws, batch=self.curriculum_batch, scale=self.scale, every=self.every,
                                 space=self.noise_space)

    def tiny(self) -> "BansalSettings":
        """Every step of the notebook at a size that runs in about a minute on a CPU with the
        profile's own model (ResNet-18 at 1/8 width, :data:`wmlib.models.NARROW`): one trigger kind of 10 images, the study at the profile's σ only, 64
        owner images for two epochs (the curriculum acts in the second), two levels of two draws, 32
        attacker images, a handful of noise draws, one adversary radius of two PGD steps; smoke targets."""
        return self.replace(model=narrow(self.model), kinds=(self.attack_kind,), study_kind=self.attack_kind,
                            sigma_study=(self.sigma,),
                            n_trigger=10, n_train=64, n_attack=32, n_test=30, epochs=2, warmup=1, levels=2, draws=2,
                            every=1, m=8, m_study=4, attack_epochs=1, wb_draws=2, adv_radii=self.adv_radii[:1],
                            adv_iters=2, adv_val_batch=16, adaptive_draws=1, adaptive_iters=2, m_check=2,
                            sound_radii=self.sound_radii[:1], n_independent=2, targets=SMOKE_TARGETS)


#: smoke: sanity bounds only (seconds of training learn little); the paper's claims shown only
SMOKE_TARGETS = BansalTargets(min_clean_acc=0.05, shown_only=(
    "max_acc_drop", "max_acc_drop_other", "min_certified", "min_adversary_gap", "min_adversary_gap_plain", "min_white_minus_black",
    "min_white_minus_black_reg", "max_null_claims"))
#: cpu: queried plainly, the certified watermark is not more robust to the ℓ2 adversary than the
#: baseline, and the "+ reg" distillation leaves nothing to verify (page: what we find)
_CPU_SHOWN = ("min_adversary_gap_plain", "min_white_minus_black_reg")

_S = BansalSettings
SETTINGS: dict[str, dict[str, BansalSettings]] = {
    # smoke: two of the three trigger kinds (the study's and one other), half the trigger images,
    # the study at the profile's σ only
    "smoke": {ds: _S(kinds=("embedded content", "unrelated"), n_trigger=50, n_train=300, n_attack=200, n_test=300, epochs=2, levels=2, draws=2, every=2,
                     sigma=0.25, sigma_study=(0.25,), m=40, m_study=20, wb_draws=5, adv_iters=3,
                     adv_radii=ADVERSARY_RADII[::4],
                     adv_val_batch=20, adaptive_draws=1, adaptive_iters=2, m_check=10, sound_radii=(1.0,),
                     n_independent=2, targets=SMOKE_TARGETS)
              for ds in ("mnist", "cifar10")},
    "cpu": {
        # σ: the largest of the study within 2 points of test accuracy (measured: the book page)
        # the other kinds' accuracy drop shown only: measured on a 2-core AVX-512 machine in bf16, the
        # noise watermark's 96.74 % against 99.64 % (an earlier fp32 run stayed within 2 points)
        # as CIFAR-10 (the curriculum every 150 steps, 500 draws, the lighter adversary, three σ): the
        # notebook within the book's budget (issue 24; every 50 steps, 1,000 draws, 20 PGD steps and
        # four σ took 32 min from an empty cache on a 2-core AVX-512 CPU)
        "mnist": _S(n_train=30_000, n_attack=10_000, n_test=5000, epochs=3, sigma=0.1, every=150, m=500,
                    sigma_study=(0.1, 0.25, 1.0), adv_iters=10, m_check=30,
                    targets=BansalTargets(min_clean_acc=0.97, shown_only=_CPU_SHOWN + ("max_acc_drop_other",))),
        # the curriculum every 150 steps, 500 draws, a lighter adversary: the page, "Why these settings"
        # the accuracy budget shown only: on a 2-core AVX-512 machine (2026-12-07, seed 0) the certified
        # embedded-content model read 72.94 % against the baseline's 75.12 % (2.18 points, so no σ
        # of the study within 2); four epochs of one run sit on that line either way
        "cifar10": _S(n_train=25_000, n_attack=5000, n_test=5000, epochs=4, sigma=0.1, every=150, m=500,
                      sigma_study=(0.1, 0.25, 1.0), adv_iters=10, m_check=30,
                      targets=BansalTargets(min_clean_acc=0.65,
                                            shown_only=_CPU_SHOWN + ("max_acc_drop", "max_acc_drop_other"))),
    },
    # the authors' warm-up of 10 (MNIST) / 5 (CIFAR-10) epochs counted from 0: ours counts from 1
    "paper": {
        ds: _S(model="resnet18", n_train=n, n_attack=None, n_test=None, epochs=100, lr=0.05, batch_size=256,
               schedule="step30", warmup=warm, levels=20, draws=100, every=None, sigma=1.0,
               sigma_study=(0.25, 0.5, 1.0), m_study=1000, attack_epochs=50, reg_decay_epochs=10,
               adv_iters=1000, adv_lr=0.01, adv_val_batch=None, adaptive_draws=8, adaptive_iters=200,
               m_check=1000, targets=BansalTargets(min_clean_acc=acc))
        for ds, n, warm, acc in (("mnist", 30_000, 11, 0.99), ("cifar10", 25_000, 6, 0.88),
                                 ("cifar100", 25_000, 6, 0.6))},
}


# ----------------------------------------------------------------------------- the owner's models
def attacker_data(dataset: str, n: int | None = None) -> D.TensorData:
    """The attacker's images: the first ``n`` of the second half of the fixed shuffled training
    set (the owner trains on the first half; brief §4)."""
    full = D.splits(dataset).train
    half = len(full) // 2
    return full.subset(torch.arange(half, len(full))).head(n)


def triggers(P: BansalSettings, dataset: str, seed: int = 0) -> dict[str, TriggerSet]:
    """The trigger set of every kind of ``P.kinds`` (:func:`wmlib.schemes.bansal.trigger_set`)."""
    return {k: B.trigger_set(k, dataset, seed=seed, n=P.n_trigger) for k in P.kinds}


def watermark(P: BansalSettings, dataset: str, trigger: TriggerSet, sigma: float | None, *, seed: int = 0,
              progress: bool = True) -> Trained:
    """The owner's watermarked model: ``P.per_batch`` trigger images appended to every batch of
    the owner's half; with the noise curriculum up to ``sigma`` (certified) or without (None: the
    authors' ``--simple`` baseline). Cached by its full configuration."""
    half = len(D.splits(dataset).train) // 2
    if P.n_train is None or P.n_train > half:
        raise ValueError(f"n_train={P.n_train!r} must be at most the owner's half, {half} images of {dataset}")
    return train(P.train_config(dataset, seed), extra=TriggerCycler(trigger, P.per_batch),
                 after_step=P.curriculum(trigger, sigma) if sigma else None, tag="bansal", progress=progress)


def trainings(P: BansalSettings, dataset: str, seed: int = 0) -> dict[str, TrainConfig]:
    """The independent trainings of the notebook (jobs of a grid): the ``P.n_independent``
    never-watermarked models of the zero-cost edits' null (:func:`independents`)."""
    return {f"independent, seed {s}": P.train_config(dataset, s) for s in range(seed + 1, seed + 1 + P.n_independent)}


def independents(P: BansalSettings, dataset: str, *, seed: int = 0, progress: bool = True) -> dict[str, Trained]:
    """The never-watermarked models of :func:`trainings`, by name (cached: a grid trains them first)."""
    return {name: train(cfg, progress=progress) for name, cfg in trainings(P, dataset, seed).items()}


def owner_trainings(P: BansalSettings, dataset: str, seed: int = 0) -> dict[str, TrainConfig]:
    """The trainings this notebook runs itself, for a plan's estimate: a baseline and a certified
    model per trigger kind and one per σ of the study (the attacks are not counted)."""
    cfg = P.train_config(dataset, seed)
    out = {f"{k} {w}": cfg for k in P.kinds for w in ("baseline", "certified")}
    out.update({f"σ study {s:g}": cfg for s in P.sigma_study if s != P.sigma})
    return out


def train_models(P: BansalSettings, dataset: str, trig: dict[str, TriggerSet], *, seed: int = 0,
                 progress: bool = True) -> dict[str, dict[str, Trained]]:
    """kind → {"baseline": …, "certified": …} (certified: the curriculum up to ``P.sigma``)."""
    return {k: {"baseline": watermark(P, dataset, t, None, seed=seed, progress=progress),
                "certified": watermark(P, dataset, t, P.sigma, seed=seed, progress=progress)}
            for k, t in trig.items()}


def draw_acc(model: Trained, trigger: TriggerSet, sigma: float, m: int, *, seed: int = 0,
             prefixes=(), owner: Trained | None = None) -> np.ndarray:
    """The trigger accuracy of each of ``m`` noisy copies of ``model`` at ``sigma`` in the certified
    space of the whole file: the ``draw_match`` of the engine's cached votes
    (:func:`wmlib.schemes.ipcert.smoothed_votes`, one pass for IPCert and Bansal et al. alike);
    ``owner``: of ``model`` aligned to the owner's file first."""
    return smoothed_votes(model, trigger, sigma=sigma, m=m, seed=seed, space="folded", prefixes=prefixes,
                          owner=owner).draw_match


def draw_seconds(model: Trained, trigger: TriggerSet, sigma: float, m: int, *, seed: int = 0,
                 owner: Trained | None = None) -> float:
    """Seconds the draws of :func:`draw_acc` took on an empty cache (0 for a prefix of a longer pass)."""
    return smoothed_votes(model, trigger, sigma=sigma, m=m, seed=seed, space="folded", owner=owner).seconds


def owners_table(models: dict[str, dict[str, Trained]], trig: dict[str, TriggerSet], test: D.TensorData) -> pd.DataFrame:
    """Per trigger kind and embedding: test accuracy, plain trigger accuracy (%), training minutes."""
    rows = {(k, emb): {"test accuracy": _pct(evaluate(t, test)),
                       "trigger accuracy": _pct(accuracy(t.model, trig[k].x, trig[k].y)),
                       "training (min)": t.record["seconds"] / 60}
            for k, pair in models.items() for emb, t in pair.items()}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index = pd.MultiIndex.from_tuples(out.index, names=["trigger", "embedding"])
    return out


def certificates(P: BansalSettings, models: dict[str, dict[str, Trained]], trig: dict[str, TriggerSet], *,
                 seed: int = 0) -> dict[tuple[str, str], np.ndarray]:
    """(kind, embedding) → per-draw trigger accuracies at ``P.sigma``: ``P.m`` draws for the
    certified models (the first ``P.m_study`` of them cached too, for the σ study), ``P.m_study``
    for the baselines (their certificate is a reference, not a claim)."""
    out = {}
    for k, pair in models.items():
        pre = (P.m_study,) if P.m_study < P.m else ()
        out[k, "certified"] = draw_acc(pair["certified"], trig[k], P.sigma, P.m, seed=seed, prefixes=pre)
        out[k, "baseline"] = draw_acc(pair["baseline"], trig[k], P.sigma, P.m_study, seed=seed)
    return out


def _pct(x) -> float:
    return 100 * float(x)


def certified_curve(P: BansalSettings, acc: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """Certified trigger accuracy (%) at R = r·σ for each r of :data:`RADII`."""
    s = P.sigma if sigma is None else sigma
    return 100 * np.asarray(B.certified_trigger_accuracy(acc, s, s * np.asarray(RADII), P.confidence))


def largest_radius(curve: np.ndarray, level: float = 50.0) -> float:
    """The largest R/σ of :data:`RADII` whose certified trigger accuracy (%) is ≥ ``level``; 0 if none."""
    ok = np.asarray(curve) >= level
    return float(np.asarray(RADII)[ok].max()) if ok.any() else 0.0


def certified_table(P: BansalSettings, acc: dict[tuple[str, str], np.ndarray]) -> pd.DataFrame:
    """Certified trigger accuracy (%) per trigger kind and embedding (rows) at each R/σ of
    :data:`RADII` (columns), and the smoothed (median) trigger accuracy and its draws."""
    rows = {}
    for (k, emb), a in acc.items():
        rows[k, emb] = {"median": _pct(np.median(a)), "draws": len(a),
                        **{f"{r:g}": v for r, v in zip(RADII, certified_curve(P, a))}}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index = pd.MultiIndex.from_tuples(out.index, names=["trigger", "embedding"])
    return out.sort_index(level=0, sort_remaining=False)


def verdict_table(P: BansalSettings, acc: dict[tuple[str, str], np.ndarray]) -> pd.DataFrame:
    """The scheme's verdict (:func:`wmlib.schemes.bansal.verify`) of each owner's model from its
    draws: smoothed trigger accuracy (median), the threshold ``P.claim_accuracy``, claimed or not,
    and the largest R/σ of :data:`RADII` certified at or above the threshold."""
    rows = {}
    for (k, emb), a in acc.items():
        v = B.verify(a, sigma=P.sigma, threshold=P.claim_accuracy, radii=P.sigma * np.asarray(RADII),
                     confidence=P.confidence, n=100)
        rows[k, emb] = {"smoothed (median)": _pct(v.score), "threshold": _pct(v.threshold),
                        "claimed": "yes" if v.passed else "no",
                        "certified radius (R/σ)": (v.certified_radius / P.sigma) if v.certified_radius else 0.0}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index = pd.MultiIndex.from_tuples(out.index, names=["trigger", "embedding"])
    return out.sort_index(level=0, sort_remaining=False)


# ----------------------------------------------------------------------------- the σ study
def sigma_study(P: BansalSettings, dataset: str, trig: dict[str, TriggerSet], baseline: Trained,
                test: D.TensorData, *, seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """The certified ``P.study_kind`` watermark trained up to each σ of ``P.sigma_study``: test
    accuracy and its drop from the baseline (points), trigger accuracy plain and smoothed (median
    of ``P.m_study`` draws at that σ), certified trigger accuracy at 0.2σ and σ, and the largest
    R/σ (and R) certified at ≥ 50 %. ``selected``: the largest σ within ``max_acc_drop``."""
    trigger = trig[P.study_kind]
    base = _pct(evaluate(baseline, test))
    rows = []
    for s in P.sigma_study:
        t = watermark(P, dataset, trigger, s, seed=seed, progress=progress)
        a = draw_acc(t, trigger, s, P.m_study, seed=seed)
        curve = certified_curve(P, a, s)
        acc = _pct(evaluate(t, test))
        rows.append({"σ": s, "test accuracy": acc, "drop from baseline": base - acc,
                     "trigger accuracy": _pct(accuracy(t.model, trigger.x, trigger.y)),
                     "smoothed (median)": _pct(np.median(a)), "certified at 0.2σ": curve[0],
                     "certified at σ": curve[RADII.index(1.0)], "largest R/σ ≥ 50 %": largest_radius(curve),
                     "largest R ≥ 50 %": s * largest_radius(curve), "training (min)": t.record["seconds"] / 60,
                     "seconds": t.record["seconds"] + draw_seconds(t, trigger, s, P.m_study, seed=seed)})
    out = pd.DataFrame(rows).set_index("σ")
    within = out.index[out["drop from baseline"] <= 100 * P.targets.max_acc_drop]
    out["selected"] = ["yes" if len(within) and s == max(within) else "" for s in out.index]
    return out


# ----------------------------------------------------------------------------- zero-cost edits
def _reader(P: BansalSettings, trigger: TriggerSet, seed: int) -> Callable[[Trained], Verdict]:
    """Bansal et al.'s verdict (:func:`wmlib.schemes.bansal.verify`: the median trigger accuracy of
    ``P.m_check`` noisy copies of the file as it is, at σ) on ``trigger``."""
    def read(t: Trained) -> Verdict:
        a = smoothed_votes(t, trigger, sigma=P.sigma, m=P.m_check, seed=seed, space="folded").draw_match
        return B.verify(a, sigma=P.sigma, threshold=P.claim_accuracy, radii=P.sigma * np.asarray(RADII),
                        confidence=P.confidence, n=len(trigger))
    return read


def zero_cost(P: BansalSettings, models: dict[str, dict[str, Trained]], trig: dict[str, TriggerSet],
              test: D.TensorData, *, seed: int = 0, only: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Each zero-cost edit (:func:`wmlib.zerocost.study`) of the certified ``P.study_kind``
    watermark's file, verified as the paper does (:func:`_reader`) and with the noisy copies drawn
    around the suspect aligned to the owner's file (:func:`wmlib.zerocost.verify_after_alignment`,
    whose summary the verdict keeps). ``only``: the edits (None: all). Indexed by edit."""
    owner, read = models[P.study_kind]["certified"], _reader(P, trig[P.study_kind], seed)
    return zerocost.study(owner, read, test, verify_aligned=zerocost.verify_after_alignment(read, owner),
                          seed=seed, only=only)


def zero_cost_null(P: BansalSettings, models: dict[str, dict[str, Trained]], trig: dict[str, TriggerSet],
                   others: dict[str, Trained], *, seed: int = 0) -> pd.DataFrame:
    """The never-watermarked models ``others`` (:func:`independents`) verified on the
    ``P.study_kind`` trigger set as the paper does and aligned to the certified owner's file first
    (:func:`wmlib.zerocost.independents`): alignment must not manufacture a match. Indexed by model.
    (Not the other trigger kinds' watermarks: every trigger set is labelled 4, so a model
    watermarked with one answers 4 on the others' images too.)"""
    owner, read = models[P.study_kind]["certified"], _reader(P, trig[P.study_kind], seed)
    return zerocost.independents(others, read, zerocost.verify_after_alignment(read, owner))


# ----------------------------------------------------------------------------- attacks
def smoothed(model: Trained, trigger: TriggerSet, sigma: float, m: int, seed: int,
             owner: Trained | None = None) -> tuple[float, float]:
    """(mean, median) trigger accuracy (%) over ``m`` noisy copies at ``sigma``: the white-box
    verification of Bansal et al. (the authors: 100 copies); ``owner``: drawn around the suspect
    aligned to the owner's file (:func:`wmlib.align.aligned`), None: the file as it is (the paper's)."""
    a = draw_acc(model, trigger, sigma, m, seed=seed, owner=owner)
    return _pct(a.mean()), _pct(np.median(a))


def adversary_table(P: BansalSettings, pair: dict[str, Trained], trigger: TriggerSet, val: D.TensorData,
                    test: D.TensorData, cert: np.ndarray, *, seed: int = 0) -> pd.DataFrame:
    """The ℓ2 adversary (the paper's worst case): PGD on every coordinate of the model file
    (:func:`wmlib.attacks.worst_case`, ``space="folded"``, margin loss on the triggers, λ·loss
    against the attacker's cross-entropy on ``val``) at each radius r·σ of ``P.adv_radii``,
    for the baseline and the certified watermark. Trigger accuracy plain (black-box) and smoothed
    (median of ``P.m_check`` fresh draws), test accuracy, and the certified model's certificate at r."""
    rows = []
    for r in P.adv_radii:
        for emb, t in pair.items():
            a = attacks.worst_case(t, trigger, val, radius=r * P.sigma, lam=P.adv_lam, lr=P.adv_lr,
                                   iters=P.adv_iters, val_batch=P.adv_val_batch, seed=seed, ip_loss="margin",
                                   space="folded")
            rows.append({"R/σ": r, "embedding": emb, "R": r * P.sigma,
                         "trigger accuracy": _pct(accuracy(a.model, trigger.x, trigger.y)),
                         "smoothed (median)": smoothed(a, trigger, P.sigma, P.m_check, seed + 1)[1],
                         "certified": _pct(B.certified_trigger_accuracy(cert, P.sigma, r * P.sigma, P.confidence))
                         if emb == "certified" else np.nan,
                         "test accuracy": _pct(evaluate(a, test)), "ℓ2 moved": a.record["delta_norm"],
                         "seconds": a.record["seconds"] + draw_seconds(a, trigger, P.sigma, P.m_check, seed=seed + 1)})
    return pd.DataFrame(rows)


def removal(P: BansalSettings, name: str, lr: float, model: Trained, data: D.TensorData, *, augment: bool,
            seed: int = 0, progress: bool = True) -> Trained:
    """One of the paper's removal attacks (:data:`ATTACKS`) on a copy of ``model``: Adam at ``lr``
    for ``P.attack_epochs`` in batches of ``P.attack_batch``, no schedule (the authors'
    ``*_attack.py``). Fine-tuning: cross-entropy on the attacker's labels; hard-label
    distillation: on the teacher's argmax; soft-label: MSE between the logits; "+ reg": hard-label
    with weight decay 1e-4 for the first ``P.reg_decay_epochs`` epochs, then none."""
    kw = dict(epochs=P.attack_epochs, lr=lr, batch_size=P.attack_batch, weight_decay=0.0, augment=augment,
              seed=seed, optimizer="adam", progress=progress)
    if name == "fine-tuning":
        return attacks.fine_tune(model, "FTAL", data, **kw)
    if name == "hard-label distillation":
        return attacks.distill(model, data, labels="hard", **kw)
    if name == "soft-label distillation":
        return attacks.distill(model, data, labels="logits", **kw)
    if name == "hard-label distillation + reg":
        return attacks.distill(model, data, labels="hard", decay_epochs=P.reg_decay_epochs,
                               **dict(kw, weight_decay=1e-4))
    raise ValueError(f"name={name!r} is not known; accepted values: {sorted({a for a, _ in ATTACKS})}")


def attack_table(P: BansalSettings, pair: dict[str, Trained], trigger: TriggerSet, data: D.TensorData,
                 test: D.TensorData, *, augment: bool, seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """The paper's removal attacks on the baseline and the certified watermark: test accuracy,
    trigger accuracy queried plainly (black-box) and smoothed (white-box: mean and median of
    ``P.wb_draws`` noisy copies at σ around the attacked file aligned to its owner's, and the
    median around the file as it is: the paper's reading), and the distance moved over the whole
    file and over parameters only."""
    rows = []
    for name, lr in ATTACKS:
        for emb, t in pair.items():
            a = removal(P, name, lr, t, data, augment=augment, seed=seed, progress=progress)
            paper_median = smoothed(a, trigger, P.sigma, P.wb_draws, seed + 1)[1]
            try:
                o = t
                mean, median = smoothed(a, trigger, P.sigma, P.wb_draws, seed + 1, owner=o)
            except ValueError:                  # cannot be aligned (say, a diverged attack): read as it is
                o = None
                mean, median = smoothed(a, trigger, P.sigma, P.wb_draws, seed + 1)
            rows.append({"attack": name, "lr": lr, "embedding": emb, "test accuracy": _pct(evaluate(a, test)),
                         "black-box": _pct(accuracy(a.model, trigger.x, trigger.y)),
                         "white-box (mean)": mean, "white-box (median)": median,
                         "white-box (median), the paper's reading": paper_median,
                         "ℓ2 whole file": certspace.distance(a.model, t.model, "folded"),
                         "ℓ2 parameters": certspace.distance(a.model, t.model, "parameters"),
                         "aligned": "yes" if o is not None else "no (cannot be aligned: read as it is)",
                         "seconds": a.record["seconds"] + sum(draw_seconds(a, trigger, P.sigma, P.wb_draws, seed=seed + 1,
                                                                           owner=w) for w in ((o, None) if o is not None else (None,)))})
    return pd.DataFrame(rows)


def soundness(P: BansalSettings, model: Trained, trigger: TriggerSet, val: D.TensorData, cert: np.ndarray, *,
              seed: int = 0) -> pd.DataFrame:
    """The adaptive attacker against the certificate: PGD on the *smoothed* trigger accuracy (margin
    loss averaged over ``P.adaptive_draws`` noise draws at σ, every coordinate of the file) within
    r·σ for each r of ``P.sound_radii``. A violation: the median of ``P.m_check`` fresh draws of
    the attacked model below the certified trigger accuracy at the distance it moved."""
    rows = []
    for r in P.sound_radii:
        a = attacks.worst_case(model, trigger, val, radius=r * P.sigma, lam=P.adv_lam, lr=P.adv_lr,
                               iters=P.adaptive_iters, val_batch=P.adv_val_batch, seed=seed, ip_loss="margin",
                               noise_sigma=P.sigma, noise_draws=P.adaptive_draws, space="folded")
        d = a.record["delta_norm"]
        fresh = smoothed(a, trigger, P.sigma, P.m_check, seed + 1)[1]
        bound = _pct(B.certified_trigger_accuracy(cert, P.sigma, d, P.confidence)) if np.isfinite(d) else np.nan
        rows.append({"R/σ": r, "ℓ2 moved": d, "trigger accuracy": _pct(accuracy(a.model, trigger.x, trigger.y)),
                     "smoothed (median), fresh draws": fresh, "certified at that distance": bound,
                     "violated": "yes" if fresh < bound else ("no" if np.isfinite(d) else "attack diverged"),
                     "seconds": a.record["seconds"] + draw_seconds(a, trigger, P.sigma, P.m_check, seed=seed + 1)})
    return pd.DataFrame(rows).set_index("R/σ")


def compute_seconds(P: BansalSettings, models: dict[str, dict[str, Trained]], trig: dict[str, TriggerSet],
                    tables: list[pd.DataFrame], *, seed: int = 0) -> float:
    """Seconds of everything the notebook used, on an empty cache: the owner's models and their
    certificates, and the ``seconds`` column of each table (the σ study counts its models that
    the owner's do not already count: the profile's σ is one of the study's)."""
    total = 0.0
    for k, pair in models.items():
        total += sum(t.record["seconds"] for t in pair.values())
        total += draw_seconds(pair["certified"], trig[k], P.sigma, P.m, seed=seed)
        total += draw_seconds(pair["baseline"], trig[k], P.sigma, P.m_study, seed=seed)
    for t in tables:
        sec = t["seconds"]
        if t.index.name == "σ":          # the study: its model at the profile's σ is counted above
            sec = sec[t.index != P.sigma]
        total += float(sec.sum())
    return total


# ----------------------------------------------------------------------------- checks and the paper's rows
def add_checks(checks: Checks, P: BansalSettings, models: dict[str, dict[str, Trained]], test: D.TensorData,
               cert: pd.DataFrame, study: pd.DataFrame, adversary: pd.DataFrame, removals: pd.DataFrame,
               sound: pd.DataFrame) -> None:
    """The profile's targets (:class:`BansalTargets`) on the notebook's tables; that the certified
    trigger accuracy never rises with R is asserted at every profile."""
    t = checks.targets
    for k, pair in models.items():
        base, c = _pct(evaluate(pair["baseline"], test)), _pct(evaluate(pair["certified"], test))
        checks.add(f"{k}: baseline test accuracy ≥ {100 * t.min_clean_acc:g} %", base >= 100 * t.min_clean_acc,
                   f"{base:.2f} %", "min_clean_acc")
        budget = "max_acc_drop" if k == P.study_kind else "max_acc_drop_other"
        checks.add(f"{k}: certified within {100 * getattr(t, budget):g} points of the baseline",
                   base - c <= 100 * getattr(t, budget), f"{c:.2f} % vs {base:.2f} %", budget)
        curve = cert.loc[(k, "certified"), [f"{r:g}" for r in RADII]].to_numpy(float)
        checks.add(f"{k}: certified trigger accuracy ≥ {100 * t.min_certified:g} % at R = 0.2σ",
                   curve[0] >= 100 * t.min_certified, f"{curve[0]:.0f} %", "min_certified")
        checks.add(f"{k}: certified trigger accuracy non-increasing in R", bool(np.all(np.diff(curve) <= 0)),
                   ", ".join(f"{v:.0f}" for v in curve))
    within = study.index[study["drop from baseline"] <= 100 * t.max_acc_drop]
    best = max(within) if len(within) else None
    checks.add(f"σ = {P.sigma:g} is the largest σ of the study within {100 * t.max_acc_drop:g} points",
               best == P.sigma, f"largest within: {best if best is not None else 'none'}", "max_acc_drop")
    plain = adversary.pivot(index="R/σ", columns="embedding", values="trigger accuracy")
    smooth = adversary.pivot(index="R/σ", columns="embedding", values="smoothed (median)")
    for name, certified, target in (("verified (smoothed)", smooth["certified"], "min_adversary_gap"),
                                    ("queried plainly", plain["certified"], "min_adversary_gap_plain")):
        gap = certified - plain["baseline"]
        need = 100 * getattr(t, target)
        beaten = (gap > need) | ((gap >= need) & (plain["baseline"] == 100))
        checks.add(f"ℓ2 adversary: certified watermark {name} above the baseline at every radius "
                   "(equal where the baseline keeps 100 %)", bool(beaten.all()),
                   f"smallest gap {gap.min():+.0f} points (R = {gap.idxmin():g}σ)", target)
    reg = removals.attack.str.endswith("+ reg")
    for sel, name, target in ((~reg, "fine-tuning and distillation", "min_white_minus_black"),
                              (reg, "hard-label distillation + reg", "min_white_minus_black_reg")):
        cr = removals[sel & (removals.embedding == "certified")]
        if cr.empty:
            continue
        diff = cr["white-box (median)"] - cr["black-box"]
        worst = diff.idxmin()
        checks.add(f"after {name}: white-box ≥ black-box (certified watermark)",
                   bool((diff >= 100 * getattr(t, target)).all()),
                   f"smallest white − black {diff.min():+.0f} points ({cr.loc[worst, 'attack']}, lr "
                   f"{cr.loc[worst, 'lr']:g}; test accuracy after it {cr.loc[worst, 'test accuracy']:.1f} %)", target)
    v = int((sound["violated"] == "yes").sum())
    checks.add("soundness: no adaptive attack falls below the certificate", v <= t.max_sound_violations,
               f"{v} of {len(sound)} violated", "max_sound_violations")


def _slug(text: str) -> str:
    return text.replace(" + ", "-").replace(" ", "-")


def claim_rows(dataset: str, P: BansalSettings, cert: pd.DataFrame, adversary: pd.DataFrame,
               removals: pd.DataFrame, profile: str) -> list[Row]:
    """One row per number of the paper for this dataset (and CIFAR-100's on the CIFAR-10 page: its
    own notebook runs at the ``paper`` profile where the data is present, offline it needs online data). Radii compare at equal R/σ: the paper's σ = 1 makes R/σ = R.

    ``holds``: certified accuracy at least the paper's (within its tolerance); an attack's three
    numbers hold when the white-box (median) verification keeps at least the black-box and the
    baseline trigger accuracy; the worst case when the certified watermark keeps at least the
    baseline's trigger accuracy at that radius."""
    rows = []
    known = C.load(PAPER)
    slides = SETTINGS["paper"][dataset].sigma if dataset in SETTINGS["paper"] else 1.0
    regime = ("" if P.sigma == slides else f"σ = {P.sigma:g} against the slides' σ = {slides:g}: at a fraction of the "
              "noise the certified curve stays flat where theirs falls, a different curve, not the slides' shape")
    for k in P.kinds:
        for r in PAPER_RADII:
            cid = f"{dataset}.{_slug(k)}.certified.r{r:g}"
            if cid not in known:                 # CIFAR-100: the slides certify nothing
                continue
            ours = float(cert.loc[(k, "certified"), f"{r:g}"])
            c = C.get(PAPER, cid)
            rows.append(claimed(PAPER, cid, ours, holds=ours >= c.value - c.tolerance, profile=profile,
                                quantity=f"certified trigger accuracy, {k}, R = {r:g}σ (σ = {P.sigma:g})",
                                regime=regime))
    rem = removals[removals.embedding.isin(EMBEDDINGS)].set_index(["attack", "lr", "embedding"])
    for name, lr in ATTACKS:
        base, cer = rem.loc[(name, lr, "baseline")], rem.loc[(name, lr, "certified")]
        ours = {"baseline": base["black-box"], "black-box": cer["black-box"], "white-box": cer["white-box (median)"]}
        holds = bool(ours["white-box"] >= max(ours["black-box"], ours["baseline"]))
        for col, v in ours.items():
            rows.append(claimed(PAPER, f"{dataset}.{_slug(name)}.lr{lr:g}.{col}", float(v), holds=holds,
                                profile=profile, quantity=f"{name} (lr {lr:g}): trigger accuracy, {col}"))
    if dataset == "cifar10":
        adv = adversary.pivot(index="R/σ", columns="embedding", values="trigger accuracy")
        for r in ADVERSARY_RADII:
            if r not in adv.index:
                rows.append(claimed(PAPER, f"cifar10.worst-case.r{r:g}", None, holds=False, profile=profile,
                                    note="radius not run at this profile"))
                continue
            rows.append(claimed(PAPER, f"cifar10.worst-case.r{r:g}", float(adv.loc[r, "certified"]),
                                holds=bool(adv.loc[r, "certified"] >= adv.loc[r, "baseline"]), profile=profile,
                                quantity=f"worst-case trigger accuracy under the ℓ2 adversary, R = {r:g}σ",
                                note=f"baseline {adv.loc[r, 'baseline']:.0f} %"))
        for name, lr in ATTACKS:
            for col in ("baseline", "black-box", "white-box"):
                r = claimed(PAPER, f"cifar100.{_slug(name)}.lr{lr:g}.{col}", None, holds=False, profile=profile,
                            note="CIFAR-100 runs at the paper profile where its data is present")
                if profile != "smoke":
                    r.status = "needs online data"
                rows.append(r)
    return rows


def paper_certified(dataset: str, P: BansalSettings, cert: pd.DataFrame) -> pd.DataFrame:
    """The paper's certified trigger accuracy (σ = 1) beside ours at the same R/σ, per kind (rows)
    and radius (columns: paper / ours); empty where the slides certify nothing (CIFAR-100)."""
    out, known = {}, C.load(PAPER)
    for k in P.kinds:
        if f"{dataset}.{_slug(k)}.certified.r{PAPER_RADII[0]:g}" not in known:     # CIFAR-100
            continue
        row = {}
        for r in PAPER_RADII:
            row[f"{r:g}σ paper"] = C.value(PAPER, f"{dataset}.{_slug(k)}.certified.r{r:g}")
            row[f"{r:g}σ ours"] = float(cert.loc[(k, "certified"), f"{r:g}"])
        out[k] = row
    return pd.DataFrame.from_dict(out, orient="index").rename_axis("trigger")


def paper_worst_case() -> list[float]:
    """The paper's worst-case trigger accuracy (%) at each radius of :data:`ADVERSARY_RADII` (σ = 1)."""
    return [C.value(PAPER, f"cifar10.worst-case.r{r:g}") for r in ADVERSARY_RADII]


def paper_removals(dataset: str, removals: pd.DataFrame) -> pd.DataFrame:
    """The paper's removal-attack table (baseline / black-box / white-box) beside ours."""
    rem = removals.set_index(["attack", "lr", "embedding"])
    rows = {}
    for name, lr in ATTACKS:
        ours = {"baseline": rem.loc[(name, lr, "baseline"), "black-box"],
                "black-box": rem.loc[(name, lr, "certified"), "black-box"],
                "white-box": rem.loc[(name, lr, "certified"), "white-box (median)"]}
        row = {}
        for col, v in ours.items():
            row[f"{col} paper"] = C.value(PAPER, f"{dataset}.{_slug(name)}.lr{lr:g}.{col}")
            row[f"{col} ours"] = float(v)
        rows[name, lr] = row
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index = pd.MultiIndex.from_tuples(df.index, names=["attack", "lr"])
    return df


def extra_rows(P: BansalSettings, study: pd.DataFrame, sound: pd.DataFrame) -> list[Row]:
    """Our numbers the paper does not publish: the σ the study selects, and the soundness count."""
    sel = study.index[study["selected"] == "yes"]
    return [ours_only("largest σ of the study within the accuracy budget", float(sel[0]) if len(sel) else None,
                      "σ", f"budget {100 * P.targets.max_acc_drop:g} points of test accuracy; the profile runs "
                               f"at σ = {P.sigma:g}"),
            ours_only("adaptive attacks below the certificate", float((sound["violated"] == "yes").sum()),
                      "count", f"of {len(sound)} (PGD on the smoothed trigger accuracy, R = "
                               f"{', '.join(f'{r:g}' for r in P.sound_radii)}σ)")]


# ----------------------------------------------------------------------------- findings in words
def _pcts(values) -> str:
    return span(values, ".0f", " %")


def findings(P: BansalSettings, study: pd.DataFrame, cert: pd.DataFrame, adversary: pd.DataFrame,
             removals: pd.DataFrame, sound: pd.DataFrame) -> dict[str, str]:
    """What the page says the run found, computed from the tables (a rerun that changes a result
    changes the sentence): ``sigma`` (how far the curriculum gets), ``price`` (does the certificate
    see the accuracy it costs?), ``certified``, ``adversary`` (plain and smoothed under PGD),
    ``removals`` (white-box against black-box) and ``soundness``."""
    out = {}
    budget = 100 * P.targets.max_acc_drop
    within = study.index[study["drop from baseline"] <= budget]
    base = float(study["test accuracy"].iloc[0] + study["drop from baseline"].iloc[0])
    per = ", ".join(f"{study.loc[s, 'test accuracy']:.1f} % at σ = {s:g}" for s in study.index)
    out["sigma"] = (f"Against the baseline's {base:.1f} % test accuracy, the curriculum keeps {per}: "
                    + (f"within {budget:g} points up to σ = {max(within):g}" if len(within)
                       else f"no σ of the study stays within {budget:g} points")
                    + f"; the profile runs at σ = {P.sigma:g}.")
    worst = study["test accuracy"].idxmin()
    out["price"] = (f"Every model of the study certifies {_pcts(study['certified at 0.2σ'])} of its triggers at 0.2σ, "
                    f"the least accurate one (σ = {worst:g}, {study.loc[worst, 'test accuracy']:.1f} % test accuracy) "
                    f"at {study.loc[worst, 'certified at 0.2σ']:.0f} %.")
    radii = [f"{r:g}" for r in RADII]
    parts = []
    for kind in dict.fromkeys(cert.index.get_level_values(0)):
        curve = cert.loc[(kind, "certified"), radii].to_numpy(float)
        full = [r for r, v in zip(RADII, curve) if v >= 100 - 1e-9]
        if len(full) == len(RADII):
            parts.append(f"{kind}: 100 % at every radius up to {RADII[-1]:g}σ")
            continue
        parts.append(f"{kind}: " + (f"100 % up to {max(full):g}σ" if full and full == list(RADII[:len(full)])
                                    else f"{curve[0]:.0f} % at {RADII[0]:g}σ") +
                     f", ≥ 50 % up to {largest_radius(curve):g}σ, {curve[-1]:.0f} % at {RADII[-1]:g}σ")
    out["certified"] = ("Certified trigger accuracy of the certified watermarks — " + "; ".join(parts)
                        + f" (σ = {P.sigma:g}: in absolute ℓ2 over the whole file, R = {P.sigma * RADII[0]:g} "
                          f"to {P.sigma * RADII[-1]:g}).")
    plain = adversary.pivot(index="R/σ", columns="embedding", values="trigger accuracy")
    smooth = adversary.pivot(index="R/σ", columns="embedding", values="smoothed (median)")
    ahead = int((plain["certified"] > plain["baseline"]).sum())
    r1 = plain.index[min(1, len(plain) - 1)]
    test_at = adversary[adversary["R/σ"] == plain.index.max()]["test accuracy"]
    out["adversary"] = (f"Queried plainly, PGD within R = {r1:g}σ leaves {plain.loc[r1, 'certified']:.0f} % of the triggers "
                        f"on the certified watermark against {plain.loc[r1, 'baseline']:.0f} % on the baseline, and the "
                        f"certified one keeps more at {ahead} of {len(plain)} radii. Verified by smoothing, the certified "
                        f"watermark keeps {_pcts(smooth['certified'])} over the radii and the baseline "
                        f"{_pcts(smooth['baseline'])}. At the largest radius ({plain.index.max():g}σ) the attacked "
                        f"models keep {_pcts(test_at)} test accuracy.")
    reg = removals.attack.str.endswith("+ reg")
    c = removals[~reg & (removals.embedding == "certified")]
    b = removals[~reg & (removals.embedding == "baseline")]
    held = bool((c["white-box (median)"] >= c["black-box"]).all())
    moved = removals[~reg]["ℓ2 whole file"]
    text = (f"After fine-tuning and distillation the certified watermark's smoothed (white-box) trigger accuracy is "
            f"{_pcts(c['white-box (median)'])}, its plain (black-box) one {_pcts(c['black-box'])} and the baseline's "
            f"{_pcts(b['black-box'])}: white-box ≥ black-box {'holds after every attack' if held else 'does not hold after every attack'}. "
            f"These attacks move the file by ℓ2 {span(moved, '.1f')}, {span(moved / (P.sigma * RADII[0]), '.0f')} "
            f"times the radius certified at {RADII[0]:g}σ: the robustness they show is empirical, not certified.")
    r = removals[reg]
    if len(r):
        rc = r[r.embedding == "certified"]
        text += (f" The \"+ reg\" distillation leaves {_pcts(r['test accuracy'])} test accuracy and the certified "
                 f"watermark {_pcts(rc['white-box (median)'])} white-box.")
    out["removals"] = text
    v = int((sound["violated"] == "yes").sum())
    out["soundness"] = (f"{v} of {len(sound)} adaptive attacks (PGD on the smoothed trigger accuracy, R = "
                        f"{', '.join(f'{x:g}' for x in sound.index)}σ) fall below the certificate: they lower the plain "
                        f"trigger accuracy to {_pcts(sound['trigger accuracy'])}, while the median of fresh draws "
                        f"stays at {_pcts(sound['smoothed (median), fresh draws'])} against a certificate of "
                        f"{_pcts(sound['certified at that distance'])}.")
    return out


def banner(P: BansalSettings, dataset: str, profile: str, n_attack: int, device: str, tiny: bool = False) -> str:
    """Which run produced a page: profile, data copy, model, training, curriculum and certificate."""
    cur = ("once an epoch" if P.every is None else f"every {P.every} steps")
    return (f"Produced at profile {profile}{' (tiny)' if tiny else ''} on {dataset} ({device}; data: "
            f"{D.SOURCES[D.source(dataset)]}); {P.model}, {P.n_train:,} owner images, {P.epochs} epochs, "
            f"{P.schedule} schedule at lr {P.lr:g}, {P.per_batch} trigger image(s) per batch; curriculum up to "
            f"σ = {P.sigma:g} in {P.levels} levels × {P.draws} draws, {cur} after {P.warmup} warm-up epoch(s); "
            f"certificate from m = {P.m:,} draws at confidence {P.confidence:g}, over the whole model file; "
            f"attacks on {n_attack:,} images of the second half, Adam, {P.attack_epochs} epoch(s).")


__all__ = ["findings", "PAPER", "EMBEDDINGS", "RADII", "PAPER_RADII", "ADVERSARY_RADII", "ATTACKS", "BansalSettings",
           "BansalTargets", "SETTINGS", "attacker_data", "triggers", "watermark", "train_models", "draw_acc",
           "certificates", "verdict_table", "certified_curve", "largest_radius", "certified_table", "sigma_study", "smoothed",
           "adversary_table", "removal", "attack_table", "soundness", "zero_cost", "zero_cost_null", "trainings", "independents", "add_checks", "claim_rows", "extra_rows",
           "banner", "owners_table", "draw_seconds", "compute_seconds", "paper_certified", "paper_worst_case",
           "paper_removals"]
