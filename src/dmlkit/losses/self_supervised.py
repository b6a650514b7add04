"""Self-supervised use of any labelled loss: views of the same items become positives.

Given ``V >= 2`` views ``(B, D)`` of ``B`` items (row ``i`` of every view is item ``i``), the labels
are the item indices ``0..B-1``:

- ``symmetric=True`` (default): ``loss(cat(views) (V B, D), cat([0..B-1] * V))``, the views pooled
  into one batch that is its own reference (every view is an anchor);
- ``symmetric=False``: ``loss(views[0], 0..B-1, ref_emb=cat(views[1:]), ref_labels=...)``, the
  first view as anchors against the others.

pytorch-metric-learning's ``SelfSupervisedLoss`` does the same for two views; this one takes any
number. Memory: that of the wrapped loss on ``V B`` rows.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn

from dmlkit.losses.registry import LOSSES, create
from dmlkit.losses.views import ViewsLoss, check_views


def _takes(loss: nn.Module, *names: str) -> bool:
    params = inspect.signature(loss.forward).parameters
    return all(name in params for name in names)


class SelfSupervisedLoss(ViewsLoss):
    """``forward(emb (B, D), ref_emb (B, D), *more_views (B, D)) -> 0-dim loss`` of the wrapped
    labelled ``loss`` with item indices as labels (see the module docstring).

    Example: two augmented views of 8 items under the multi-similarity loss; the result is the
    wrapped loss on the pooled views labelled by item.

    >>> import torch
    >>> from dmlkit.losses import SelfSupervisedLoss, create
    >>> gen = torch.Generator().manual_seed(0)
    >>> view_a, view_b = torch.randn(8, 16, generator=gen), torch.randn(8, 16, generator=gen)
    >>> loss_fn = SelfSupervisedLoss(create("ms"))
    >>> loss = loss_fn(view_a, view_b)
    >>> loss.shape, bool(loss > 0)
    (torch.Size([]), True)
    >>> items = torch.arange(8)
    >>> pooled = create("ms")(torch.cat([view_a, view_b]), torch.cat([items, items]))
    >>> torch.equal(loss, pooled)
    True
    """

    def __init__(self, loss: nn.Module, symmetric: bool = True) -> None:
        super().__init__()
        if not isinstance(loss, nn.Module):
            raise TypeError(f"loss: expected an nn.Module loss, got {type(loss).__name__}")
        if getattr(loss, "views_input", False):
            raise TypeError(
                f"loss: expected a loss that takes labels, got {type(loss).__name__}, which "
                "already takes views"
            )
        if not symmetric and not _takes(loss, "ref_emb", "ref_labels"):
            raise TypeError(
                f"loss: expected forward(emb, labels, ref_emb, ref_labels) for symmetric=False, "
                f"got {type(loss).__name__} without ref_emb/ref_labels"
            )
        self.loss = loss
        self.symmetric = bool(symmetric)

    def forward(self, emb: Tensor, ref_emb: Tensor, *more_views: Tensor) -> Tensor:
        names = ["emb", "ref_emb"] + [f"more_views[{k}]" for k in range(len(more_views))]
        views = check_views([emb, ref_emb, *more_views], names)
        items = torch.arange(emb.shape[0], device=emb.device)
        if self.symmetric:
            result: Tensor = self.loss(torch.cat(views), items.repeat(len(views)))
            return result
        refs = views[1:]
        result = self.loss(
            views[0], items, ref_emb=torch.cat(refs), ref_labels=items.repeat(len(refs))
        )
        return result

    def extra_repr(self) -> str:
        return f"symmetric={self.symmetric}"


@LOSSES.register(
    "self_supervised",
    family="self-supervised",
    source="pytorch-metric-learning SelfSupervisedLoss: views of an item share its label",
)
def self_supervised(
    loss: str | nn.Module = "contrastive",
    symmetric: bool = True,
    loss_options: dict[str, Any] | None = None,
) -> SelfSupervisedLoss:
    """Wrap ``loss`` (a registered name built with ``loss_options``, or a module) so that it takes
    views instead of labels (see :class:`SelfSupervisedLoss`)."""
    if isinstance(loss, str):
        loss = create(loss, **(loss_options or {}))
    elif loss_options:
        raise ValueError("loss_options: expected None when loss is a module, got options")
    return SelfSupervisedLoss(loss, symmetric)
