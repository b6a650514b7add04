"""Losses on augmented views: ``forward(emb (B, D), ref_emb (B, D), ...)`` where row ``i`` of every
view is the same item, so no labels are passed.

:class:`ViewsLoss` marks such losses (``views_input = True``) for code that builds losses by name and
feeds them batches, and :func:`check_views` validates the views with errors that say what was
expected (labels passed in place of a view are named as such).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from torch import Tensor, nn

from dmlkit.core.checks import check_embeddings


class ViewsLoss(nn.Module):
    """Base class of losses that take views of the same items instead of labels."""

    views_input: ClassVar[bool] = True


def check_views(views: Sequence[object], names: Sequence[str]) -> list[Tensor]:
    """Validate views: each a finite floating-point ``(B, D)`` matrix, all of one shape.

    ``names`` names each view in the errors. An integer tensor is refused with a hint that the
    loss takes a second view, not labels.
    """
    checked = []
    for view, name in zip(views, names, strict=True):
        if isinstance(view, Tensor) and not view.is_floating_point() and view.ndim == 1:
            raise TypeError(
                f"{name}: expected the embeddings (B, D) of another view of the same items, got "
                f"a {view.dtype} tensor of shape {tuple(view.shape)} (labels?); this loss takes "
                "views, not labels"
            )
        checked.append(check_embeddings(view, name))
    shape = tuple(checked[0].shape)
    for view, name in zip(checked[1:], names[1:], strict=True):
        if tuple(view.shape) != shape:
            raise ValueError(
                f"{name}: expected the shape of {names[0]} {shape} (row i of every view is item "
                f"i), got {tuple(view.shape)}"
            )
    return checked
