"""Chance-constrained proxies (CCP; Gurbuz, Can, Alatan, WACV 2024): the rounds around the loss.

Round ``t`` trains :class:`~dmlkit.methods.ccp_loss.CCPLoss` plus the proximal term
``(λ_t/2)|θ - θ̄_t|²`` on the network weights (not the proxies), ``λ_0 = 0`` and
``λ_t = λ · decay^t`` afterwards. :class:`CCPRounds` runs the rounds as a trainer callback:

- at the start of training the proxies are selected by greedy k-center from a candidate pool,
  starting from zero (:func:`~dmlkit.methods.kcenter.greedy_k_center`): the largest-norm candidates
  first (``initial="kcenter"``, the paper). This presumes a network whose embeddings already
  separate classes (the paper fine-tunes a pretrained backbone): the embeddings of an untrained
  network are nearly the same for every input, so all classes' proxies start at one point and
  training collapses. ``initial="random"`` keeps the proxies' random initialisation instead
  (k-center then runs from the first round switch on); a warning is given when the selected
  proxies of different classes point the same way (mean cosine between the classes' proxy
  centroids, :func:`proxy_centroid_cosine`, above 0.95);
- at every evaluation of ``split`` the ``metric`` (validation MAP@R) is compared with the round's
  best (improvement: more than ``min_delta``); an improvement stores the network weights and the
  proxies as the round's best;
- after ``patience`` evaluations in a row without improvement a new round starts: the anchor
  ``θ̄`` becomes the round's best weights, ``λ_t`` is set, and all proxies are re-selected by
  k-center from a fresh pool embedded by the current network, starting from the round's best
  proxies; the round's best is reset (so a round lasts at least ``patience + 1`` evaluations).
  The network keeps its current weights unless ``restore_best_at_switch``.

The candidate pool holds ``b`` training items per class (``b·K`` when ``b < K``), drawn without
replacement from a per-round seeded permutation (items repeat only when a class has fewer than
``b``), embedded with the training transform and the model in eval mode, unnormalised; the new
proxies are exactly those embeddings. Global early stopping and restoring the best weights are the
trainer's ``train.patience`` and best checkpoint.

``metric_one_eval_late=True`` reproduces the official code, whose round logic reads the metric of
the previous evaluation (0 at the first) while storing the current weights as the best.

Memory: two copies of the network weights (round best and anchor), two of the proxies, and the
pool ``(C, b, D)`` during a switch.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from dmlkit.core.checks import check_positive
from dmlkit.core.options import options_factory
from dmlkit.methods.ccp_loss import CCPLoss
from dmlkit.methods.ccp_options import CCPOptions
from dmlkit.methods.hooks import Callback, TrainerView
from dmlkit.methods.kcenter import greedy_k_center
from dmlkit.methods.proximal import ProximalTerm
from dmlkit.methods.registry import METHODS, TrainingMethod

INITIAL = ("kcenter", "random")
COLLAPSED_COSINE = 0.95


def pool_size(b: int, per_class: int) -> int:
    """Candidates per class: ``b`` when ``b >= K``, else ``b·K``."""
    return b if b >= per_class else b * per_class


def candidate_indices(
    labels: Tensor, num_classes: int, size: int, generator: torch.Generator
) -> Tensor:
    """``(C, size)`` item indices, row ``c`` from class ``c`` in random order (cycling through the
    class's items when it has fewer than ``size``). ``labels (N,)`` int64 in ``0..C-1``."""
    counts = torch.bincount(labels, minlength=num_classes)
    if counts.numel() != num_classes or int(counts.min()) == 0:
        raise ValueError(
            f"labels: expected every one of the {num_classes} classes to have a training item"
        )
    perm = torch.randperm(labels.numel(), generator=generator)
    order = perm[torch.sort(labels[perm], stable=True).indices]
    starts = torch.cumsum(counts, 0) - counts
    offsets = torch.arange(size)[None, :] % counts[:, None]
    return order[starts[:, None] + offsets]


def proxy_centroid_cosine(proxies: Tensor) -> float:
    """Mean cosine between the centroid directions of different classes, ``proxies (C, K, D)``.

    With ``u_c`` the unit centroid of class ``c`` and ``m = mean_c u_c``:
    ``mean_{c != c'} <u_c, u_c'> = (C |m|² - 1) / (C - 1)``, O(C K D) (no ``C x C`` matrix).
    1 when all classes' proxies point the same way; about 0 when spread. 0 for one class.
    """
    num_classes = proxies.shape[0]
    if num_classes < 2:
        return 0.0
    centroid = torch.nn.functional.normalize(proxies.detach().float().mean(dim=1), dim=1)
    mean = centroid.mean(dim=0)
    return float((num_classes * mean.dot(mean) - 1.0) / (num_classes - 1))


def _snapshot(tensors: Sequence[Tensor]) -> list[Tensor]:
    return [t.detach().clone() for t in tensors]


class CCPRounds(Callback):
    """The CCP round logic (module docstring) for ``loss``; its state is checkpointed."""

    def __init__(
        self,
        loss: CCPLoss,
        pool: int = CCPOptions.pool,
        patience: int = CCPOptions.patience,
        lam: float = CCPOptions.lam,
        lam_decay: float = CCPOptions.lam_decay,
        min_delta: float = CCPOptions.min_delta,
        metric: str = CCPOptions.metric,
        split: str = CCPOptions.split,
        metric_one_eval_late: bool = CCPOptions.metric_one_eval_late,
        restore_best_at_switch: bool = CCPOptions.restore_best_at_switch,
        initial: str = CCPOptions.initial,
        seed: int = 0,
    ) -> None:
        if pool < 1 or patience < 1:
            raise ValueError(f"pool, patience: expected >= 1, got {pool}, {patience}")
        if initial not in INITIAL:
            raise ValueError(f"initial: expected one of {INITIAL}, got {initial!r}")
        self.loss = loss
        self.pool = pool
        self.patience = patience
        self.lam = check_positive(lam, "lam", allow_zero=True)
        self.lam_decay = check_positive(lam_decay, "lam_decay")
        self.min_delta = float(min_delta)
        self.metric = metric
        self.split = split
        self.metric_one_eval_late = bool(metric_one_eval_late)
        self.restore_best_at_switch = bool(restore_best_at_switch)
        self.initial = initial
        self.seed = int(seed)
        self.proximal: ProximalTerm | None = None
        self.anchor: list[Tensor] | None = None
        self.lam_t = 0.0
        self.round = 0
        self.selected = False
        self.best: float | None = None
        self.stale = 0
        self.previous_metric = 0.0
        self.best_weights: list[Tensor] | None = None
        self.best_proxies: Tensor | None = None
        self.switch_steps: list[int] = []

    # ------------------------------------------------------------------------------ hooks

    def on_train_start(self, trainer: TrainerView) -> None:
        self.proximal = ProximalTerm(self._network(trainer))
        if self.anchor is not None:
            self.proximal.set_anchor(self.anchor, self.lam_t)
            self.anchor = self.proximal.anchor  # one copy, on the weights' devices
        if not self.selected:
            if self.initial == "kcenter":
                zeros = torch.zeros_like(self.loss.proxies.per_class_view())
                self.select_proxies(trainer, zeros)
            self.selected = True

    def on_after_backward(self, trainer: TrainerView) -> None:
        if self.proximal is not None:
            self.proximal.add_gradient(trainer.scaler.get_scale())

    def on_eval(self, trainer: TrainerView, split: str, metrics: dict[str, float]) -> None:
        if split != self.split:
            return
        if self.metric not in metrics:
            raise KeyError(
                f"ccp metric: expected {self.metric!r} among the evaluated {sorted(metrics)}"
            )
        value = metrics[self.metric]
        if self.metric_one_eval_late:
            value, self.previous_metric = self.previous_metric, value
        if self.best is None or value > self.best + self.min_delta:
            self.best, self.stale = value, 0
            self.best_weights = _snapshot(self._network(trainer))
            self.best_proxies = self.loss.proxies.per_class_view().detach().clone()
        else:
            self.stale += 1
        if self.stale >= self.patience:
            self.start_round(trainer)

    # ------------------------------------------------------------------------------ rounds

    def start_round(self, trainer: TrainerView) -> None:
        """Anchor ← round best, ``λ_t``, proxies re-selected from the round's best proxies."""
        if self.best_weights is None or self.best_proxies is None or self.proximal is None:
            raise RuntimeError("a CCP round can only end after an evaluation stored its best")
        self.round += 1
        self.switch_steps.append(trainer.step)
        self.lam_t = self.lam * self.lam_decay**self.round
        self.proximal.set_anchor(self.best_weights, self.lam_t)
        self.anchor = self.proximal.anchor
        if self.restore_best_at_switch:
            with torch.no_grad():
                for p, best in zip(self._network(trainer), self.best_weights, strict=True):
                    p.copy_(best)
        self.select_proxies(trainer, self.best_proxies)
        self.best, self.stale = None, 0

    def select_proxies(self, trainer: TrainerView, init: Tensor) -> None:
        """Set all proxies by greedy k-center over a fresh candidate pool from ``init (C, K, D)``."""
        px = self.loss.proxies
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.round)
        index = candidate_indices(
            trainer.train_labels, px.num_classes, pool_size(self.pool, px.per_class), g
        )
        emb = trainer.embed_train_items(index.reshape(-1).tolist())
        candidates = emb.view(px.num_classes, index.shape[1], -1).to(px.weight.device)
        centers, _ = greedy_k_center(candidates, init.to(candidates), px.per_class)
        px.assign(centers)
        cosine = proxy_centroid_cosine(centers)
        if cosine > COLLAPSED_COSINE:
            warnings.warn(
                f"ccp: the proxies selected at step {trainer.step} point the same way for all "
                f"classes (mean cosine {cosine:.3f} between class centroids): the network does "
                f"not separate the classes yet, and training from here tends to collapse. Start "
                f"from a pretrained network, or set method.options.initial=random",
                stacklevel=2,
            )

    def _network(self, trainer: TrainerView) -> list[nn.Parameter]:
        return [p for p in trainer.model.parameters() if p.requires_grad]

    # ------------------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "selected": self.selected,
            "best": self.best,
            "stale": self.stale,
            "previous_metric": self.previous_metric,
            "best_weights": self.best_weights,
            "best_proxies": self.best_proxies,
            "anchor": self.anchor,
            "lam_t": self.lam_t,
            "switch_steps": list(self.switch_steps),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.round, self.selected = state["round"], state["selected"]
        self.best, self.stale = state["best"], state["stale"]
        self.previous_metric = state["previous_metric"]
        self.best_weights, self.best_proxies = state["best_weights"], state["best_proxies"]
        self.anchor, self.lam_t = state["anchor"], state["lam_t"]
        self.switch_steps = list(state["switch_steps"])


class CCPMethod(TrainingMethod):
    """The ``ccp`` method: :class:`CCPLoss` around the configured loss and :class:`CCPRounds`,
    both configured by one :class:`CCPOptions`."""

    def __init__(
        self, num_classes: int, embedding_dim: int, seed: int, options: CCPOptions
    ) -> None:
        self.num_classes, self.embedding_dim, self.seed = num_classes, embedding_dim, seed
        self.options = options
        self.loss: CCPLoss | None = None
        self.rounds: CCPRounds | None = None

    def wrap_loss(self, loss: nn.Module) -> nn.Module:
        o = self.options
        self.loss = CCPLoss(
            loss, self.num_classes, self.embedding_dim, **o.part("loss"),
            proxy_lr=o.proxy_lr, proxy_weight_decay=o.proxy_weight_decay,
        )  # fmt: skip
        return self.loss

    def callbacks(self) -> list[Callback]:
        if self.loss is None:
            raise RuntimeError("ccp: wrap_loss must build the loss before the callbacks")
        self.rounds = CCPRounds(self.loss, **self.options.part("rounds"), seed=self.seed)
        return [self.rounds]

    def log_fields(self) -> dict[str, float]:
        """The round number and :func:`proxy_centroid_cosine` of the current proxies."""
        if self.loss is None or self.rounds is None:
            return {}
        return {
            "ccp_round": float(self.rounds.round),
            "ccp_proxy_cosine": proxy_centroid_cosine(self.loss.proxies.per_class_view()),
        }


@METHODS.register("ccp", context=("num_classes", "embedding_dim", "seed"))
@options_factory(CCPOptions)
def ccp(num_classes: int, embedding_dim: int, seed: int = 0, **options: Any) -> CCPMethod:
    """CCP with the paper's CUB/Cars defaults (:class:`CCPOptions`): 8 proxies per class, pool 12,
    λ = 2e-4, round patience 3 evaluations, loss weights 0.1 (batch) and 1.0 (proxies), initial
    proxies by k-center (``initial="random"``: keep the random ones until the first round switch);
    see the module docstring."""
    return CCPMethod(num_classes, embedding_dim, seed, CCPOptions(**options))
