"""Detection of non-finite training steps for the ``train.nonfinite`` policy.

After the backward pass of a step the trainer asks :func:`nonfinite_what` whether the loss (0-dim)
or any parameter gradient holds a NaN or an infinity. ``train.nonfinite: stop`` then writes
``last.pt`` (the state before the step) and raises :class:`NonFiniteError` naming the step and the
batch's training items; ``skip`` drops the step's update, counts it (``nonfinite_skipped`` in
metrics.json) and logs a ``{"kind": "nonfinite"}`` record with a warning. Under an fp16 gradient
scaler the gradients are left to the scaler (an overflow there is expected: it skips the step and
lowers the scale), only the loss is checked. Cost: one reduction per gradient tensor.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


class NonFiniteError(FloatingPointError):
    """A training step produced a non-finite loss or gradient under ``train.nonfinite: stop``."""


def nonfinite_what(
    loss: Tensor, params: Iterable[Tensor], check_gradients: bool = True
) -> str | None:
    """``"loss"`` when ``loss`` is not finite, ``"gradient (n of m parameter tensors)"`` when
    ``check_gradients`` and ``n`` of the ``m`` gradients hold a non-finite entry, else ``None``."""
    if not bool(torch.isfinite(loss.detach()).all()):
        return "loss"
    if not check_gradients:
        return None
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return None
    finite = torch.stack([torch.isfinite(g).all() for g in grads])
    bad = int((~finite).sum())
    return f"gradient ({bad} of {len(grads)} parameter tensors)" if bad else None
