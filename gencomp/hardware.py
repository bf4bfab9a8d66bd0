"""What this machine's arithmetic units can do, for the settings whose fastest choice depends on it."""

from __future__ import annotations

import torch


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products in hardware (AMX or AVX512-BF16), where bf16 autocast pays;
    elsewhere oneDNN emulates it, several times slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def has_native_bf16(device: str | torch.device) -> bool:
    """Whether bf16 autocast on ``device`` (cpu or cuda) runs on bf16 hardware rather than an emulation."""
    if torch.device(device).type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return cpu_has_native_bf16()


def search_precision(setting: str, device: str | torch.device) -> str:
    """The arithmetic of an encoder's search (the codecs' ``precision`` setting): ``auto`` is bfloat16 where
    ``device`` computes it in hardware and float32 elsewhere; ``float32`` and ``bfloat16`` are themselves."""
    if setting == "auto":
        return "bfloat16" if has_native_bf16(device) else "float32"
    return setting
