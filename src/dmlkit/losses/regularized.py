"""``Regularized(loss, [(regularizer, weight), ...])``: a loss plus weighted regularizers.

    L = loss(emb, labels, ...) + Σ_r weight_r R_r(X_r)

where ``X_r`` is the batch's embeddings ``(B, D)`` (raw, before any normalisation the loss
does) for a regularizer with ``target="embeddings"``, and the loss's class weights / proxies
``(C K, D)`` for one with ``target="weights"`` (the loss must hold exactly one
:class:`~dmlkit.losses.proxy.Proxies` module, as every proxy and margin softmax loss does). The
wrapped loss stays a submodule, so its proxies keep their own optimizer group. Memory: the loss's
plus the regularizers'.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from dmlkit.core.checks import check_positive
from dmlkit.losses.proxy import Proxies
from dmlkit.losses.regularizers import Regularizer


def _the_proxies(loss: nn.Module, regularizer: Regularizer) -> Proxies:
    found = [m for m in loss.modules() if isinstance(m, Proxies)]
    if len(found) != 1:
        raise ValueError(
            f"{type(regularizer).__name__} acts on class weights: expected a loss with one "
            f"Proxies module (a proxy or margin softmax loss), got {type(loss).__name__} with "
            f"{len(found)}"
        )
    return found[0]


class Regularized(nn.Module):
    """``loss`` plus ``Σ weight R(X)`` for each ``(R, weight)`` of ``terms`` (module docstring);
    weights must be finite and positive."""

    def __init__(self, loss: nn.Module, terms: Sequence[tuple[Regularizer, float]]) -> None:
        super().__init__()
        self.loss = loss
        self.regularizers = nn.ModuleList()
        self.weights: list[float] = []
        self.proxies: list[Proxies | None] = []
        for k, (regularizer, weight) in enumerate(terms):
            if not isinstance(regularizer, Regularizer):
                raise TypeError(
                    f"terms[{k}]: expected a Regularizer, got {type(regularizer).__name__}"
                )
            self.weights.append(check_positive(weight, f"terms[{k}] weight"))
            self.regularizers.append(regularizer)
            on_weights = regularizer.target == "weights"
            self.proxies.append(_the_proxies(loss, regularizer) if on_weights else None)

    def forward(self, emb: Tensor, labels: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        total: Tensor = self.loss(emb, labels, *args, **kwargs)
        for regularizer, weight, proxies in zip(
            self.regularizers, self.weights, self.proxies, strict=True
        ):
            if proxies is None:
                penalty = regularizer(emb)
            else:
                penalty = regularizer(proxies(), proxies.per_class)
            total = total + weight * penalty
        return total

    def extra_repr(self) -> str:
        return f"weights={self.weights}"
