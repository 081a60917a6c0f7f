"""Removal attacks shared by every paper. They know no scheme: they take a model and data.

Every attack takes the stolen model (a :class:`~wmlib.train.Trained`), the attacker's data and
its settings, and returns the attacked model with its record (a ``Trained`` again, cached on disk
by the whole configuration when it trains).

* Fine-tuning in the four variants of Adi et al. 2018: FTLL / FTAL fine-tune the last layer /
  all layers; RTLL / RTAL first re-initialise the last layer. Transfer learning swaps the head for
  a new task and trains every layer. Distillation (IPCert, Jiang et al. 2023, Table 2) trains a
  copy of the model on the teacher's soft labels.
* Magnitude pruning and SVD compression (Le Merrer et al. 2020, Tables 1–2) change the weights
  without training.
* FGSM adversarial inputs and overwriting by adversarial fine-tuning (Le Merrer et al. 2020,
  Alg. 1 and Table 3).
* Worst-case PGD on the weights within an ℓ2 ball (IPCert Alg. 1), also against a smoothed model,
  over the parameters (the papers' space) or over the whole model file (:mod:`wmlib.certspace`).
* The buffer-only attack: edit only batch-norm statistics and the input normalisation, no
  parameter, to push an IP set away from its labels.
* Zero-cost edits that keep every output and move the file (Li & Wang 2023; Yan et al. 2023):
  unit permutations, positive rescaling across ReLUs and into batch norms, dummy units, their
  composition (:mod:`wmlib.units` says which slices move together; :mod:`wmlib.align` undoes them).
"""
from __future__ import annotations

import copy
import time
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from . import certspace, units
from . import data as D
from .cache import key_hash, load_or_create
from .certify import backward_under_noise
from .device import default_device
from .models import Classifier
from .train import Trained, fit, seed_everything

FINE_TUNING = ("FTLL", "FTAL", "RTLL", "RTAL")
NORMS = ("linf", "l2", "l1")


def with_head(model: Classifier, head: nn.Linear) -> Classifier:
    """A copy of ``model`` with ``head`` plugged in (e.g. the owner's original last layer)."""
    out = copy.deepcopy(model)
    out.head = copy.deepcopy(head)
    return out


def cached_attack(cache_key: dict, base: Trained, make: Callable[[], Classifier],
                  run: Callable[[Classifier], list | dict]) -> Trained:
    """Load the attacked model keyed by ``cache_key`` and ``base``, or ``make`` a copy and ``run``
    the attack on it in place. ``run`` returns the training history (a list) or a dict of
    measurements that go into the record beside ``seconds``."""
    def create():
        model = make()
        t0 = time.time()
        out = run(model)
        extra = out if isinstance(out, dict) else {"history": out}
        return model.cpu(), {**extra, "seconds": time.time() - t0}

    model, record = load_or_create("attacks", dict(cache_key, base=base.hash), make, create)
    return Trained(model.eval(), record)


def fine_tune(base: Trained, variant: str, data: D.TensorData, *, epochs: int, lr: float,
              batch_size: int = 100, momentum: float = 0.9, weight_decay: float = 5e-4,
              augment: bool = False, seed: int = 0,
              on_epoch: Callable[[int, Classifier], dict] | None = None, optimizer: str = "sgd",
              progress: bool = True) -> Trained:
    """Fine-tune a copy of ``base`` on the attacker's ``data`` at a constant learning rate.

    ``variant``: FTLL (last layer only), FTAL (all layers), RTLL / RTAL (re-initialise the last
    layer, then last layer only / all layers). Adi et al. 2018 §5.2; the authors' ``fine-tune.py``.
    ``optimizer``: "sgd" (with ``momentum``) or "adam" (Bansal et al. 2022's attacks).
    """
    if variant not in FINE_TUNING:
        raise ValueError(f"variant={variant!r} is not known; accepted values: {list(FINE_TUNING)}")
    key = dict(attack="fine-tune", variant=variant, data=data.digest, epochs=epochs, lr=lr,
               batch_size=batch_size, momentum=momentum, weight_decay=weight_decay, augment=augment,
               seed=seed, **_optimizer_key(optimizer))

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
                   optimizer=optimizer, desc=variant, progress=progress)

    return cached_attack(key, base, make, run)


def transfer(base: Trained, data: D.TensorData, classes: int, *, epochs: int, lr: float,
             batch_size: int = 100, momentum: float = 0.9, weight_decay: float = 5e-4,
             augment: bool = False, seed: int = 0,
             on_epoch: Callable[[int, Classifier], dict] | None = None, progress: bool = True) -> Trained:
    """Transfer learning: a new ``classes``-way head for a new task, every layer trained."""
    key = dict(attack="transfer", data=data.digest, classes=classes, epochs=epochs, lr=lr,
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

    return cached_attack(key, base, make, run)


DISTILL_LABELS = ("soft", "hard", "logits")


def _optimizer_key(optimizer: str, decay_epochs: int | None = None) -> dict:
    """Cache-key entries of a non-default optimiser (absent for SGD, so older entries stay valid)."""
    return {k: v for k, v in (("optimizer", optimizer), ("decay_epochs", decay_epochs))
            if v is not None and v != "sgd"}


def distill(base: Trained, data: D.TensorData, *, epochs: int, lr: float, temperature: float = 1.0,
            batch_size: int = 100, momentum: float = 0.9, weight_decay: float = 5e-4,
            augment: bool = False, seed: int = 0, labels: str = "soft", optimizer: str = "sgd",
            decay_epochs: int | None = None,
            on_epoch: Callable[[int, Classifier], dict] | None = None, progress: bool = True) -> Trained:
    """Distillation: a student initialised from ``base`` learns the teacher's outputs on the
    attacker's ``data`` (its labels unused). ``labels``: "soft" minimises
    T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) (IPCert Table 2); "hard" the cross-entropy on the
    teacher's argmax; "logits" the mean squared error between the logits (Bansal et al. 2022's
    hard- and soft-label distillation). ``optimizer`` "sgd" or "adam"; ``decay_epochs``: weight
    decay in the first that many epochs only (Bansal et al.'s "hard + regularisation").

    Starting from the teacher's weights keeps the student comparable parameter by parameter, so
    its ℓ2 drift from the target can be reported. The teacher (a frozen copy, eval mode) sees the
    same augmented batch as the student.
    """
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0")
    if labels not in DISTILL_LABELS:
        raise ValueError(f"labels={labels!r} is not known; accepted values: {list(DISTILL_LABELS)}")
    key = dict(attack="distill", data=data.digest, epochs=epochs, lr=lr, temperature=temperature,
               batch_size=batch_size, momentum=momentum, weight_decay=weight_decay, augment=augment,
               seed=seed, **({"labels": labels} if labels != "soft" else {}),
               **_optimizer_key(optimizer, decay_epochs))
    teacher = copy.deepcopy(base.model).eval().requires_grad_(False)

    def criterion(logits, x, y):
        with torch.no_grad():
            z = teacher.to(x.device)(x).float()
        if labels == "hard":
            return F.cross_entropy(logits.float(), z.argmax(1))
        if labels == "logits":
            return F.mse_loss(logits.float(), z)
        student = F.log_softmax(logits.float() / temperature, 1)
        return F.kl_div(student, F.log_softmax(z / temperature, 1), reduction="batchmean",
                        log_target=True) * temperature ** 2

    def run(model):
        return fit(model, data, epochs=epochs, lr=lr, momentum=momentum, weight_decay=weight_decay,
                   batch_size=batch_size, schedule="constant", augment=augment, seed=seed,
                   criterion=criterion, on_epoch=on_epoch, optimizer=optimizer, decay_epochs=decay_epochs,
                   desc=f"distill ({labels})", progress=progress)

    return cached_attack(key, base, lambda: copy.deepcopy(base.model), run)


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


def _without_training(name: str, base: Trained, setting: dict, change: Callable[[Classifier], None]) -> Trained:
    """An attack that edits a copy of the weights directly (cheap, so not stored on disk); its
    record carries a hash of (attack, settings, base) so that evaluations of it are cached."""
    t0 = time.time()
    model = copy.deepcopy(base.model)
    with torch.no_grad():
        change(model)
    key = dict(attack=name, base=base.hash, **setting)
    return Trained(model.eval(), {"key": key, "hash": key_hash(key), "seconds": time.time() - t0})


def prune(base: Trained, rate: float) -> Trained:
    """Global magnitude pruning (Le Merrer et al. 2020, Table 1): a copy of ``base`` with the fraction
    ``rate`` of all linear/conv/recurrent weights of lowest |w| set to zero (ties broken by position)."""
    if not 0 <= rate <= 1:
        raise ValueError(f"rate={rate} must lie in [0, 1]")

    def change(model):
        weights = _weights(model)
        flat = torch.cat([w.detach().abs().flatten().cpu() for w in weights])
        k = int(round(rate * flat.numel()))
        mask = torch.ones_like(flat, dtype=torch.bool)
        mask[torch.argsort(flat, stable=True)[:k]] = False
        start = 0
        for w in weights:
            n = w.numel()
            w.mul_(mask[start:start + n].view_as(w).to(w.device, w.dtype))
            start += n

    return _without_training("prune", base, {"rate": rate}, change)


def svd_compress(base: Trained, rate: float) -> Trained:
    """SVD compression (Le Merrer et al. 2020, Table 2): a copy of ``base`` whose every linear weight
    (and conv kernel, reshaped to out × in·k·k) keeps only its top ⌈(1 − rate)·min(m, n)⌉ singular
    values."""
    if not 0 <= rate < 1:
        raise ValueError(f"rate={rate} must lie in [0, 1)")

    def change(model):
        for w in _weights(model):
            mat = w.reshape(w.shape[0], -1)
            u, s, vh = torch.linalg.svd(mat.float(), full_matrices=False)
            r = max(1, int(torch.tensor((1 - rate) * len(s)).ceil()))
            w.copy_(((u[:, :r] * s[:r]) @ vh[:r]).reshape(w.shape).to(w.dtype))

    return _without_training("svd", base, {"rate": rate}, change)


# ----------------------------------------------------------------------------- adversarial inputs
def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "linf",
         batch_size: int = 500) -> torch.Tensor:
    """x* = clip(x + eps · d, 0, 1), d the gradient direction of the loss J(θ, x, y) normalised
    under ``norm``: sign(g) for l∞ (FGSM), g/‖g‖₂ for l2 and g/‖g‖₁ for l1 (the fast gradient
    method of cleverhans 2.x, which the paper used) — Le Merrer et al. 2020, Alg. 1 step 1.
    Inputs are images in [0, 1] (uint8 is converted)."""
    if eps < 0:
        raise ValueError(f"eps={eps} must be >= 0")
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not known; accepted values: {list(NORMS)}")
    device = default_device()
    was_training = model.training
    model.eval().to(device)
    out = []
    for i in range(0, len(x), batch_size):
        xb = D.to_float(x[i:i + batch_size].to(device)).clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(model(xb), y[i:i + batch_size].to(device))
        (grad,) = torch.autograd.grad(loss, xb)
        if norm == "linf":
            step = grad.sign()
        else:
            flat = grad.flatten(1)
            size = flat.norm(p=2 if norm == "l2" else 1, dim=1).clamp_min(1e-12)
            step = grad / size.view(-1, *([1] * (grad.dim() - 1)))
        out.append((xb + eps * step).clamp(0, 1).detach().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros_like(D.to_float(x))


def overwrite(base: Trained, data: D.TensorData, *, eps: float, lr: float, epochs: int,
              batch_size: int = 128, seed: int = 0, progress: bool = False) -> Trained:
    """Overwriting (Le Merrer et al. 2020, Table 3): the attacker turns its images ``data``
    (1,000 test images in the paper) into FGSM adversaries (l∞, ``eps``) of the leaked model and
    fine-tunes it on them alone (adversarial fine-tuning) at a constant ``lr`` for ``epochs`` epochs."""
    adv = D.TensorData(fgsm(base.model, data.x, data.y, eps), data.y.clone())
    cache_key = dict(attack="overwrite", adversaries=adv.digest, eps=eps, lr=lr, epochs=epochs,
                     batch_size=batch_size, seed=seed)

    def run(model):
        return fit(model, adv, epochs=epochs, lr=lr, batch_size=batch_size, schedule="constant",
                   seed=seed, desc="adversarial fine-tuning", progress=progress)

    return cached_attack(cache_key, base, lambda: copy.deepcopy(base.model), run)


def overwrite_own(base: Trained, data: D.TensorData, own, *, epochs: int, lr: float, batch_size: int = 100,
                  seed: int = 0, progress: bool = False) -> Trained:
    """Overwriting with a watermark of the attacker's own (Adi et al. 2018 §5.2; the
    Watermark-Robustness-Toolbox's "overwriting"): fine-tune a copy of the stolen ``base`` at a constant
    ``lr`` on the attacker's ``data`` while embedding the attacker's mark, so that the model carries a
    second watermark and, the attacker hopes, loses the owner's. Knows no scheme: ``own`` is either
    extra batches to mix into every batch (the attacker's trigger set or frontier key: anything with
    ``digest`` and ``batches(generator)``, e.g. :class:`wmlib.schemes.adi.TriggerCycler`) or an
    embedding that trains itself (``digest`` and ``train(model, data, **fit_kw)``, e.g. a payload in
    the weights, :class:`wmlib.schemes.weights.Payload`)."""
    if not (hasattr(own, "digest") and (hasattr(own, "batches") or hasattr(own, "train"))):
        raise ValueError(f"own={own!r}: expected extra batches (digest, batches) or an embedding (digest, train)")
    key = dict(attack="overwrite-own", own=own.digest, data=data.digest, epochs=epochs, lr=lr,
               batch_size=batch_size, seed=seed)

    def run(model):
        kw = dict(epochs=epochs, lr=lr, batch_size=batch_size, schedule="constant", seed=seed,
                  desc="overwriting", progress=progress)
        return own.train(model, data, **kw) if hasattr(own, "train") else fit(model, data, extra=own, **kw)

    return cached_attack(key, base, lambda: copy.deepcopy(base.model), run)


# ----------------------------------------------------------------------------- worst case on the weights
def _margins(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """max_{c≠y} Z_c − Z_y per point (positive once a point is misclassified)."""
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return other - logits.gather(1, y[:, None]).squeeze(1)


def _margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mean over points of max_{c≠y} Z_c − Z_y."""
    return _margins(logits, y).mean()


_IP_LOSSES = {"cross-entropy": F.cross_entropy, "margin": _margin_loss}


def worst_case_perturbation(model: Classifier, ip_x: torch.Tensor, ip_y: torch.Tensor,
                            val_x: torch.Tensor, val_y: torch.Tensor, *, radius: float,
                            lam: float = 1.0, lr: float = 1e-3, iters: int = 1000,
                            val_batch: int | None = None, seed: int = 0, ip_loss: str = "cross-entropy",
                            noise_sigma: float = 0.0, noise_draws: int = 1,
                            device: torch.device | None = None) -> tuple[Classifier, float]:
    """IPCert Alg. 1: PGD on δ (every parameter) for min −λ·mean l_IP(θ+δ) + mean l_v(θ+δ) (Eq. 2),
    s.t. ‖δ‖₂ ≤ R (Eq. 3, one ℓ2 norm over all parameters); returns (a perturbed copy, ‖δ‖₂).

    Plain gradient steps δ ← δ − lr·∇L, then δ ← δ·R/‖δ‖₂ when ‖δ‖₂ > R; the paper uses lr = 0.001,
    1,000 iterations, |D_v| = 1,000 (λ is not given). ``val_batch`` draws that many validation
    points per iteration (seeded) instead of all of them. The model runs in eval mode, in float32.
    ``ip_loss`` "cross-entropy" is the paper's l_IP; "margin" uses max_{c≠y} Z_c − Z_y instead (the
    Carlini-Wagner margin), whose gradient does not vanish when the cross-entropy of a model with
    very large logit margins rounds to 0 in float32 (a model trained with noise, for instance).
    ``noise_sigma`` > 0 attacks the smoothed model instead (an adaptive attack on IPCert / MS): each
    step averages the IP-set loss over ``noise_draws`` noisy copies θ + δ + ε, ε ~ N(0, σ²I) (seeded).
    A step whose gradient is not finite (a noisy copy whose outputs overflow) is skipped.
    """
    if radius < 0:
        raise ValueError(f"radius={radius} must be >= 0")
    if ip_loss not in _IP_LOSSES:
        raise ValueError(f"ip_loss={ip_loss!r} is not known; accepted values: {sorted(_IP_LOSSES)}")
    if val_batch is not None and val_batch < 1:
        raise ValueError(f"val_batch={val_batch} must be >= 1 or None")
    if noise_sigma < 0 or noise_draws < 1:
        raise ValueError(f"noise_sigma={noise_sigma} must be >= 0 and noise_draws={noise_draws} >= 1")
    device = device or default_device()
    out = copy.deepcopy(model).eval().to(device)
    params = list(out.parameters())
    for p in params:
        p.requires_grad_(True)
    theta = [p.detach().clone() for p in params]
    delta = [torch.zeros_like(p) for p in params]
    ip_x, ip_y = D.to_float(ip_x.to(device)), ip_y.to(device)
    gen = torch.Generator().manual_seed(seed)
    norm = 0.0
    for _ in range(iters):
        idx = torch.randperm(len(val_y), generator=gen)[:val_batch] if val_batch else slice(None)
        vx, vy = D.to_float(val_x[idx].to(device)), val_y[idx].to(device)
        out.zero_grad(set_to_none=True)
        if noise_sigma == 0:
            loss = -lam * _IP_LOSSES[ip_loss](out(ip_x), ip_y) + F.cross_entropy(out(vx), vy)
            loss.backward()
        else:                                  # the gradient at θ + δ + ε is the gradient in δ
            F.cross_entropy(out(vx), vy).backward()
            backward_under_noise(params, [t + d for t, d in zip(theta, delta)], noise_sigma, noise_draws,
                                 lambda: -lam * _IP_LOSSES[ip_loss](out(ip_x), ip_y), gen)
        with torch.no_grad():
            # a step whose gradient is not finite (a noisy copy overflowed) is skipped: δ stays finite
            if all(torch.isfinite(p.grad).all() for p in params if p.grad is not None):
                for d, p in zip(delta, params):
                    d.sub_(lr * p.grad)
                norm = float(torch.sqrt(sum((d.double() ** 2).sum() for d in delta)))
                if norm > radius:
                    for d in delta:
                        d.mul_(radius / norm)
                    norm = radius
            for p, t, d in zip(params, theta, delta):
                p.copy_(t + d)
    out.zero_grad(set_to_none=True)
    return out.cpu().eval(), norm


def worst_case(base: Trained, ip: D.TensorData, val: D.TensorData, *, radius: float, lam: float = 1.0,
               lr: float = 1e-3, iters: int = 1000, val_batch: int | None = None, seed: int = 0,
               ip_loss: str = "cross-entropy", noise_sigma: float = 0.0, noise_draws: int = 1,
               space: str = "parameters") -> Trained:
    """:func:`worst_case_perturbation` of a cached model, itself cached (record: ``delta_norm``).

    ``ip`` is any labelled set the attacker targets (an IP set: images ``x`` and labels ``y``),
    ``val`` the attacker's validation data. ``space="parameters"`` perturbs the parameters (the
    paper's Alg. 1; buffers untouched); ``"folded"`` perturbs every coordinate of the model file's
    certified space (:func:`wmlib.certspace.fold`; the returned model is the folded one) with
    ‖δ‖₂ ≤ R measured there."""
    certspace.check_space(space)
    cache_key = dict(attack="worst-case", ip=D.digest(ip.x, ip.y), val=val.digest, radius=radius,
                     lam=lam, lr=lr, iters=iters, val_batch=val_batch, seed=seed, ip_loss=ip_loss,
                     noise_sigma=noise_sigma, noise_draws=noise_draws,
                     **({"space": certspace.space_key(space)} if space != "parameters" else {}))
    norm = {}

    def run(model):
        moved, norm["delta"] = worst_case_perturbation(
            model, ip.x, ip.y, val.x, val.y, radius=radius, lam=lam, lr=lr, iters=iters,
            val_batch=val_batch, seed=seed, ip_loss=ip_loss, noise_sigma=noise_sigma,
            noise_draws=noise_draws)
        model.load_state_dict(moved.state_dict())
        return {"delta_norm": norm["delta"]}

    make = (lambda: certspace.fold(base.model)) if space == "folded" else (lambda: copy.deepcopy(base.model))
    return cached_attack(cache_key, base, make, run)


def buffer_perturbation(model: Classifier, ip_x: torch.Tensor, ip_y: torch.Tensor, data: D.TensorData, *,
                        radius: float | None = None, lam: float = 1.0, lr: float = 0.01, steps: int = 100,
                        cap: float = 2.0, batch_size: int = 100, seed: int = 0,
                        device: torch.device | None = None) -> tuple[Classifier, float]:
    """The buffer-only attack: a copy of ``model`` whose parameters are bit-identical and whose
    batch-norm statistics and normalisation buffers minimise −λ·margin(IP set) + cross-entropy on
    ``data`` (a batch of ``batch_size`` per step); returns (the copy, its ℓ2 distance to ``model``
    in the certified space, :func:`wmlib.certspace.distance`).

    Adam (``lr``, ``steps``) on the running means and log(variance + ε) (normalisation: mean and
    log std), the coordinates of the default certified space; with ``radius`` their change is
    projected onto the ℓ2 ball of that radius after each step (so the certified distance is
    ≤ R; the parameter distance is 0 whatever R). The IP term is the margin max_{c≠y} Z_c − Z_y
    of the adaptive PGD, capped at ``cap`` per point: a point pushed past the boundary by that
    much stops pulling, so the statistics do not wreck the model for it."""
    if radius is not None and radius < 0:
        raise ValueError(f"radius={radius} must be >= 0 or None (unbounded)")
    if steps < 0 or batch_size < 1:
        raise ValueError(f"steps={steps} must be >= 0 and batch_size={batch_size} >= 1")
    device = device or default_device()
    out = copy.deepcopy(model).eval().to(device)
    if not certspace.statistics(out):
        raise ValueError("the model has no batch norm or normalisation buffers to attack")
    folded = certspace.fold(out, "log-statistics").requires_grad_(False)
    stats = {n: m for n, m in folded.named_modules() if isinstance(m, certspace.Statistics)}
    start = {f"{n}.{k}": getattr(m, k).detach().clone() for n, m in stats.items() for k in ("mean", "spread")}
    coords = {k: v.clone().requires_grad_(True) for k, v in start.items()}
    ip_x, ip_y = D.to_float(ip_x.to(device)), ip_y.to(device)
    opt = torch.optim.Adam(list(coords.values()), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(data), (batch_size,), generator=gen)
        xb, yb = D.to_float(data.x[idx].to(device)), data.y[idx].to(device)
        opt.zero_grad(set_to_none=True)
        net = lambda x: functional_call(folded, coords, (x,))  # noqa: E731
        margin = _margins(net(ip_x), ip_y).clamp_max(cap)
        (-lam * margin.mean() + F.cross_entropy(net(xb), yb)).backward()
        opt.step()
        if radius is not None:
            with torch.no_grad():
                norm = torch.sqrt(sum(((coords[k] - start[k]) ** 2).sum() for k in coords))
                if norm > radius:
                    for k in coords:
                        coords[k].copy_(start[k] + (coords[k] - start[k]) * radius / norm)
    with torch.no_grad():
        for module, name in zip(certspace.statistics(out), stats):
            mean, spread = coords[f"{name}.mean"], coords[f"{name}.spread"].exp()
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.copy_(mean)
                module.running_var.copy_(spread - module.eps)        # the coordinate is log(v + ε)
            else:
                module.mean.copy_(mean.view_as(module.mean))
                module.std.copy_(spread.view_as(module.std))
    out = out.cpu().eval()
    return out, certspace.distance(out, model.cpu())


def buffer_attack(base: Trained, ip: D.TensorData, data: D.TensorData, *, radius: float | None = None,
                  lam: float = 1.0, lr: float = 0.01, steps: int = 100, cap: float = 2.0, batch_size: int = 100,
                  seed: int = 0) -> Trained:
    """:func:`buffer_perturbation` of a cached model, itself cached (record: ``folded_distance``)."""
    cache_key = dict(attack="buffers", ip=D.digest(ip.x, ip.y), data=data.digest, radius=radius, lam=lam,
                     lr=lr, steps=steps, cap=cap, batch_size=batch_size, seed=seed,
                     space=certspace.space_key("folded", "log-statistics"))
    dist = {}

    def run(model):
        moved, dist["d"] = buffer_perturbation(model, ip.x, ip.y, data, radius=radius, lam=lam, lr=lr,
                                               steps=steps, cap=cap, batch_size=batch_size, seed=seed)
        model.load_state_dict(moved.state_dict())
        return {"folded_distance": dist["d"]}

    return cached_attack(cache_key, base, lambda: copy.deepcopy(base.model), run)


# ----------------------------------------------------------------------------- attacks on weight watermarks
def quantize(base: Trained, bits: int) -> Trained:
    """Uniform weight quantisation (Tartaglione et al. 2020, poster panels f, h, j; the brief's
    attack settings): every parameter tensor (weights, biases, batch-norm affine) snapped to the
    nearest of 2**bits evenly spaced levels between its own min and max; buffers untouched. A
    constant tensor stays as it is."""
    if not isinstance(bits, int) or isinstance(bits, bool) or bits < 1:
        raise ValueError(f"bits={bits!r} must be an integer >= 1")

    def change(model):
        levels = 2 ** bits - 1
        for p in model.parameters():
            lo, hi = p.min(), p.max()
            if hi > lo:
                step = (hi - lo) / levels
                p.copy_(lo + torch.round((p - lo) / step).clamp_(0, levels) * step)

    return _without_training("quantize", base, {"bits": bits}, change)


def _at(model: nn.Module, where: dict[str, torch.Tensor]):
    """(parameter, multi-index) for each named tensor of ``where`` (flat row-major indices)."""
    params = dict(model.named_parameters())
    missing = sorted(set(where) - set(params))
    if missing:
        raise ValueError(f"where names tensors the model does not have: {missing[:5]}")
    for name, flat in where.items():
        p = params[name]
        yield p, tuple(i.to(p.device) for i in torch.unravel_index(torch.as_tensor(flat), p.shape))


def _digest_where(where: dict[str, torch.Tensor]) -> list:
    return sorted((k, D.digest(torch.as_tensor(v))) for k, v in where.items())


def noise_at(base: Trained, where: dict[str, torch.Tensor], std: float, *, seed: int = 0) -> Trained:
    """Gaussian noise N(0, ``std``²) added to the given coordinates only (``where``: parameter
    name → flat indices), the rest of the model untouched: how far the loss rises when those
    weights move (Tartaglione et al. 2020, poster panels a–d, the steep valley). Seeded."""
    if not std >= 0:
        raise ValueError(f"std={std} must be >= 0")
    g = torch.Generator().manual_seed(seed)

    def change(model):
        for p, idx in _at(model, where):
            p[idx] += std * torch.randn(len(idx[0]), generator=g).to(p.device, p.dtype)

    return _without_training("noise-at", base, {"where": _digest_where(where), "std": std, "seed": seed}, change)


def set_at(base: Trained, where: dict[str, torch.Tensor], value: float) -> Trained:
    """The given coordinates (parameter name → flat indices) set to ``value``, the rest untouched."""
    def change(model):
        for p, idx in _at(model, where):
            p[idx] = value

    return _without_training("set-at", base, {"where": _digest_where(where), "value": value}, change)


def reset_outliers(base: Trained, fraction: float, *, seed: int = 0) -> Trained:
    """An informed attacker against a watermark written into the weights (Tartaglione et al.
    2020): it knows the scheme — a few thousand positions anywhere in the model hold values far
    larger than trained weights (the payload divided by SF = 0.1 lies in [−10, 10]) — but not the
    key. It scores every parameter by its robust z-score within its tensor,
    |w − median| / (1.4826·MAD), and re-initialises the ``fraction`` of all parameters that score
    highest with draws from N(median, (1.4826·MAD)²) of their tensor, so they look like the rest
    (seeded; a tensor whose MAD is 0 gets its median). No training follows (compose with
    :func:`fine_tune` to repair the accuracy)."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction={fraction} must lie in [0, 1]")

    def change(model):
        params = list(model.parameters())
        centre, spread, scores = [], [], []
        for p in params:
            flat = p.detach().flatten().double().cpu()
            med = flat.median()
            mad = 1.4826 * (flat - med).abs().median()
            centre.append(med)
            spread.append(mad)
            scores.append((flat - med).abs() / mad.clamp_min(1e-12))
        score = torch.cat(scores)
        k = int(round(fraction * score.numel()))
        mask = torch.zeros_like(score, dtype=torch.bool)
        mask[torch.argsort(score, descending=True, stable=True)[:k]] = True
        g = torch.Generator().manual_seed(seed)
        start = 0
        for p, med, mad in zip(params, centre, spread):
            n = p.numel()
            m = mask[start:start + n].view(p.shape)
            start += n
            if m.any():
                fresh = med + mad * torch.randn(int(m.sum()), generator=g, dtype=torch.float64)
                idx = m.nonzero(as_tuple=True)
                p[tuple(i.to(p.device) for i in idx)] = fresh.to(p.device, p.dtype)

    return _without_training("reset-outliers", base, {"fraction": fraction, "seed": seed}, change)


# ----------------------------------------------------------------------------- zero-cost (function-preserving) edits
DUMMY_KINDS = ("zero", "clique", "split")


def _outputs_kept(before: nn.Module, after: nn.Module) -> dict:
    """The largest absolute logit change between two models on a fixed seeded batch of 8 random
    images of the input shape (and the largest logit magnitude, its scale), and the certified-space
    distance moved (None when the shapes differ)."""
    x = torch.rand(8, *units.input_shape(before), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = before.eval()(x), after.eval()(x)
    sa, sb = before.state_dict(), after.state_dict()
    same = sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape for k in sa)
    moved = certspace.distance(after, before) if same else None
    return {"max_logit_change": float((b - a).abs().max()), "logit_scale": float(a.abs().max()),
            "folded_distance": moved}


def _zero_cost(name: str, base: Trained, setting: dict, change: Callable[[Classifier], None]) -> Trained:
    """:func:`_without_training` for an edit that keeps every output, its record measured by
    :func:`_outputs_kept`."""
    out = _without_training(name, base, setting, change)
    out.record.update(_outputs_kept(base.model, out.model))
    return out


def _log_uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    return torch.exp(torch.log(torch.tensor(low, dtype=torch.float64)) * (1 - u)
                     + torch.log(torch.tensor(high, dtype=torch.float64)) * u)


def _check_range(low: float, high: float) -> None:
    if not (0 < low <= high < float("inf")):
        raise ValueError(f"low={low} and high={high} must satisfy 0 < low <= high (finite)")


def permute_units(base: Trained, seed: int = 0) -> Trained:
    """Every unit group (:func:`wmlib.units.describe`) reordered by a random permutation (seeded):
    the same function, every weight at another position (Li & Wang 2023, the equivalence attack's
    swaps; Git Re-Basin's permutation symmetry)."""
    units.describe(base.model)        # a model the walk cannot describe fails here, before any copy

    def change(model):
        gen = torch.Generator().manual_seed(seed)
        for group in units.describe(model):
            units.reindex(model, group, torch.randperm(group.size, generator=gen))

    return _zero_cost("permute-units", base, {"seed": seed}, change)


def scale_units(base: Trained, seed: int = 0, low: float = 0.5, high: float = 2.0) -> Trained:
    """Positive per-unit factors c, log-uniform in [``low``, ``high``] (seeded), across every ReLU
    / max-pool site: the producer's rows and bias (or a batch norm's weight and bias) × c, the
    consumers' columns ÷ c (Li & Wang 2023, the positive scaling of the equivalence attack)."""
    _check_range(low, high)
    if not any(s.kind == "relu" for g in units.describe(base.model) for s in g.sites):
        raise ValueError("model: no unit can be rescaled across a ReLU in this model")

    def change(model):
        gen = torch.Generator().manual_seed(seed)
        for group in units.describe(model):
            for site in group.sites:
                if site.kind == "relu":
                    units.rescale(model, group, site, _log_uniform(group.size, low, high, gen))

    return _zero_cost("scale-units", base, {"seed": seed, "low": low, "high": high}, change)


def rescale_batchnorm(base: Trained, factor: float | None = 0.1, *, seed: int = 0, low: float = 0.1,
                      high: float = 10.0) -> Trained:
    """Every conv before a batch norm scaled by c, the batch norm's running mean × c and running
    variance v → c²·(v + ε) − ε (exact in eval mode; Li & Wang 2023 write v × c², which is off by
    ε): the outputs stay, the file moves. c = ``factor`` for every unit, or with ``factor=None``
    log-uniform per unit in [``low``, ``high``] (seeded). Against certified watermarks: a factor
    0.1 makes a fixed noise σ on those weights relatively 10× larger."""
    if factor is None:
        _check_range(low, high)
    elif not (0 < factor < float("inf")):
        raise ValueError(f"factor={factor} must be > 0 (or None for random per-unit factors)")
    if not any(s.kind == "batchnorm" for g in units.describe(base.model) for s in g.sites):
        raise ValueError("model: it has no conv or linear layer followed by a batch norm; "
                         "accepted models: those with batch norms (cifar_cnn, resnet18, resnet32)")

    def change(model):
        gen = torch.Generator().manual_seed(seed)
        for group in units.describe(model):
            for site in group.sites:
                if site.kind == "batchnorm":
                    c = (torch.full((group.size,), float(factor), dtype=torch.float64) if factor is not None
                         else _log_uniform(group.size, low, high, gen))
                    units.rescale(model, group, site, c)

    setting = {"factor": factor} if factor is not None else {"factor": None, "seed": seed, "low": low, "high": high}
    return _zero_cost("rescale-batchnorm", base, setting, change)


def _dummy_slices(model: Classifier, group: units.Group, kind: str, count: int,
                  gen: torch.Generator) -> dict[int, torch.Tensor]:
    """New units' slices for every entry of ``group`` (Yan et al. 2023's dummy neurons); for
    "split" the split units' columns are changed in ``model`` in place."""
    n = group.size
    upstream = [i for i, e in enumerate(group.entries) if e.role != "in"]
    downstream = [i for i, e in enumerate(group.entries) if e.role == "in"]
    tensors = [units.tensor(model, e).detach() for e in group.entries]

    def fresh(i, k):          # k units' slices drawn like the tensor's values
        e, t = group.entries[i], tensors[i]
        shape = list(t.shape)
        shape[e.axis] = k * e.block
        return torch.randn(shape, generator=gen, dtype=torch.float64).to(t.dtype) * t.float().std().clamp_min(1e-3)

    def copy_of(i, units_):   # the slices of existing units
        e = group.entries[i]
        return tensors[i].index_select(e.axis, e.index(units_)).clone()

    templates = torch.randint(n, (count,), generator=gen)
    new = {i: copy_of(i, templates) for i in range(len(group.entries))}
    for i in upstream:                       # weights into a new unit: fresh draws; biases, batch norms: a template's
        e = group.entries[i]
        if e.role == "out" and e.tensor == "weight":
            new[i] = fresh(i, count)
    if kind == "zero":
        zero_in = torch.rand(count, generator=gen) < 0.5         # half read nothing, half are read by nothing
        for i in downstream:
            new[i] = fresh(i, count)
        for i, e in enumerate(group.entries):
            mask = _block_mask(e, zero_in, new[i])
            if e.role == "in":
                new[i] = torch.where(mask, new[i], torch.zeros_like(new[i]))
            elif e.role == "out" or e.tensor in ("bias", "running_mean"):
                new[i] = torch.where(mask, torch.zeros_like(new[i]), new[i])
    elif kind == "clique":
        sizes = [2] * (count // 2)
        sizes[-1] += count % 2
        start = 0
        for size in sizes:
            members = torch.arange(start, start + size)
            for i in upstream:                # one unit's inputs, repeated
                e = group.entries[i]
                first = new[i].index_select(e.axis, _sub(e, members[:1]))
                new[i].index_copy_(e.axis, _sub(e, members), torch.cat([first] * size, e.axis))
            for i in downstream:              # outgoing weights that sum to zero
                e = group.entries[i]
                part = fresh(i, size)
                parts = list(part.split(e.block, e.axis))
                parts[-1] = -sum(parts[:-1])
                new[i].index_copy_(e.axis, _sub(e, members), torch.cat(parts, e.axis))
            start += size
    else:                                     # split: a copy of an existing unit, its outgoing weights shared
        if count > n:
            raise ValueError(f"count={count} must be <= {n}, the units of group {group.name}, to split as many")
        chosen = torch.randperm(n, generator=gen)[:count]
        for i in range(len(group.entries)):
            new[i] = copy_of(i, chosen)
        for i in downstream:
            e = group.entries[i]
            part = fresh(i, count)
            new[i] = part
            t = units.tensor(model, e)
            where = e.index(chosen)
            t.data.index_copy_(e.axis, where, t.detach().index_select(e.axis, where) - part)
    return new


def _sub(e: units.Entry, members: torch.Tensor) -> torch.Tensor:
    """Positions of new units ``members`` inside a block of new slices of entry ``e``."""
    return (members[:, None] * e.block + torch.arange(e.block)).reshape(-1)


def _block_mask(e: units.Entry, per_unit: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    shape = [1] * like.ndim
    shape[e.axis] = -1
    return per_unit.repeat_interleave(e.block).view(shape)


def add_dummy_units(base: Trained, kind: str, count: int = 2, seed: int = 0) -> Trained:
    """``count`` dummy units added to every group that spans whole layers, at random places (Yan
    et al. 2023, neural structural obfuscation): "zero" units read nothing (zero weights and
    bias, a batch norm mapping 0 to 0) or are read by nothing (zero outgoing weights), half each
    at random; a "clique" is 2 (or 3) new units with the same inputs whose outgoing weights sum to
    zero; "split" copies ``count`` existing units and shares each one's outgoing weights between
    the two at random (they sum to the original's). The layers are widened (the same module
    classes with larger tensors), so the file no longer fits the owner's architecture. Every
    model :func:`wmlib.units.describe` knows; in ``resnet32`` the streams tied by zero-padded
    shortcuts are left as they are (only the blocks' inner units get dummies)."""
    if kind not in DUMMY_KINDS:
        raise ValueError(f"kind={kind!r} is not known; accepted values: {list(DUMMY_KINDS)}")
    if not isinstance(count, int) or isinstance(count, bool) or count < (2 if kind == "clique" else 1):
        raise ValueError(f"count={count!r} must be an integer >= {2 if kind == 'clique' else 1} for kind={kind!r}")
    if not any(g.whole for g in units.describe(base.model)):
        raise ValueError("model: no unit group spans whole layers; dummy units cannot be added")

    def change(model):
        gen = torch.Generator().manual_seed(seed)
        # last group first, so that no later dummy reads an earlier one; widening a group leaves the
        # others' positions as they are
        for group in reversed(units.describe(model)):
            if not group.whole:
                continue
            extra = _dummy_slices(model, group, kind, count, gen)
            units.reindex(model, group, torch.randperm(group.size + count, generator=gen), extra)

    return _zero_cost("dummy-units", base, {"kind": kind, "count": count, "seed": seed}, change)


def steal(base: Trained, data: D.TensorData, *, lr: float, epochs: int = 1, seed: int = 0,
          progress: bool = False) -> Trained:
    """A thief's copy: all layers fine-tuned (FTAL) on ``data`` at ``lr``, then every zero-cost edit
    (:func:`zero_cost_edit`): the stolen suspect of ``wmbook verify``'s worked example."""
    tuned = fine_tune(base, "FTAL", data, epochs=epochs, lr=lr, seed=seed, progress=progress)
    out = zero_cost_edit(tuned, seed)
    return Trained(out.model, {**out.record, "fine_tuned": {"lr": lr, "epochs": epochs, "n": len(data),
                                                            "seconds": tuned.record["seconds"]}})


def zero_cost_edit(base: Trained, seed: int = 0, *, dummies: tuple[str, ...] = DUMMY_KINDS, count: int = 2,
                   low: float = 0.5, high: float = 2.0, bn_low: float = 0.1, bn_high: float = 10.0) -> Trained:
    """The composition: dummy units of each kind in ``dummies`` (``count`` per group each), positive
    per-unit scales across ReLUs in [``low``, ``high``], random batch-norm rescaling in
    [``bn_low``, ``bn_high``] where there are batch norms, then a random permutation of every group
    (Li & Wang 2023 and Yan et al. 2023 together). Record: each step's record under ``steps``."""
    for kind in dummies:
        if kind not in DUMMY_KINDS:
            raise ValueError(f"dummies={dummies!r}: {kind!r} is not known; accepted values: {list(DUMMY_KINDS)}")
    _check_range(low, high)
    _check_range(bn_low, bn_high)
    sites = {s.kind for g in units.describe(base.model) for s in g.sites}
    out, steps = base, []
    for i, kind in enumerate(dummies):
        out = add_dummy_units(out, kind, count, seed=seed + i)
        steps.append(out.record)
    if "relu" in sites:
        out = scale_units(out, seed=seed, low=low, high=high)
        steps.append(out.record)
    if "batchnorm" in sites:
        out = rescale_batchnorm(out, None, seed=seed, low=bn_low, high=bn_high)
        steps.append(out.record)
    out = permute_units(out, seed=seed)
    steps.append(out.record)
    setting = {"seed": seed, "dummies": list(dummies), "count": count, "low": low, "high": high,
               "bn_low": bn_low, "bn_high": bn_high}
    key = dict(attack="zero-cost", base=base.hash, **setting)
    record = {"key": key, "hash": key_hash(key), "steps": steps, "seconds": sum(s["seconds"] for s in steps)}
    return Trained(out.model, {**record, **_outputs_kept(base.model, out.model)})
