"""Numerical facts about the machine that the models and the engine both ask about.

Layer 0 (imports nothing from the project), so model files can choose a precision without
importing the training engine.
"""

from __future__ import annotations

import torch


def native_bf16(device: torch.device) -> bool:
    """True on CUDA and on CPUs whose oneDNN has native bf16 kernels (AVX512-BF16, AMX).

    Elsewhere bf16 autocast on the CPU is emulated and slower than fp32, so ``"auto"``
    precisions fall back to fp32 there.
    """
    if device.type == "cuda":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN, or an older torch
        return False


PRECISIONS = ("auto", "fp32", "bf16")


def inference_autocast(precision: str, device: torch.device):
    """The context an inference precision asks for: bf16 autocast for ``"bf16"``, and for
    ``"auto"`` where :func:`native_bf16` (CUDA, CPUs with native bf16 kernels); a null context
    for ``"fp32"`` and for ``"auto"`` elsewhere."""
    import contextlib

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    use = precision == "bf16" or (precision == "auto" and native_bf16(device))
    return torch.autocast(device.type, dtype=torch.bfloat16) if use else contextlib.nullcontext()
