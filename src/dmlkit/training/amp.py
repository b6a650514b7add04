"""Mixed precision: the autocast context and the gradient scaler of a precision setting.

``"none"``: float32, autocast and scaler disabled. ``"bf16"``: ``torch.autocast`` with bfloat16,
no scaler (bfloat16 has float32's exponent range). ``"fp16"``: autocast with float16 and a
``GradScaler`` that scales the loss before backward and unscales before clipping and stepping.
Losses run outside autocast on float32 embeddings, and learnable loss parameters stay float32.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch

PRECISIONS = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _dtype(amp: str) -> torch.dtype | None:
    if amp not in PRECISIONS:
        raise ValueError(f"train.amp: expected one of {', '.join(PRECISIONS)}, got {amp!r}")
    return PRECISIONS[amp]


def autocast(device: torch.device, amp: str) -> AbstractContextManager[object]:
    """``torch.autocast`` for ``amp`` on ``device`` (disabled for ``"none"``)."""
    dtype = _dtype(amp)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def grad_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler:
    """A gradient scaler, enabled for ``"fp16"`` only."""
    return torch.amp.GradScaler(device.type, enabled=_dtype(amp) is torch.float16)
