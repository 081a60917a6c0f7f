"""One evaluation across the five papers: every scheme embedded into one host, every attack of
:mod:`wmlib.attacks` at stated budgets, one false-claim rate.

The papers cannot be compared as published (different models, thresholds, attacks, budgets). Here
each scheme embeds into the same architecture trained the same way (:class:`MatrixSettings`: the
host per dataset and profile), its threshold is calibrated on never-watermarked hosts (other seeds)
to one false-claim rate α, and the false claims are then *measured* on those hosts, each judged
against the threshold calibrated on the others. Every scheme is verified through its key
(:mod:`wmlib.keys`), exactly as ``wmbook verify`` reads a suspect file.

A cell (scheme × attack) is **removed** when the attacked model is no longer claimed and keeps its
test accuracy within ``margin`` points of the owner's, **removed at a cost** when it is not claimed
but lost more, and **survived** when it is still claimed.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from . import attacks, keys
from . import data as D
from .papers import bansal2022, ipcert2023
from .schemes import adi, bansal, frontier, ipcert, weights
from .settings import Settings
from .stats import prediction_bound
from .train import Trained, TrainConfig, evaluate, train

CELLS = ("survived", "removed", "removed at a cost")


@dataclass(frozen=True)
class MatrixSettings(Settings):
    """The shared experiment at one (profile, dataset).

    Host: ``model`` trained ``epochs`` at ``lr`` (``schedule``) on the first ``n_train`` images;
    ``n_independent`` more hosts at the next seeds, never watermarked, calibrate each scheme's
    threshold to the false-claim rate ``alpha`` and measure it. Schemes: a trigger set of
    ``n_trigger`` images, ``per_batch`` of them in every batch (Adi; Bansal and IPCert on top of
    their noise training, with the settings of their papers' notebooks at ``paper_profile``);
    Le Merrer's key of ``frontier_key`` FGSM inputs at ``frontier_eps``, marked at
    ``frontier_lr``; Tartaglione's payload on ``tartaglione_positions`` weights. Smoothed
    verifications draw ``draws`` noisy copies. Attacks: ``attack_epochs`` at ``ft_lrs`` on
    ``n_attack`` of the attacker's images (overwriting: the same, at the higher rate, embedding a
    watermark of the same scheme drawn at the attacker's seed, :data:`ATTACKER_SEED`); pruning ``prune_rate``; ``bits``; PGD within
    ``pgd_radius`` in the certified space (``pgd_iters`` steps); ``buffer_steps`` of the attack on the
    batch-norm statistics alone. ``margin``: the points of test accuracy an attack may
    cost and still count as a removal (the Watermark-Robustness-Toolbox's convention: 5). A cell
    whose score lies within ``near`` of its threshold (in the score's units: a matching rate, a
    correlation) is one sample near a line: its attack runs again at a second seed (``seed + 1``).
    """

    model: str = "cifar_cnn"
    epochs: int = 6
    lr: float = 0.1
    schedule: str = "onecycle"
    n_train: int | None = 10_000
    n_independent: int = 5
    alpha: float = 0.01
    margin: float = 5.0
    n_trigger: int = 100
    per_batch: int = 10
    paper_profile: str = "cpu"
    frontier_key: int = 100
    frontier_eps: float = 0.25
    frontier_lr: float = 0.01
    frontier_epochs: int = 10
    tartaglione_positions: int = 1000
    draws: int = 100
    n_attack: int | None = 2000
    n_test: int | None = 2000
    attack_epochs: int = 1
    ft_lrs: tuple[float, float] = (0.001, 0.01)
    prune_rate: float = 0.5
    bits: int = 4
    near: float = 0.1
    pgd_radius: float = 1.0
    pgd_iters: int = 100
    buffer_steps: int = 20
    schemes: tuple[str, ...] = keys.SCHEMES
    attacks: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.n_independent < 4:
            raise ValueError(f"n_independent={self.n_independent} must be >= 4 (each host is judged against a "
                             "threshold calibrated on the others, at least 3)")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha={self.alpha} must lie in (0, 1)")
        if self.near < 0:
            raise ValueError(f"near={self.near} must be >= 0 (0: no cell runs at a second seed)")
        unknown = sorted(set(self.schemes) - set(keys.SCHEMES))
        if unknown:
            raise ValueError(f"schemes={unknown} are not known; accepted values: {list(keys.SCHEMES)}")
        names = [a.name for a in ATTACKS]
        unknown = sorted(set(self.attacks or ()) - set(names))
        if unknown:
            raise ValueError(f"attacks={unknown} are not known; accepted values: {names}")

    def columns(self) -> tuple["Attack", ...]:
        """The attacks of this profile (``attacks``; None: all of :data:`ATTACKS`), in their order."""
        return tuple(a for a in ATTACKS if self.attacks is None or a.name in self.attacks)

    def tiny(self) -> "MatrixSettings":
        """The same host architecture (ResNet-18 at 1/8 width) and every step at a size that runs in
        about a minute on a CPU: two schemes × three attacks, a few hundred images, one epoch."""
        from .models import narrow
        return self.replace(model=narrow(self.model), epochs=1, n_train=128, n_independent=4, n_trigger=10,
                            per_batch=5, tartaglione_positions=100, draws=4, n_attack=64, n_test=100, pgd_iters=2,
                            buffer_steps=2, paper_profile="smoke", schemes=("adi", "tartaglione"),
                            attacks=TINY_ATTACKS)

    def host(self, dataset: str, seed: int = 0) -> TrainConfig:
        return TrainConfig(model=self.model, dataset=dataset, epochs=self.epochs, lr=self.lr,
                           schedule=self.schedule, n_train=self.n_train, seed=seed)


TINY_ATTACKS = ("fine-tune all, high rate", "zero-cost edits, as read", "zero-cost edits, aligned")
"""The columns of a tiny or smoke matrix: a training attack and the zero-cost edits both ways."""


# ----------------------------------------------------------------------------- thresholds
def calibrated_threshold(null, alpha: float, step: float) -> float:
    """The score above which one more never-watermarked host lies with chance at most ``alpha``: the
    one-sided prediction bound of the scores ``null`` of n ≥ 3 such hosts
    (:func:`wmlib.stats.prediction_bound`); when they all agree, one ``step`` (a point of the
    trigger set) above them."""
    bound, _, scale = prediction_bound(null, alpha)
    return float(np.max(null) + step) if scale < 1e-9 else bound


def false_claims(null, alpha: float, step: float, derived: float = -np.inf) -> tuple[int, list[float]]:
    """(how many of the hosts ``null`` are claimed, the threshold each was judged against): each
    host against max(``derived``, the threshold calibrated on the others) — measured, not derived."""
    null = list(map(float, null))
    thr = [max(derived, calibrated_threshold(null[:i] + null[i + 1:], alpha, step)) for i in range(len(null))]
    return sum(s >= t for s, t in zip(null, thr)), thr


# ----------------------------------------------------------------------------- embedding
@dataclass
class Owner:
    """A scheme's watermarked host, its key (with the calibrated threshold) and the false claims
    measured on the never-watermarked hosts."""

    scheme: str
    trained: Trained
    key: keys.Key
    null: list[float]
    false_claims: int
    access: str
    seconds: float
    own: Callable[[Trained, D.TensorData], object] | None = None   # the attacker's own mark (overwriting)


def _trigger(P: MatrixSettings, dataset: str, seed: int) -> adi.TriggerSet:
    return adi.procedural_trigger(dataset, n=P.n_trigger, seed=seed)


ATTACKER_SEED = 1000
"""Seeds from ``ATTACKER_SEED + seed`` draw the attacker's own watermark for the overwriting column."""


def _frontier_pool(P: MatrixSettings) -> int:
    """Candidates for a frontier key: enough that a robust host still yields ``frontier_key``/2
    false adversaries (measured: the ``cpu`` MNIST host of four epochs left 34 of 395 FGSM copies
    at ε = 0.25 correctly classified, so 400 candidates were too few for a key of 100)."""
    return max(20 * P.frontier_key, 2000)


def _own_mark(scheme: str, P: MatrixSettings, dataset: str, seed: int) -> Callable[[Trained, D.TensorData], object]:
    """What the attacker embeds when overwriting: a watermark of the same scheme drawn at the
    attacker's seed (given the stolen model and the attacker's images, for a frontier key)."""
    s = ATTACKER_SEED + seed
    if scheme in ("adi", "ipcert"):
        return lambda stolen, data: adi.TriggerCycler(_trigger(P, dataset, s), P.per_batch)
    if scheme == "bansal":
        kind = bansal2022.SETTINGS[P.paper_profile][dataset].study_kind
        return lambda stolen, data: adi.TriggerCycler(bansal.trigger_set(kind, dataset, seed=s, n=P.n_trigger),
                                                      P.per_batch)
    if scheme == "frontier":
        def own(stolen, data):
            fkey = frontier.cached_adversaries(stolen, data.head(_frontier_pool(P)), P.frontier_eps).key(P.frontier_key, s)
            return frontier.KeyBatches(fkey, 16)
        return own
    if scheme == "tartaglione":
        from .models import build_model
        payload = weights.Payload(weights.make_key(build_model(P.model, dataset), n=P.tartaglione_positions, seed=s),
                                  weights.payload(P.tartaglione_positions, seed=s))
        return lambda stolen, data: payload
    raise ValueError(f"scheme={scheme!r} is not known; accepted values: {list(keys.SCHEMES)}")


def _embed(scheme: str, P: MatrixSettings, dataset: str, seed: int, progress: bool):
    """(watermarked host, the key from a calibration (a threshold; Tartaglione: the null itself),
    the score a never-watermarked host gets, the scheme's own threshold at α, one step of the score)."""
    arch = dict(dataset=dataset, architecture=P.model)
    host = P.host(dataset, seed)
    if scheme == "tartaglione":
        from .models import build_model
        wkey = weights.make_key(build_model(P.model, dataset), n=P.tartaglione_positions, seed=seed)
        vals = weights.payload(P.tartaglione_positions, seed=seed)
        owner = weights.watermark(host, wkey, vals, progress=progress)
        return (owner, lambda null: keys.tartaglione_key(wkey, vals, owner.model, **arch, null=null, null_alpha=P.alpha),
                lambda m: weights.correlation(m, wkey, vals, owner=owner.model)[0],
                weights.threshold(len(wkey), weights.ALPHA), 0.0)
    if scheme == "adi":
        trig = _trigger(P, dataset, seed)
        owner = adi.fromscratch(host, trig, per_batch=P.per_batch, progress=progress)
        make = lambda thr: keys.adi_key(trig, **arch, alpha=P.alpha, threshold=thr)  # noqa: E731
        derived = adi.verify(owner.model, trig, D.dataset_info(dataset).classes, alpha=P.alpha).threshold
    elif scheme == "frontier":
        base = train(host, progress=progress)
        pool = D.splits(dataset).eval.head(_frontier_pool(P))
        fkey = frontier.cached_adversaries(base, pool, P.frontier_eps).key(P.frontier_key, seed)
        owner, _ = frontier.mark(base, fkey, D.splits(dataset, n_train=P.n_train).train, lr=P.frontier_lr,
                                 max_epochs=P.frontier_epochs, per_batch=16, seed=seed, progress=progress)
        make = lambda thr: keys.frontier_key(fkey, **arch, alpha=P.alpha, threshold=thr)  # noqa: E731
        derived = frontier.extract(owner.model, fkey, P.alpha).threshold
    elif scheme == "bansal":
        BP = bansal2022.SETTINGS[P.paper_profile][dataset]
        trig = bansal.trigger_set(BP.study_kind, dataset, seed=seed, n=P.n_trigger)
        owner = train(host, extra=adi.TriggerCycler(trig, P.per_batch), after_step=BP.curriculum(trig, BP.sigma),
                      tag="bansal", progress=progress)
        radii = BP.sigma * np.asarray(bansal2022.RADII)
        make = lambda thr: keys.bansal_key(trig, owner.model, **arch, sigma=BP.sigma, m=P.draws,  # noqa: E731
                                           threshold=thr, radii=radii, confidence=BP.confidence)
        derived = -np.inf                          # the slides give no threshold
    elif scheme == "ipcert":
        IP = ipcert2023.SETTINGS[P.paper_profile][dataset]
        trig = _trigger(P, dataset, seed)
        owner = ipcert.watermark(host, trig, noise=IP.noise_training(trig), per_batch=P.per_batch, progress=progress)
        sig = IP.sigma("watermark")
        make = lambda thr: keys.ipcert_key(trig, owner.model, **arch, sigma=sig, m=P.draws,  # noqa: E731
                                           threshold=thr, radii=ipcert2023.grid(sig), alpha=IP.alpha)
        derived = -np.inf                          # the paper gives no threshold
    else:
        raise ValueError(f"scheme={scheme!r} is not known; accepted values: {list(keys.SCHEMES)}")
    probe = make(0.5)
    return owner, make, lambda m: keys.verify(probe, m).score, derived, 1 / len(probe.tensors["y"])


ACCESS = {"adi": "black-box: {n} queries", "frontier": "black-box: {n} queries",
          "tartaglione": "white-box: the file", "bansal": "white-box: {m}×{n} noisy forward passes",
          "ipcert": "white-box: {m}×{n} noisy forward passes"}


def independents(P: MatrixSettings, dataset: str, seed: int = 0, progress: bool = False) -> list[Trained]:
    """The never-watermarked hosts (seeds seed + 1 …): the false-claim measurement."""
    return [train(P.host(dataset, seed + i), progress=progress) for i in range(1, P.n_independent + 1)]


def training_minutes(P: MatrixSettings, dataset: str, schemes: pd.DataFrame, seed: int = 0) -> float:
    """The training recorded for every model the matrix used (the clean host, the never-watermarked
    hosts and each scheme's watermarked host: ``schemes``' "training (min)"), as the papers'
    notebooks count it; the attacks' own trainings are the rest of the run's time."""
    hosts = [train(P.host(dataset, seed))] + independents(P, dataset, seed)
    return sum(h.record.get("seconds", 0.0) for h in hosts) / 60 + float(schemes["training (min)"].sum())


def embed(scheme: str, P: MatrixSettings, dataset: str, *, seed: int = 0, progress: bool = False) -> Owner:
    """``scheme`` embedded into the host, its key's threshold calibrated at ``P.alpha`` on the
    never-watermarked hosts and the false claims measured on them (:func:`false_claims`)."""
    t0 = time.time()
    owner, make_key, read, derived, step = _embed(scheme, P, dataset, seed, progress)
    null = [float(read(o.model)) for o in independents(P, dataset, seed, progress)]
    n_false, _ = false_claims(null, P.alpha, step, derived)
    if scheme == "tartaglione":
        key = make_key(null)                       # the key calibrates itself on the aligned null
    else:
        key = make_key(min(1.0, max(derived, calibrated_threshold(null, P.alpha, step))))
    n = len(key.tensors["values" if scheme == "tartaglione" else "y"])
    access = ACCESS[scheme].format(n=n, m=key.settings.get("m", 1))
    return Owner(scheme, owner, key, null, n_false, access, time.time() - t0, _own_mark(scheme, P, dataset, seed))


# ----------------------------------------------------------------------------- attacks
@dataclass(frozen=True)
class Attack:
    """One column: what it does, what the attacker needs (``data``: images of their own;
    ``key``: the owner's trigger or IP set), and how to apply it."""

    name: str
    needs: str
    apply: Callable[[Trained, "Context"], Trained]
    align: bool = True
    seeded: bool = True          # False: the same model whatever the seed (a second seed tells nothing)


@dataclass
class Context:
    P: MatrixSettings
    data: D.TensorData          # the attacker's images
    ip: D.TensorData | None     # the key's trigger / IP set, for the attacks that know it
    seed: int
    own: Callable[[Trained, D.TensorData], object] | None = None   # the attacker's own mark of the scheme


def _ft(variant: str, lr_index: int):
    def apply(o: Trained, c: Context) -> Trained:
        return attacks.fine_tune(o, variant, c.data, epochs=c.P.attack_epochs, lr=c.P.ft_lrs[lr_index],
                                 seed=c.seed, progress=False)
    return apply


def _distill(labels: str):
    def apply(o: Trained, c: Context) -> Trained:
        return attacks.distill(o, c.data, epochs=c.P.attack_epochs, lr=c.P.ft_lrs[1], labels=labels, seed=c.seed,
                               progress=False)
    return apply


def _pgd(o: Trained, c: Context) -> Trained:
    if c.ip is None:
        raise NotImplementedError("the scheme has no trigger or IP set for PGD to target")
    return attacks.worst_case(o, c.ip, c.data.head(200), radius=c.P.pgd_radius, iters=c.P.pgd_iters, seed=c.seed,
                              space="folded")


def _overwrite(o: Trained, c: Context) -> Trained:
    if c.own is None:
        raise NotImplementedError("no watermark of the attacker's own is defined for this scheme")
    return attacks.overwrite_own(o, c.data, c.own(o, c.data), epochs=c.P.attack_epochs, lr=c.P.ft_lrs[1], seed=c.seed)


def _buffers(o: Trained, c: Context) -> Trained:
    if c.ip is None:
        raise NotImplementedError("the scheme has no trigger or IP set for the buffer attack to target")
    return attacks.buffer_attack(o, c.ip, c.data.head(500), steps=c.P.buffer_steps, seed=c.seed)


ATTACKS: tuple[Attack, ...] = (
    Attack("fine-tune last layer", "data", _ft("FTLL", 1)),
    Attack("fine-tune all, low rate", "data", _ft("FTAL", 0)),
    Attack("fine-tune all, high rate", "data", _ft("FTAL", 1)),
    Attack("distill, hard labels", "data", _distill("hard")),
    Attack("distill, soft labels", "data", _distill("soft")),
    Attack("overwriting with the attacker's own watermark", "data", _overwrite),
    Attack("magnitude pruning", "nothing", lambda o, c: attacks.prune(o, c.P.prune_rate), seeded=False),
    Attack("quantisation", "nothing", lambda o, c: attacks.quantize(o, c.P.bits), seeded=False),
    Attack("ℓ2 PGD on the file", "key, data", _pgd),
    Attack("batch-norm statistics only", "key, data", _buffers),
    Attack("zero-cost edits, as read", "nothing", lambda o, c: attacks.zero_cost_edit(o, c.seed), align=False),
    Attack("zero-cost edits, aligned", "nothing", lambda o, c: attacks.zero_cost_edit(o, c.seed)),
)
"""The columns, at the budgets of :class:`MatrixSettings`."""


def cell(owner: Owner, attack: Attack, ctx: Context, test: D.TensorData, owner_acc: float) -> dict:
    """One scheme × attack: the verdict on the attacked model, its accuracy and what it cost (an owner
    that is claimed: :func:`evaluate_matrix` leaves the others' cells out)."""
    t0 = time.time()
    try:
        attacked = attack.apply(owner.trained, ctx)
    except NotImplementedError as e:
        return {"scheme": owner.scheme, "attack": attack.name, "cell": "n/a", "note": str(e)}
    v = keys.verify(owner.key, attacked.model, align=attack.align, seed=ctx.seed)
    acc = 100 * evaluate(attacked, test)
    kept = acc >= owner_acc - ctx.P.margin
    outcome = "survived" if v.passed else ("removed" if kept else "removed at a cost")
    return {"scheme": owner.scheme, "attack": attack.name, "cell": outcome, "claimed": v.passed, "score": v.score,
            "threshold": v.threshold, "test accuracy": acc, "accuracy cost": owner_acc - acc,
            "attacker needs": attack.needs, "seconds": time.time() - t0 + attacked.record.get("seconds", 0.0),
            "note": v.alignment or ""}


def is_near(c: dict, near: float) -> bool:
    """Whether cell ``c``'s score lies within ``near`` of its threshold (a verdict one seed could flip)."""
    score, thr = c.get("score"), c.get("threshold")
    return score is not None and thr is not None and np.isfinite(score) and np.isfinite(thr) and \
        abs(float(score) - float(thr)) < near


def second_seed(c: dict, owner: Owner, attack: Attack, ctx: Context, test: D.TensorData, owner_acc: float) -> dict:
    """Cell ``c`` with its attack run again at seed ``ctx.seed + 1`` when it lies near its threshold
    (:func:`is_near`): ``second seed`` (that run's outcome) and ``second score``; else unchanged. A
    deterministic attack (pruning, quantisation) is redrawn only where the verification itself draws
    noise (the smoothed schemes)."""
    if c.get("cell") in (None, "n/a") or not is_near(c, ctx.P.near):
        return c
    if not attack.seeded and owner.scheme not in ("bansal", "ipcert"):     # nothing random left to redraw
        return c
    again = cell(owner, attack, dataclasses.replace(ctx, seed=ctx.seed + 1), test, owner_acc)
    return {**c, "second seed": again["cell"], "second score": again.get("score")}


def evaluate_matrix(P: MatrixSettings, dataset: str, *, schemes=None, attacks_=None, seed: int = 0,
                    progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the cells, one row per scheme × attack; the schemes: embedding cost, access, threshold,
    measured false claims). ``schemes`` / ``attacks_``: None for the profile's (``P.schemes``,
    :meth:`MatrixSettings.columns`). Every training and attack is cached; a rerun computes only verdicts."""
    schemes = P.schemes if schemes is None else schemes
    attacks_ = P.columns() if attacks_ is None else attacks_
    split = D.splits(dataset, n_train=P.n_train, n_attack=P.n_attack, n_test=P.n_test)
    clean = train(P.host(dataset, seed), progress=progress)
    clean_acc = 100 * evaluate(clean, split.eval)
    cells, rows = [], []
    for scheme in schemes:
        o = embed(scheme, P, dataset, seed=seed, progress=progress)
        acc = 100 * evaluate(o.trained, split.eval)
        verdict = keys.verify(o.key, o.trained.model, seed=seed)     # once per owner, not once per cell
        ip = None if scheme == "tartaglione" else D.TensorData(o.key.tensors["x"], o.key.tensors["y"].long())
        ctx = Context(P, split.attack, ip, seed, o.own)
        rows.append({"scheme": scheme, "test accuracy": acc, "embedding cost": clean_acc - acc,
                     "verification": o.access, "threshold": verdict.threshold, "owner claimed": verdict.passed,
                     "false claims": f"{o.false_claims} of {len(o.null)}", "null max": max(o.null),
                     "training (min)": o.trained.record.get("seconds", 0.0) / 60})
        if verdict.passed:
            cells += [second_seed(cell(o, a, ctx, split.eval, acc), o, a, ctx, split.eval, acc) for a in attacks_]
        else:
            cells += [{"scheme": scheme, "attack": a.name, "cell": "n/a",
                       "note": "the owner's own model is not claimed at this profile: nothing to remove"}
                      for a in attacks_]
    return pd.DataFrame(cells), pd.DataFrame(rows).set_index("scheme")


__all__ = ["MatrixSettings", "TINY_ATTACKS", "ATTACKS", "ATTACKER_SEED", "CELLS", "Attack", "Owner", "calibrated_threshold",
           "false_claims", "training_minutes", "embed", "independents", "cell", "is_near", "second_seed", "evaluate_matrix"]
