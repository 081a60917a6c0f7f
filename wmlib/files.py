"""Files that are never half written, where the cache lives, and the lock of one cache entry.

The bottom of wmlib: it imports nothing of wmlib, so the data, the models and the precision choice
can write to the cache folder without importing the cache's keys (which depend on the precision).
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import torch


def cache_dir() -> Path:
    """``$WMLIB_CACHE`` or ``~/.cache/wmlib``."""
    return Path(os.environ.get("WMLIB_CACHE", Path.home() / ".cache" / "wmlib")).expanduser()


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` that never leaves a half-written file at ``path``."""
    _atomic_write(Path(path), lambda tmp: torch.save(obj, tmp))


def atomic_write_json(obj, path: Path) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True, default=str)
    _atomic_write(Path(path), write)


@contextmanager
def entry_lock(folder: Path, h: str):
    """Hold the exclusive lock of entry ``h`` in ``folder`` (``fcntl.flock``: released by the
    kernel when its holder dies); under it, remove what a killed writer of ``h`` left behind."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:                     # no flock (Windows): one job at a time is on the user
        fcntl = None
    locks = cache_dir() / "locks"          # beside the entries, never among them
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{folder.name}-{h}.lock", "a") as f:
        if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            for stale in folder.glob(f".{h}.*.tmp"):
                stale.unlink(missing_ok=True)
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(f, fcntl.LOCK_UN)
