"""On-disk cache of expensive results (trained models and their records), keyed by configuration.

Each entry is ``<kind>/<hash>.pt`` (a ``state_dict``, read back with ``weights_only=True``) and
``<kind>/<hash>.json`` (the full key plus whatever the producer recorded: metrics, histories,
seconds taken). Both are written atomically (temporary file + ``os.replace``); the ``.json`` is
written last, so an entry without it is incomplete and ignored. Jobs running at once (a process
pool, a cluster) share the cache: an entry is made under an exclusive lock (``locks/<kind>-<hash>.lock``), so
two jobs asking for the same model train it once (the second waits and loads it), and a job killed
while writing leaves at most a temporary file, which the next job to take the lock removes.
"""
from __future__ import annotations

import hashlib
import json
from typing import Callable

import torch

from .device import precision
from .files import atomic_save, atomic_write_json, cache_dir, entry_lock


KEY_VERSION = 2
"""Bumped whenever what a cached result means changes; part of every hash (one version for all)."""


def key_hash(key: dict) -> str:
    """A stable 16-hex-digit hash of a JSON-able configuration, :data:`KEY_VERSION` and the
    numeric precision results are computed in on this machine (:func:`wmlib.device.precision`)."""
    blob = json.dumps({"version": KEY_VERSION, "precision": precision(), "key": key}, sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def is_cached(kind: str, key: dict, tensors: bool = True) -> bool:
    """Whether the entry of ``key`` is complete (its ``.json``, written last, and its ``.pt``)."""
    h = key_hash(key)
    js = cache_dir() / kind / f"{h}.json"
    return js.exists() and (not tensors or js.with_suffix(".pt").exists())


def load_or_create(kind: str, key: dict, build: Callable[[], torch.nn.Module],
                   create: Callable[[], tuple[torch.nn.Module, dict]]):
    """Return ``(model, record)`` from the cache, or ``create()`` them and store them.

    ``build()`` makes an untrained model of the right shape to load cached weights into;
    ``create()`` returns the trained model and a JSON-able record. ``record['cache_hit']`` says
    which path was taken (it is not stored).
    """
    h = key_hash(key)
    pt, js = cache_dir() / kind / f"{h}.pt", cache_dir() / kind / f"{h}.json"
    with entry_lock(cache_dir() / kind, h):       # a second job asking for it waits, then loads it
        if pt.exists() and js.exists():
            model = build()
            model.load_state_dict(torch.load(pt, map_location="cpu", weights_only=True))
            record = json.loads(js.read_text())
            record["cache_hit"] = True
            return model, record
        js.unlink(missing_ok=True)                # never a record beside weights being rewritten
        model, record = create()
        record = dict(record, key=key, hash=h)
        atomic_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, pt)
        atomic_write_json(record, js)
    return model, dict(record, cache_hit=False)


def memo(kind: str, key: dict, compute: Callable[[], object]):
    """A JSON-able result of ``compute()``, cached under ``<kind>/<hash>.json`` by ``key``."""
    h = key_hash(key)
    path = cache_dir() / kind / f"{h}.json"
    if path.exists():
        return json.loads(path.read_text())["value"]
    with entry_lock(path.parent, h):
        if path.exists():
            return json.loads(path.read_text())["value"]
        value = compute()
        atomic_write_json({"key": key, "value": value}, path)
    return value


def memo_tensors(kind: str, key: dict, compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """A dict of tensors from ``compute()``, cached under ``<kind>/<hash>.pt`` (read back with
    ``weights_only=True``) with its key in ``<kind>/<hash>.json``, written last."""
    h = key_hash(key)
    pt, js = cache_dir() / kind / f"{h}.pt", cache_dir() / kind / f"{h}.json"
    if pt.exists() and js.exists():
        return torch.load(pt, map_location="cpu", weights_only=True)
    with entry_lock(pt.parent, h):
        if pt.exists() and js.exists():
            return torch.load(pt, map_location="cpu", weights_only=True)
        js.unlink(missing_ok=True)
        value = compute()
        if not isinstance(value, dict) or not all(isinstance(v, torch.Tensor) for v in value.values()):
            raise TypeError(f"memo_tensors({kind!r}) needs a dict of tensors from compute(); got {type(value)}")
        value = {k: v.detach().cpu() for k, v in value.items()}
        atomic_save(value, pt)
        atomic_write_json({"key": key}, js)
    return value
