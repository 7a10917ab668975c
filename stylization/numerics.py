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
