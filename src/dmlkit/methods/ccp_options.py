"""The options of CCP (the ``ccp`` method), declared once with the paper's CUB/Cars defaults.

:class:`CCPOptions` is read by the ``ccp`` factory (its signature, hence config validation and the
documentation), by :class:`~dmlkit.methods.ccp_loss.CCPLoss` and
:class:`~dmlkit.methods.ccp.CCPRounds` (their defaults) and by the method that builds both.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def _loss(default: Any) -> Any:
    return field(default=default, metadata={"part": "loss"})


def _rounds(default: Any) -> Any:
    return field(default=default, metadata={"part": "rounds"})


@dataclass(frozen=True)
class CCPOptions:
    """CCP's options (module docstring of :mod:`dmlkit.methods.ccp`).

    Loss: ``per_class`` proxies per class (K = 8), ``pair_weight`` of the batch term (0.1),
    ``proxy_weight`` of the proxy term (1.0), ``lipschitz`` normalisation (on); the proxies' own
    optimizer group ``proxy_lr`` / ``proxy_weight_decay``. Rounds: candidate ``pool`` per class
    (12), ``patience`` evaluations without a gain of ``min_delta`` on ``metric`` of ``split``
    before a round switch (3, 1e-5, MAP@R, val), proximal weight ``lam`` (2e-4) scaled by
    ``lam_decay`` each round, the official code's ``metric_one_eval_late`` and
    ``restore_best_at_switch`` (off), ``initial`` proxies (``"kcenter"`` or ``"random"``).
    """

    per_class: int = _loss(8)
    pair_weight: float = _loss(0.1)
    proxy_weight: float = _loss(1.0)
    lipschitz: bool = _loss(True)
    pool: int = _rounds(12)
    patience: int = _rounds(3)
    lam: float = _rounds(2e-4)
    lam_decay: float = _rounds(1.0)
    min_delta: float = _rounds(1e-5)
    metric: str = _rounds("map@r")
    split: str = _rounds("val")
    metric_one_eval_late: bool = _rounds(False)
    restore_best_at_switch: bool = _rounds(False)
    initial: str = _rounds("kcenter")
    proxy_lr: float | None = None
    proxy_weight_decay: float = 0.0

    def part(self, name: str) -> dict[str, Any]:
        """The options of one part (``"loss"`` or ``"rounds"``) as keyword arguments."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.metadata.get("part") == name
        }
