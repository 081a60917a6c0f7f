"""Where tensors live and how matmuls run: CUDA when there is a GPU, else the CPU; bf16 autocast
only where it is measured to be faster.

Measured on one AVX-512 (BF16, no AMX) CPU of this project: training the 0.29 M CIFAR CNN took
26 ms per image under bf16 autocast against 11 ms in fp32, and the ResNet-18 183 against 58 —
so "AVX-512 BF16 means bf16 is fast" is not a rule. On the CPU the choice is made once per machine
by timing both (:func:`precision`), kept in the cache, and named in every results record and cache
key (a model trained in bf16 is not the model trained in fp32).
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import time
from pathlib import Path

import torch

PRECISIONS = ("bf16", "fp32")


def default_device() -> torch.device:
    """``cuda`` when available (``WMLIB_DEVICE`` overrides), else ``cpu``."""
    env = os.environ.get("WMLIB_DEVICE")
    if env:
        return torch.device(env)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train_step_seconds(dtype: torch.dtype | None, steps: int = 3, model: str = "cifar_cnn",
                        dataset: str = "cifar10", device: torch.device | None = None, batch: int = 100) -> float:
    """Seconds per training step (SGD, ``batch`` random images) of ``model`` on ``dataset``-shaped
    input, laid out as training lays it out, the median of ``steps`` after one warm-up step."""
    from torch import nn

    from .data import dataset_info
    from .models import build_model, memory_format
    info, dev = dataset_info(dataset), torch.device(device or "cpu")
    torch.manual_seed(0)
    net = build_model(model, dataset).train()
    fmt = memory_format(net)
    net = net.to(dev, memory_format=fmt) if fmt else net.to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(batch, info.channels, info.size, info.size, device=dev)
    x = x.contiguous(memory_format=fmt) if fmt else x
    y = torch.randint(0, info.classes, (batch,), device=dev)
    times = []
    with torch.enable_grad():            # the first caller may be inside no_grad (e.g. predict)
        for _ in range(steps + 1):
            t0 = time.perf_counter()
            ctx = (torch.autocast(dev.type, dtype=dtype) if dtype is not None
                   else contextlib.nullcontext())
            with ctx:
                loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return sorted(times[1:])[len(times[1:]) // 2]


@functools.cache
def precision(device_type: str | None = None) -> str:
    """``bf16`` (autocast) or ``fp32`` for ``device_type`` (default: the default device).

    ``WMLIB_PRECISION`` overrides. CUDA: bf16 where supported. CPU: bf16 only if a timed training
    step is at least 1.2× faster than in fp32 on this machine; the verdict is kept in
    ``$WMLIB_CACHE/precision.json`` per CPU capability and torch version, so it does not flip
    between runs."""
    env = os.environ.get("WMLIB_PRECISION")
    if env:
        if env not in PRECISIONS:
            raise ValueError(f"WMLIB_PRECISION={env!r} is not known; accepted values: {list(PRECISIONS)}")
        return env
    device_type = device_type or default_device().type
    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device_type != "cpu":
        return "fp32"
    from .files import atomic_write_json, cache_dir
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in ("AVX512", "AVX512_BF16", "AMX"):
        return "fp32"
    path = cache_dir() / "precision.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    tag = f"{capability}/torch {torch.__version__}"
    was = known.get(tag, {}).get("busy", 1.0)          # None: the load could not be read then
    busy = busy_fraction() if tag not in known or (was is not None and was > BUSY) else None
    if tag not in known or (busy is not None and busy <= BUSY):
        # first time here, or the last timing ran under load (bf16 then times slower than fp32:
        # measured 0.39 against 0.17 s per step, idle 0.096 against 0.17) and the machine is idle now
        fp32, bf16 = train_step_seconds(None), train_step_seconds(torch.bfloat16)
        known[tag] = {"precision": "bf16" if bf16 * 1.2 < fp32 else "fp32",
                      "seconds per step": {"fp32": fp32, "bf16": bf16}, "busy": busy}
        atomic_write_json(known, path)
    return known[tag]["precision"]


BUSY = 0.25
"""Above this fraction of the CPUs busy with other work, a precision timing is taken as done under
load: it is kept, and replaced by the next timing made on an idle machine."""


def busy_fraction(seconds: float = 0.3) -> float | None:
    """The fraction of the machine's CPU time spent outside idle over ``seconds`` while this process
    sleeps (so: other processes' work), from ``/proc/stat``; None where that cannot be read."""
    def sample():
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields[:8])          # idle + iowait, total
    try:
        idle0, total0 = sample()
        time.sleep(seconds)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def autocast(device: torch.device):
    """bf16 autocast where :func:`precision` chose it, else a no-op."""
    if precision(device.type) != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
