"""Adversarial decorrelation of two embedding heads ("Sharing Matters", MIC, DiVA).

A regressor ``R`` (an MLP, ``Linear(D_s, H) -> ReLU -> Linear(H, D_t)``, defaults 128 -> 512 ->
128) predicts the target head from the source head; the loss is minus their mean squared
elementwise correlation:

    L_decorr = - (1 / (B D_t)) Σ_i Σ_k ( GR(t)_ik · N(R(GR(s)))_ik )²          (<= 0)

with ``s (B, D_s)`` the source embedding (the shared head), ``t (B, D_t)`` the target (the
discriminative head), ``N`` the L2 normalisation and ``GR`` the gradient reversal of
:mod:`dmlkit.methods.gradient_reversal` on both inputs. Minimising ``ρ L_decorr`` trains the
regressor to *raise* the correlation it can find, while the reversed gradient trains the encoder
to *lower* it: the two heads are pushed to carry different information. For unit vectors in
random directions ``|L_decorr| ≈ 1/D_t²`` (6.1e-5 at D_t = 128), which is why the weight ``ρ`` is
of order 10²-10³.

The regressor has its own optimizer group (:meth:`Decorrelation.optimizer_group`, rate ``lr``,
``None`` for the trainer's loss rate, and ``weight_decay``; the authors use lr 1e-5, weight decay
1e-6 or 0). Memory O(B H).
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from dmlkit.core.checks import check_embeddings, check_positive
from dmlkit.methods.gradient_reversal import grad_reverse


def _positive_dim(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return value


class Decorrelation(nn.Module):
    """``forward(source (B, D_s), target (B, D_t)) -> 0-dim L_decorr`` (module docstring)."""

    def __init__(
        self,
        source_dim: int = 128,
        target_dim: int = 128,
        hidden_dim: int = 512,
        lr: float | None = None,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        self.lr = None if lr is None else check_positive(lr, "lr")
        self.weight_decay = check_positive(weight_decay, "weight_decay", allow_zero=True)
        self.source_dim = _positive_dim(source_dim, "source_dim")
        self.target_dim = _positive_dim(target_dim, "target_dim")
        hidden = _positive_dim(hidden_dim, "hidden_dim")
        self.regressor = nn.Sequential(
            nn.Linear(self.source_dim, hidden), nn.ReLU(), nn.Linear(hidden, self.target_dim)
        )

    def forward(self, source: Tensor, target: Tensor) -> Tensor:
        check_embeddings(source, "source")
        check_embeddings(target, "target")
        expected = ((source.shape[0], self.source_dim), (source.shape[0], self.target_dim))
        if (tuple(source.shape), tuple(target.shape)) != expected:
            raise ValueError(
                f"source, target: expected shapes {expected[0]} and {expected[1]}, got "
                f"{tuple(source.shape)} and {tuple(target.shape)}"
            )
        predicted = self.regressor(grad_reverse(source)).to(target.dtype)  # float32 under autocast
        return -(grad_reverse(target) * F.normalize(predicted, dim=1)).pow(2).mean()

    def optimizer_group(self) -> dict[str, Any]:
        """The optimizer group ``"decorrelation"`` of the regressor (``lr`` None: the loss rate)."""
        return {
            "name": "decorrelation",
            "params": list(self.regressor.parameters()),
            "lr": self.lr,
            "weight_decay": self.weight_decay,
        }

    def extra_repr(self) -> str:
        return f"source_dim={self.source_dim}, target_dim={self.target_dim}"
