"""Key files: what an owner needs to verify a suspect model, written once and read back safely.

A key is a folder: ``manifest.json`` (the scheme, the format's version, the dataset, the
architecture, the scheme's settings, a SHA-256 per file and a digest over all of it),
``key.safetensors`` (the secret: trigger or IP images and labels, Le Merrer's key inputs,
Tartaglione's positions and payload) and, for the schemes that read the file, ``owner.safetensors``
(the owner's model file, which alignment matches a suspect to). Nothing in it is code; a key whose
digest does not match its contents is refused.

:func:`verify` gives each scheme's :class:`~wmlib.verdict.Verdict` on a suspect model:

* ``adi`` — Adi et al. 2018: trigger-set accuracy against k/n (:func:`wmlib.schemes.adi.verify`);
* ``frontier`` — Le Merrer et al. 2020, Algorithm 2: key mismatches against θ;
* ``tartaglione`` — Tartaglione et al. 2020: correlation of the key positions with the payload,
  after alignment to the owner's file against the threshold calibrated on aligned independent
  models (``null``), or as the paper reads it (``align=False``);
* ``bansal`` — Bansal et al. 2022: the median trigger accuracy of ``m`` noisy copies (σ) of the
  whole file, with its certified radius;
* ``ipcert`` — Jiang et al. 2023: the majority-vote matching rate of ``m`` noisy copies, with its
  certified radius.

The white-box three align the suspect to the owner's file first (:func:`wmlib.align.align`):
permuting, rescaling or padding units keeps every prediction and would otherwise move the key
positions or change what σ means; a suspect that is no transform of the owner's architecture is
read as it is and the verdict says so.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import certspace
from .align import align as align_models
from .align import file_stamp
from .align import summary as align_summary
from .cache import memo
from .certify import Votes, noisy_votes
from .data import dataset_info
from .device import default_device
from .models import MODELS, build_model
from .schemes import adi, bansal, frontier, ipcert, weights
from .verdict import Verdict

FORMAT = "wmbook-key"
VERSION = 1
SCHEMES = ("adi", "frontier", "tartaglione", "bansal", "ipcert")
WHITE_BOX = ("tartaglione", "bansal", "ipcert")
"""The schemes that read the model file (and so align it to the owner's first)."""

TENSORS = {"adi": ("x", "y"), "frontier": ("x", "y"), "tartaglione": ("tensor", "index", "values"),
           "bansal": ("x", "y"), "ipcert": ("x", "y")}
"""The tensors of ``key.safetensors`` each scheme needs."""

SETTINGS = {"adi": {"classes", "alpha", "threshold"}, "frontier": {"alpha", "threshold"},
            "tartaglione": {"names", "alpha", "null", "null_alpha"},
            "bansal": {"sigma", "m", "threshold", "confidence", "radii", "space"},
            "ipcert": {"sigma", "m", "threshold", "alpha", "radii", "space"}}
"""The settings each scheme's manifest holds (all of them, no more)."""


class BadKey(ValueError):
    """A key folder that cannot be used (one line: what is wrong)."""


@dataclass
class Key:
    """One scheme's key: ``settings`` (JSON values), ``tensors`` (the secret) and, for the white-box
    schemes, ``owner`` (the owner's state dict)."""

    scheme: str
    dataset: str
    architecture: str
    settings: dict
    tensors: dict[str, torch.Tensor]
    owner: dict[str, torch.Tensor] | None = None
    num_classes: int | None = None
    notes: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.scheme not in SCHEMES:
            raise BadKey(f"scheme={self.scheme!r} is not known; accepted values: {list(SCHEMES)}")
        try:
            dataset_info(self.dataset)
        except ValueError as e:
            raise BadKey(str(e)) from None
        if self.architecture not in MODELS:
            raise BadKey(f"architecture={self.architecture!r} is not known; accepted values: {sorted(MODELS)}")
        missing = set(TENSORS[self.scheme]) - set(self.tensors)
        if missing:
            raise BadKey(f"{self.scheme} key: tensors {sorted(missing)} missing")
        if set(self.settings) != SETTINGS[self.scheme]:
            raise BadKey(f"{self.scheme} key: settings {sorted(self.settings)} where the scheme has "
                         f"{sorted(SETTINGS[self.scheme])}")
        if self.scheme in WHITE_BOX and self.owner is None:
            raise BadKey(f"{self.scheme} key: the owner's file is missing (a white-box key carries it for alignment)")

    def owner_model(self) -> nn.Module:
        """The owner's model (the architecture with the key's owner file)."""
        model = build_model(self.architecture, self.dataset, self.num_classes)
        model.load_state_dict(self.owner)
        return model.eval()

    def describe(self) -> str:
        n = len(self.tensors["values" if self.scheme == "tartaglione" else "y"])
        return f"{self.scheme} key: {self.architecture} on {self.dataset}, {n} points"


# ----------------------------------------------------------------------------- making keys
def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def _floats(xs) -> list[float]:
    return [float(v) for v in np.asarray(xs, dtype=float).ravel()]


def adi_key(trigger: adi.TriggerSet, *, dataset: str, architecture: str, classes: int | None = None,
            alpha: float = 0.05, threshold: float | None = None) -> Key:
    """Adi et al.'s key: the trigger set and its labels; k from ``threshold`` or ``alpha``."""
    classes = classes or dataset_info(dataset).classes
    return Key("adi", dataset, architecture, {"classes": int(classes), "alpha": float(alpha),
                                              "threshold": None if threshold is None else float(threshold)},
               {"x": trigger.x, "y": trigger.y})


def frontier_key(key: frontier.Key, *, dataset: str, architecture: str, alpha: float = 0.05,
                 threshold: float | None = None) -> Key:
    """Le Merrer et al.'s key: the key inputs and their labels; θ from ``alpha`` (Algorithm 2), or a
    stricter score ``threshold`` (a fraction of the key answered alike) calibrated on independent models."""
    return Key("frontier", dataset, architecture,
               {"alpha": float(alpha), "threshold": None if threshold is None else float(threshold)},
               {"x": key.x.float(), "y": key.y})


def calibrated_frontier_key(key: frontier.Key, independents: list[nn.Module], *, dataset: str,
                            architecture: str, alpha: float = 0.05, level: float = 0.05) -> Key:
    """Le Merrer et al.'s key with its threshold calibrated on ``independents`` (never-marked models
    of the owner's architecture): θ assumes a model that flips a coin on each key input, while
    independently trained models answer the false adversaries alike and some true ones too, so the
    key claims at the stricter of θ and the one-sided ``level`` prediction bound of their scores
    (:func:`wmlib.stats.prediction_bound`). Fewer than three independents: θ alone."""
    from .stats import prediction_bound
    plain = frontier_key(key, dataset=dataset, architecture=architecture, alpha=alpha)
    if len(independents) < 3:
        return plain
    scores = [verify(plain, m).score for m in independents]
    return frontier_key(key, dataset=dataset, architecture=architecture, alpha=alpha,
                        threshold=prediction_bound(scores, level)[0])


def tartaglione_key(key: weights.Key, values: torch.Tensor, owner: nn.Module, *, dataset: str, architecture: str,
                    null, alpha: float = weights.ALPHA, null_alpha: float = weights.ALIGNED_ALPHA) -> Key:
    """Tartaglione et al.'s key: the positions, the payload and the owner's file; ``null``: the
    aligned correlations of at least three independent models (:func:`wmlib.schemes.weights.extract`)."""
    null = _floats(null)
    try:
        weights.calibrated_threshold(null, null_alpha)    # refuses a null it cannot calibrate on
    except ValueError as e:
        raise BadKey(f"tartaglione key: {e}") from None
    names = list(dict.fromkeys(key.names))
    which = torch.tensor([names.index(n) for n in key.names], dtype=torch.int64)
    return Key("tartaglione", dataset, architecture,
               {"names": names, "alpha": float(alpha), "null": null, "null_alpha": float(null_alpha)},
               {"tensor": which, "index": torch.tensor(key.index, dtype=torch.int64),
                "values": values.detach().float().cpu()}, _state(owner))


def bansal_key(trigger: adi.TriggerSet, owner: nn.Module, *, dataset: str, architecture: str, sigma: float, m: int,
               threshold: float, radii, confidence: float = 0.99, space: str = "folded") -> Key:
    """Bansal et al.'s key: the trigger set, σ, m, the threshold, the radius grid and the owner's file."""
    certspace.check_space(space)
    return Key("bansal", dataset, architecture,
               {"sigma": float(sigma), "m": int(m), "threshold": float(threshold), "confidence": float(confidence),
                "radii": _floats(radii), "space": space}, {"x": trigger.x, "y": trigger.y}, _state(owner))


def ipcert_key(ip: adi.TriggerSet, owner: nn.Module, *, dataset: str, architecture: str, sigma: float, m: int,
               threshold: float, radii, alpha: float = 0.001, space: str = "folded") -> Key:
    """IPCert's key: the IP set (watermark or fingerprints), σ, m, the MR threshold, the radius grid,
    α and the owner's file."""
    certspace.check_space(space)
    return Key("ipcert", dataset, architecture,
               {"sigma": float(sigma), "m": int(m), "threshold": float(threshold), "alpha": float(alpha),
                "radii": _floats(radii), "space": space}, {"x": ip.x, "y": ip.y}, _state(owner))


# ----------------------------------------------------------------------------- files
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _digest(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write(key: Key, folder) -> Path:
    """Write ``key`` to ``folder`` (replaced whole if it exists; never half written)."""
    from safetensors.torch import save_file
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        files = {"key.safetensors": {k: v.contiguous() for k, v in key.tensors.items()}}
        if key.owner is not None:
            files["owner.safetensors"] = key.owner
        for name, tensors in files.items():
            save_file(tensors, str(tmp / name))
        manifest = {"format": FORMAT, "version": VERSION, "scheme": key.scheme, "dataset": key.dataset,
                    "architecture": key.architecture, "num_classes": key.num_classes, "settings": key.settings,
                    "notes": key.notes, "files": {name: _sha256(tmp / name) for name in files}}
        manifest["digest"] = _digest(manifest)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
        os.chmod(tmp, 0o755)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def read(folder) -> Key:
    """The key in ``folder``, or :class:`BadKey` naming what is wrong (no manifest, another format or
    version, a digest that does not match, a file missing or changed)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    folder = Path(folder)
    path = folder / "manifest.json"
    if not path.is_file():
        raise BadKey(f"{folder}: no manifest.json (not a key folder)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadKey(f"{path}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BadKey(f"{path}: not a {FORMAT} manifest")
    if manifest.get("version") != VERSION:
        raise BadKey(f"{path}: version {manifest.get('version')!r}; this wmlib reads version {VERSION}")
    if manifest.get("digest") != _digest(manifest):
        raise BadKey(f"{path}: the digest does not match the manifest's contents (edited or damaged)")
    tensors = {}
    for name, sha in manifest.get("files", {}).items():
        if name not in ("key.safetensors", "owner.safetensors"):
            raise BadKey(f"{path}: names a file {name!r} a key does not have")
        f = folder / name
        if not f.is_file():
            raise BadKey(f"{folder}: {name} is missing")
        if _sha256(f) != sha:
            raise BadKey(f"{f}: its digest does not match the manifest (edited or damaged)")
        try:
            tensors[name] = load_file(str(f))
        except (SafetensorError, OSError) as e:
            raise BadKey(f"{f}: not readable ({e})") from None
    if "key.safetensors" not in tensors:
        raise BadKey(f"{path}: lists no key.safetensors")
    try:
        return Key(manifest["scheme"], manifest["dataset"], manifest["architecture"], manifest["settings"],
                   tensors["key.safetensors"], tensors.get("owner.safetensors"), manifest.get("num_classes"),
                   manifest.get("notes", {}))
    except KeyError as e:
        raise BadKey(f"{path}: no {e.args[0]!r}") from None


# ----------------------------------------------------------------------------- verification
def _aligned(key: Key, model: nn.Module) -> tuple[nn.Module, str]:
    try:
        out, report = align_models(model, key.owner_model(), measure=False)
    except ValueError as e:
        return model, f"not aligned ({e})"
    return out, align_summary(report)


def _trigger(key: Key) -> adi.TriggerSet:
    return adi.TriggerSet(key.tensors["x"], key.tensors["y"].long(), "key")


def _votes(folded: nn.Module, trig: adi.TriggerSet, s: dict, seed: int, progress: bool) -> Votes:
    """:func:`~wmlib.certify.noisy_votes` of the (folded, aligned) suspect on the trigger set, cached by
    the suspect's content (:func:`wmlib.align.file_stamp`), the trigger set, σ, m, the seed and the device: the
    votes are a deterministic function of these, so a rerun reads the verdict without a forward pass."""
    vkey = dict(kind="verify-votes", model=file_stamp(folded), trigger=trig.digest, sigma=s["sigma"],
                m=s["m"], seed=seed, space=certspace.space_key(s["space"]), device=default_device().type)

    def compute():
        v = noisy_votes(folded, trig.x, trig.y, sigma=s["sigma"], m=s["m"], seed=seed, progress=progress)
        return {"counts": v.counts.tolist(), "draw_match": v.draw_match.tolist()}
    rec = memo("votes", vkey, compute)
    return Votes(np.asarray(rec["counts"], dtype=np.int64), np.asarray(rec["draw_match"]), s["sigma"], s["m"], seed)


def verify(key: Key, model: nn.Module, *, align: bool = True, seed: int = 0, progress: bool = False) -> Verdict:
    """The scheme's verdict on ``model`` (module docstring). ``align``: for the white-box schemes,
    align the suspect to the owner's file first (False: the paper's reading of the file as it is).
    ``seed``: the noise draws of the smoothed schemes."""
    s, model = key.settings, model.eval()
    if key.scheme == "adi":
        return adi.verify(model, _trigger(key), s["classes"], threshold=s["threshold"], alpha=s["alpha"])
    if key.scheme == "frontier":
        k = frontier.Key(key.tensors["x"], key.tensors["y"].long(), torch.zeros(0, dtype=torch.bool),
                         torch.zeros(0, dtype=torch.long))
        v = frontier.extract(model, k, s["alpha"])
        return v if s["threshold"] is None else replace(v, threshold=max(v.threshold, s["threshold"]))
    if key.scheme == "tartaglione":
        wkey = weights.Key(tuple(s["names"][i] for i in key.tensors["tensor"].tolist()),
                           tuple(key.tensors["index"].tolist()))
        if not align:
            return weights.extract(model, wkey, key.tensors["values"], s["alpha"])
        return weights.extract(model, wkey, key.tensors["values"], s["alpha"], owner=key.owner_model(),
                               null=s["null"], null_alpha=s["null_alpha"])
    how = None
    if align:
        model, how = _aligned(key, model)
    trig = _trigger(key)
    votes = _votes(certspace.folded(model, s["space"]), trig, s, seed, progress)
    if key.scheme == "bansal":
        v = bansal.verify(votes.draw_match, sigma=s["sigma"], threshold=s["threshold"], radii=s["radii"],
                          confidence=s["confidence"], n=len(trig))
    else:
        v = ipcert.verify(votes, trig.y.numpy(), threshold=s["threshold"], radii=s["radii"], alpha=s["alpha"])
    return Verdict(v.scheme, v.score, v.threshold, v.p_value, v.certified_radius, v.n, how)


__all__ = ["FORMAT", "VERSION", "SCHEMES", "WHITE_BOX", "BadKey", "Key", "adi_key", "frontier_key",
           "tartaglione_key", "bansal_key", "ipcert_key", "write", "read", "verify"]
