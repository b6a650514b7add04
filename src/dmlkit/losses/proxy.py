"""``Proxies``: learnable class representatives, several per class, for proxy losses and CCP.

``weight (C K, D)`` float32; row ``c K + k`` is proxy ``k`` of class ``c``, so
``weight.view(C, K, D)`` is the per-class view and ``labels = [0]*K + [1]*K + ...`` (a buffer
``(C K,)`` int64, derived, not saved). Any sample-to-proxy pair loss of the pair engine is then

    loss(emb, labels, ref_emb=proxies(), ref_labels=proxies.labels)

The weight stays float32 under ``torch.autocast`` (the losses compute similarities in float32
and never cast the proxies) and moves with ``.to(device)``. ``optimizer_group()`` gives the
trainer a parameter group of its own: ``lr`` (``None``: the optimizer's ``loss_lr``) and
``weight_decay`` (default 0). Initialisation: i.i.d. normal entries with standard deviation
``1/sqrt(D)`` (rows of norm about 1), from ``generator`` or the global RNG. Memory: O(C K D).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from dmlkit.core.checks import check_positive
from dmlkit.core.options import options_factory
from dmlkit.losses.registry import LOSSES

# what a loss with per-class parameters takes from the run (BuildContext fields)
PROXY_CONTEXT = ("num_classes", "embedding_dim")


@dataclass(frozen=True)
class ProxyOptions:
    """The options every loss with class proxies or weights takes: the proxies' own optimizer
    group, learning rate ``proxy_lr`` (``None``: the loss's ``optimizer.loss_lr``) and
    ``proxy_weight_decay``. Registry factories take them through
    :func:`~dmlkit.core.options.options_factory`."""

    proxy_lr: float | None = None
    proxy_weight_decay: float = 0.0


def register_proxy_loss(
    name: str, *, family: str, source: str
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a factory of a loss with class proxies (or weights) as ``name``: it takes the
    run's :data:`PROXY_CONTEXT` and, after its own options, the :class:`ProxyOptions`
    (``factory(num_classes, embedding_dim, ..., **proxy)``)."""

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        with_options = options_factory(ProxyOptions)(factory)
        return LOSSES.register(name, family=family, source=source, context=PROXY_CONTEXT)(
            with_options
        )

    return deco


class Proxies(nn.Module):
    """``per_class`` proxies of dimension ``dim`` for each of ``num_classes`` classes."""

    labels: Tensor

    def __init__(
        self,
        num_classes: int,
        per_class: int = 1,
        dim: int = 128,
        lr: float | None = None,
        weight_decay: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("num_classes", num_classes), ("per_class", per_class), ("dim", dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if lr is not None:
            check_positive(lr, "lr")
        self.num_classes = num_classes
        self.per_class = per_class
        self.dim = dim
        self.lr = lr
        self.weight_decay = check_positive(weight_decay, "weight_decay", allow_zero=True)
        init = torch.randn(num_classes * per_class, dim, generator=generator) / dim**0.5
        self.weight = nn.Parameter(init)
        labels = torch.arange(num_classes).repeat_interleave(per_class)
        self.register_buffer("labels", labels, persistent=False)

    def forward(self) -> Tensor:
        """The proxies ``(C K, D)`` float32."""
        return self.weight

    def per_class_view(self) -> Tensor:
        """``(C, K, D)`` view of the weight (shares storage)."""
        return self.weight.view(self.num_classes, self.per_class, self.dim)

    @torch.no_grad()
    def assign(self, values: Tensor) -> None:
        """Set the proxies to ``values`` ``(C, K, D)`` or ``(C K, D)`` exactly (no gradient)."""
        expected = (self.num_classes, self.per_class, self.dim)
        if tuple(values.shape) not in (expected, (expected[0] * expected[1], expected[2])):
            raise ValueError(
                f"values: expected shape {expected} or {(expected[0] * expected[1], self.dim)}, "
                f"got {tuple(values.shape)}"
            )
        if not torch.isfinite(values).all():
            raise ValueError("values: expected finite proxies, got NaN or inf")
        self.weight.copy_(values.reshape(self.weight.shape))

    def optimizer_group(self) -> dict[str, Any]:
        """The proxies' own optimizer parameter group (module docstring)."""
        return {
            "name": "proxies",
            "params": [self.weight],
            "lr": self.lr,
            "weight_decay": self.weight_decay,
        }

    def check_labels(self, labels: Tensor) -> Tensor:
        """``labels (B,)`` on the proxies' device, checked to be class ids in ``0..C-1``."""
        if labels.ndim != 1:
            raise ValueError(
                f"labels: expected class ids of shape (B,) for proxy losses, got shape "
                f"{tuple(labels.shape)}"
            )
        labels = labels.to(self.weight.device)
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(
                f"labels: expected class ids in 0..{self.num_classes - 1} (num_classes="
                f"{self.num_classes}), got {int(labels.min())}..{int(labels.max())}"
            )
        return labels

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, per_class={self.per_class}, dim={self.dim}"
