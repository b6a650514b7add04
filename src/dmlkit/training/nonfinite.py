"""Detection of non-finite training steps for the ``train.nonfinite`` policy.

After the backward pass of a step the trainer asks :func:`nonfinite_what` whether the loss (0-dim)
or any parameter gradient holds a NaN or an infinity. ``train.nonfinite: stop`` then writes
``last.pt`` (the state before the step) and raises :class:`NonFiniteError` naming the step and the
batch's training items; ``skip`` drops the step's update, counts it (``nonfinite_skipped`` in
metrics.json) and logs a ``{"kind": "nonfinite"}`` record with a warning. Under an fp16 gradient
scaler the gradients are left to the scaler (an overflow there is expected: it skips the step and
lowers the scale), only the loss is checked. Cost: one reduction per gradient tensor.

The trainer calls :func:`check_step` after each backward pass and :func:`handle_nonfinite`
directly for non-finite model outputs (those always stop: without finite embeddings there is no
loss whose step could be skipped).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from dmlkit.training.trainer import Trainer


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


def check_step(trainer: Trainer, loss: Tensor) -> bool:
    """Apply ``train.nonfinite`` after the backward pass of ``loss`` (0-dim): ``False`` when the
    loss and the gradients are finite, else :func:`handle_nonfinite` under the run's policy."""
    params = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    what = nonfinite_what(loss, params, check_gradients=not trainer.scaler.is_enabled())
    return what is not None and handle_nonfinite(trainer, what, trainer.config.train.nonfinite)


def handle_nonfinite(trainer: Trainer, what: str, policy: str) -> bool:
    """Log the non-finite ``what`` of the trainer's current step with its batch items, then
    ``skip`` (drop the gradients, count, warn, return ``True``) or ``stop`` (write ``last.pt``,
    raise :class:`NonFiniteError`)."""
    items = batch_items(trainer)
    where = (
        f"non-finite {what} at step {trainer.step + 1} (epoch {trainer.epoch}, batch "
        f"{trainer.batch_in_epoch} of the epoch; training items {items})"
    )
    record = {"kind": "nonfinite", "step": trainer.step + 1, "epoch": trainer.epoch}
    trainer.log({**record, "what": what, "items": items, "policy": policy})
    if policy == "skip":
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.nonfinite_skipped += 1
        warnings.warn(
            f"{where}: update skipped (train.nonfinite: skip), "
            f"{trainer.nonfinite_skipped} skipped so far",
            RuntimeWarning,
            stacklevel=3,
        )
        return True
    trainer.save_last()
    raise NonFiniteError(
        f"{where}. Stopped (train.nonfinite: stop); "
        f"{trainer.run_dir / 'checkpoints' / 'last.pt'} holds the state before this step "
        "(resume with --resume, or set train.nonfinite: skip to drop such steps)"
    )


def batch_items(trainer: Trainer) -> list[int]:
    """Training-set item indices of the trainer's current batch, replayed from its seeded sampler
    at the trainer's position (the sampler itself is left alone)."""
    replay = copy.deepcopy(trainer.sampler)
    replay.load_state_dict(trainer.sampler_state())
    return [int(i) for i in next(iter(replay))]
