"""The certified space: every tensor of a model file that changes its outputs, as one vector.

A certificate over parameters (IPCert §4, Bansal et al. 2022) promises something for every model
within ℓ2 distance R of θ. A model file also carries *buffers*: batch-norm running means and
variances, and here the input normalisation's mean and std. In eval mode they change the outputs,
yet noise and distance over ``model.parameters()`` ignore them, so an attacker who edits only the
buffers is at distance 0 and the certificate promises nothing real (:func:`wmlib.attacks.buffer_attack`).

:func:`fold` maps a model to an equivalent one without float buffers (the same outputs in eval
mode), whose parameters are the certified coordinates. Certifying the folded model (noise on all
of its parameters) and measuring a suspect model's distance after folding it the same way closes
the gap: any edit of a statistic is an edit of certified coordinates. Four forms, all onto (every
folded point is the fold of some model file, so the space is what an attacker controls):

* ``log-statistics`` (the default): the statistics become parameters as the file stores them,
  in log scale for the spreads: batch norm (μ, log(v + ε)), normalisation (mean, log std); every
  file whose outputs are finite (v + ε > 0, std > 0) has finite coordinates;
* ``statistics``: the same without logs (μ, v; mean, std), the buffers' own units;
* ``affine``: each batch norm becomes the per-channel affine map it computes,
  ``scale = γ/√(v + ε)``, ``shift = β − μ·scale``; the normalisation ``1/std``, ``−mean/std``;
* ``conv``: ``affine``, then merged into the conv / linear layer right before it in a
  ``Sequential`` (``W·scale``, bias ``b·scale + shift``).

The default is chosen by the cost in certified matching rate, measured on the IPCert page.
What stays outside: integer buffers (batch norm's ``num_batches_tracked``, unused in eval mode)
and the architecture itself (ε, layer shapes: the verifier builds the model, the file fills it).
"""
from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

SPACES = ("folded", "parameters")
"""``folded``: the sound certified space (:func:`fold`); ``parameters``: the papers' space,
``model.parameters()`` only (buffers outside the guarantee)."""

FORMS = ("log-statistics", "statistics", "affine", "conv")
DEFAULT_FORM = "log-statistics"
VERSION = 2
"""Bumped whenever a form's coordinates change meaning (part of :func:`space_key`)."""

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class ChannelAffine(nn.Module):
    """``x·scale + shift`` per channel (dimension 1): an eval-mode batch norm or a normalisation,
    with both vectors as parameters."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor):
        super().__init__()
        self.scale = nn.Parameter(scale.detach().clone().reshape(-1))
        self.shift = nn.Parameter(shift.detach().clone().reshape(-1))

    def forward(self, x):
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return x * self.scale.view(shape) + self.shift.view(shape)


def check_space(space: str) -> str:
    if space not in SPACES:
        raise ValueError(f"space={space!r} is not known; accepted values: {list(SPACES)}")
    return space


def space_key(space: str, form: str = DEFAULT_FORM) -> str:
    """What a cache key records for results in certified space ``space`` (the form and its version)."""
    return "parameters" if check_space(space) == "parameters" else f"folded:{form}:v{VERSION}"


def bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) of an eval-mode batch norm: γ/√(v + ε) and β − μ·γ/√(v + ε) (γ = 1, β = 0
    without affine parameters)."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"{type(bn).__name__} has no running statistics (track_running_stats=False): "
                         "its eval output depends on the batch, it cannot be folded")
    weight = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
    bias = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
    scale = weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bias - bn.running_mean * scale


def _is_normalize(module: nn.Module) -> bool:
    return {n for n, _ in module.named_buffers(recurse=False)} == {"mean", "std"} and not list(
        module.parameters(recurse=False))


def affine(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) computed by a batch norm in eval mode or a normalisation."""
    if isinstance(module, _BN):
        return bn_affine(module)
    if _is_normalize(module):
        return (1 / module.std).reshape(-1), (-module.mean / module.std).reshape(-1)
    raise ValueError(f"{type(module).__name__} is neither a batch norm nor a normalisation")


class Statistics(nn.Module):
    """An eval-mode batch norm or normalisation whose statistics are parameters: the mean and the
    variance (std), or with ``log`` log(v + ε) (log std). The forward pass is PyTorch's, written
    out so that it is differentiable in the statistics (unlike ``F.batch_norm``)."""

    def __init__(self, module: nn.Module, log: bool):
        super().__init__()
        self.log, self.bn = log, isinstance(module, _BN)
        if self.bn:
            self.eps = module.eps
            self.weight = None if module.weight is None else nn.Parameter(module.weight.detach().clone())
            self.bias = None if module.bias is None else nn.Parameter(module.bias.detach().clone())
            spread = module.running_var + self.eps if log else module.running_var
        else:
            spread = module.std.reshape(-1)
        self.mean = nn.Parameter((module.running_mean if self.bn else module.mean.reshape(-1)).detach().clone())
        self.spread = nn.Parameter((spread.log() if log else spread).detach().clone())

    def variance(self) -> torch.Tensor:
        """v + ε of a batch norm (std of a normalisation) from the coordinates."""
        if self.log:
            return self.spread.exp()
        return self.spread + self.eps if self.bn else self.spread

    def forward(self, x):
        shape = (1, -1) + (1,) * (x.ndim - 2)
        if not self.bn:
            return (x - self.mean.view(shape)) / self.variance().view(shape)
        scale = torch.rsqrt(self.variance())
        if self.weight is not None:
            scale = scale * self.weight
        out = (x - self.mean.view(shape)) * scale.view(shape)
        return out + self.bias.view(shape) if self.bias is not None else out


@contextlib.contextmanager
def noisy_statistics(model: nn.Module, sigma: float):
    """Within the block, every batch norm's running statistics and every normalisation's mean and
    std moved by N(0, σ²) noise in the default form's coordinates (μ, log(v + ε); mean, log std),
    so that noise on ``model.parameters()`` plus this is noise on the whole folded file. The
    buffers are swapped for new tensors (never written in place, so a graph built inside stays
    valid) and the originals put back on exit. Noise from the global RNG."""
    saved = []
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BN) and m.running_mean is not None and m.running_var is not None:
                saved += [(m, "running_mean", m.running_mean), (m, "running_var", m.running_var)]
                m.running_mean = m.running_mean + sigma * torch.randn_like(m.running_mean)
                m.running_var = (m.running_var + m.eps) * torch.exp(sigma * torch.randn_like(m.running_var)) - m.eps
            elif _is_normalize(m):
                saved += [(m, "mean", m.mean), (m, "std", m.std)]
                m.mean = m.mean + sigma * torch.randn_like(m.mean)
                m.std = m.std * torch.exp(sigma * torch.randn_like(m.std))
    try:
        yield model
    finally:
        for m, name, t in saved:
            setattr(m, name, t)


def _folded_module(module: nn.Module, form: str) -> nn.Module | None:
    if not (isinstance(module, _BN) or _is_normalize(module)):
        return None
    if form in ("statistics", "log-statistics"):
        return Statistics(module, form == "log-statistics")
    return ChannelAffine(*affine(module))


def _fold_into(layer: nn.Module, affine: ChannelAffine) -> nn.Module:
    """``affine(layer(x))`` as one conv / linear layer: W·scale (per output channel), bias·scale + shift."""
    out = copy.deepcopy(layer)
    with torch.no_grad():
        s = affine.scale.view((-1,) + (1,) * (layer.weight.ndim - 1))
        out.weight = nn.Parameter(layer.weight * s)
        bias = layer.bias if layer.bias is not None else torch.zeros_like(affine.shift)
        out.bias = nn.Parameter(bias * affine.scale + affine.shift)
    return out


def _foldable(layer: nn.Module) -> bool:
    return isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))


def _fold_children(module: nn.Module, form: str) -> None:
    names = list(module._modules)
    for i, name in enumerate(names):
        child = module._modules[name]
        new = None if child is None else _folded_module(child, form)
        if new is None:
            if child is not None:
                _fold_children(child, form)
            continue
        before = module._modules[names[i - 1]] if i else None
        if form == "conv" and isinstance(child, _BN) and isinstance(module, nn.Sequential) and _foldable(before):
            module._modules[names[i - 1]] = _fold_into(before, new)
            module._modules[name] = nn.Identity()
        else:
            module._modules[name] = new


def fold(model: nn.Module, form: str = DEFAULT_FORM) -> nn.Module:
    """An eval-mode copy of ``model`` without float buffers and with the same outputs (to float
    rounding): batch norms and normalisations become :class:`Statistics` or :class:`ChannelAffine`
    modules with parameters, by ``form`` (module docstring). The model itself is not changed."""
    if form not in FORMS:
        raise ValueError(f"form={form!r} is not known; accepted values: {list(FORMS)}")
    out = copy.deepcopy(model).eval()
    _fold_children(out, form)
    floats = [n for n, b in out.named_buffers() if b.is_floating_point()]
    if floats:
        raise ValueError(f"cannot fold the buffers {floats}: only batch norms and normalisations are known")
    return out


def folded(model: nn.Module, space: str, form: str = DEFAULT_FORM) -> nn.Module:
    """``model`` in certified space ``space``: :func:`fold` for ``folded``, itself for ``parameters``."""
    return fold(model, form) if check_space(space) == "folded" else model


def distance(a: nn.Module, b: nn.Module, space: str = "folded", form: str = DEFAULT_FORM) -> float:
    """ℓ2 distance between two models of one architecture in certified space ``space`` (float64):
    over the folded coordinates (every tensor that changes an output) or over parameters only."""
    pa, pb = list(folded(a, space, form).parameters()), list(folded(b, space, form).parameters())
    if len(pa) != len(pb) or any(x.shape != y.shape for x, y in zip(pa, pb)):
        raise ValueError(f"the two models do not have the same architecture (parameter shapes differ in space {space!r})")
    total = float(sum(((x.detach().cpu().double() - y.detach().cpu().double()) ** 2).sum() for x, y in zip(pa, pb)))
    return total ** 0.5 if total == total else float("inf")     # a coordinate NaN (a broken file): infinitely far


def statistics(model: nn.Module) -> list[nn.Module]:
    """The modules whose float buffers change the outputs: batch norms and normalisations."""
    return [m for m in model.modules() if isinstance(m, _BN) or _is_normalize(m)]
