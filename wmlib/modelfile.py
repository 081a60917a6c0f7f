"""Model files read safely: a suspect's file is data, never code.

A file is a state dict (tensor names → tensors) as safetensors (``.safetensors``) or as PyTorch's
zip format, read with ``torch.load(..., weights_only=True)``: a pickle that would import or call
anything (``__reduce__``) is refused before it runs. The architecture comes from the caller (a
key's manifest), never from the file. What can be wrong with a file — missing, extra or misshaped
tensors, NaN or inf, a truncated or foreign file — raises :class:`BadModelFile` with one line that
names it.

A file whose layers are *wider* than the architecture's (dummy units, Yan et al. 2023) is loaded
as such — the same module classes with larger tensors — when its layers fit together: alignment
(:mod:`wmlib.align`) removes the dummies before a white-box reading.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from . import units
from .files import _atomic_write
from .models import Classifier, build_model

SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


class BadModelFile(ValueError):
    """A model file that cannot be read as the architecture's state dict (one line: what is wrong)."""


def _read_state(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise BadModelFile(f"{path}: not a readable safetensors file ({str(e).splitlines()[0]})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).split("\n")[0][:200]
        raise BadModelFile(f"{path}: refused: the file asks to run code when loaded, which a state dict never does "
                           f"(weights_only=True: {first})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise BadModelFile(f"{path}: truncated or not a PyTorch file ({str(e).splitlines()[0][:200]})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise BadModelFile(f"{path}: holds a {type(obj).__name__}, not a state dict (tensor names → tensors)")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise BadModelFile(f"{path}: entries that are not tensors: {', '.join(map(str, bad[:5]))}")
    return obj


def _names(names) -> str:
    names = sorted(names)
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _adopt(model: nn.Module, state: dict, path: Path, architecture: str) -> None:
    """Give ``model`` the file's (wider) shapes where they differ, then check its layers fit."""
    own = model.state_dict()
    wrong = [k for k in state if state[k].shape != own[k].shape]
    if not wrong:
        return
    shapes = "; ".join(f"{k} {tuple(state[k].shape)} where {architecture} has {tuple(own[k].shape)}"
                       for k in wrong[:3])
    if any(state[k].dim() != own[k].dim() for k in wrong):
        raise BadModelFile(f"{path}: misshaped tensors: {shapes}")
    for k in wrong:
        path_, _, attr = k.rpartition(".")
        module = model.get_submodule(path_)
        old = getattr(module, attr)
        new = torch.zeros(state[k].shape, dtype=old.dtype)
        if isinstance(old, nn.Parameter):
            setattr(module, attr, nn.Parameter(new, requires_grad=old.requires_grad))
        else:
            module.register_buffer(attr, new)
    units.fix_widths(model, {k.rpartition(".")[0] for k in wrong})
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *units.input_shape(model)))
    except (RuntimeError, ValueError):
        raise BadModelFile(f"{path}: misshaped tensors, the layers do not fit together: {shapes}") from None


def load(path, architecture: str, dataset: str, num_classes: int | None = None) -> Classifier:
    """The model file ``path`` as the registry's ``architecture`` for ``dataset`` (in eval mode, on
    the CPU, float32), or :class:`BadModelFile`. Layers wider than the architecture's are kept
    (module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise BadModelFile(f"{path}: no such file")
    state = _read_state(path)
    model = build_model(architecture, dataset, num_classes)
    own = model.state_dict()
    missing, extra = set(own) - set(state), set(state) - set(own)
    if missing:
        raise BadModelFile(f"{path}: missing tensors {_names(missing)} (architecture {architecture})")
    if extra:
        raise BadModelFile(f"{path}: tensors that architecture {architecture} does not have: {_names(extra)}")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise BadModelFile(f"{path}: NaN or inf in {_names(bad)}")
    _adopt(model, state, path, architecture)
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    return model.eval()


def save(model: nn.Module, path) -> Path:
    """Write ``model``'s state dict to ``path`` (safetensors for ``.safetensors``, else PyTorch's
    format), never half written."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise ValueError(f"path={str(path)!r}: the suffix must be one of {list(SUFFIXES)}")
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file
        _atomic_write(path, lambda tmp: save_file(state, tmp))
    else:
        _atomic_write(path, lambda tmp: torch.save(state, tmp))
    return path


__all__ = ["BadModelFile", "SUFFIXES", "load", "save"]
