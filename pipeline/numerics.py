"""The one choice of numerics: what training runs in, and what evaluation serves models with."""

from __future__ import annotations

import torch


def mixed_precision() -> str:
    """"fp32" on the CPU; on CUDA "bf16" where the GPU supports it, else "fp16"."""
    if not torch.cuda.is_available():
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
