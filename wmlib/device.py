"""Where tensors live and how matmuls run: CUDA when there is a GPU, else the CPU."""
from __future__ import annotations

import contextlib
import os

import torch


def default_device() -> torch.device:
    """``cuda`` when available (``WMLIB_DEVICE`` overrides), else ``cpu``."""
    env = os.environ.get("WMLIB_DEVICE")
    if env:
        return torch.device(env)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def bf16_fast(device: torch.device) -> bool:
    """Whether bf16 autocast speeds this device up: CUDA, or a CPU with AVX-512 (BF16/AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return torch.backends.cpu.get_cpu_capability() in ("AVX512", "AVX512_BF16", "AMX")
    return False


def autocast(device: torch.device):
    """bf16 autocast where it is fast, else a no-op."""
    if not bf16_fast(device):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
