"""Shared characteristics (Milbich, Roth et al., "Sharing Matters for Generalization in Deep Metric
Learning", TPAMI 2020; its DiVA extension) as a training method: ``method: {name: sharing}``.

The model has two heads on one backbone, ``heads: {discriminative: D_d, shared: D_s}`` in this
order (:class:`~dmlkit.models.multihead.MultiHeadEmbeddingModel`, ``model.embedding_dim =
D_d + D_s``). The configured ``loss`` trains the discriminative head on the class labels; a copy
of it (own learnable parameters, e.g. the margin loss's β per class, or per surrogate id with the
``surrogate`` sampler) trains the shared head on shared triplets (``sampler``: ``shared_random``,
``shared_neg``, ``shared_full`` or ``surrogate``, see :mod:`dmlkit.sampling.shared_triplets`;
``per_anchor: true`` draws one triplet per anchor as the authors' code); a regressor with gradient
reversal decorrelates the heads (:mod:`dmlkit.methods.decorrelation`). The copy keeps the base
loss's options, so its normaliser (the margin loss's ``normalize``) sets the scale of
``L_shared`` against ``rho L_decorr`` too. Modes:

- ``one_step`` (DiVA): one optimizer step on ``L_disc + alpha L_shared + rho L_decorr`` of the
  class-balanced batch;
- ``two_step`` (the paper-era code): two optimizer steps per iteration, ``L_disc + rho L_decorr``
  on the class-balanced batch, then ``alpha L_shared + rho L_decorr`` on a second forward pass:
  of a shuffled batch of random images (:class:`~dmlkit.sampling.shuffled.ShuffledBatchSampler`)
  for ``surrogate`` (which needs it: its blocks of ``surrogate_m`` rows must be random images),
  of the same class batch for the other samplers. The schedule steps once per iteration; the
  logged loss is the sum of the two steps' losses.

Evaluation scores ``eval_view`` (a head or a combination; it also selects the model) and reports
every other head and each weighted re-normalised concatenation of ``combinations`` as
``"name/metric"`` (:mod:`dmlkit.evaluation.heads`), or only the views listed in ``report``. The regressor has its own optimizer group
(``decorrelation_lr``, ``None``: ``optimizer.loss_lr``; ``decorrelation_weight_decay``).
Sampling draws from torch's global generator, which the trainer seeds and restores on resume.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from torch import Tensor, nn
from torch.utils.data import DataLoader

from dmlkit.core.checks import check_positive
from dmlkit.evaluation.heads import head_embeddings
from dmlkit.methods.decorrelation import Decorrelation
from dmlkit.methods.hooks import Callback, TrainerView
from dmlkit.methods.registry import METHODS, TrainingMethod
from dmlkit.methods.shared_task import (
    DISCRIMINATIVE,
    SHARED,
    SharedTripletLoss,
    SharingLoss,
)
from dmlkit.sampling.shared_triplets import SHARED_SAMPLERS, create_shared_sampler
from dmlkit.sampling.shuffled import ShuffledBatchSampler

MODES = ("one_step", "two_step")


class ShuffledBatches(Callback):
    """The shuffled batches of the two-step shared task, resumable: its state is the epoch and
    the number of batches taken from it (the loader's workers may have drawn more). One loader
    over the shuffled sampler serves every epoch (an iterator per epoch)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.sampler: ShuffledBatchSampler | None = None
        self.state = {"epoch": 0, "position": 0}
        self._loader: DataLoader | None = None
        self._iterator: Iterator[Any] | None = None
        self._trainer: TrainerView | None = None

    def on_train_start(self, trainer: TrainerView) -> None:
        self._trainer = trainer
        self._loader = None
        self._iterator = None

    def next_batch(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """The next ``(images, labels)`` of ``batch_size`` random training items."""
        if self._trainer is None:
            raise RuntimeError("shuffled batches are available only inside a training run")
        if self.sampler is None:
            num_items = len(self._trainer.train_labels)
            self.sampler = ShuffledBatchSampler(num_items, batch_size, self.seed)
        if self._loader is None:
            self._loader = self._trainer.train_loader(self.sampler)
        if self._iterator is None:
            if self.state["position"] >= len(self.sampler):  # the saved epoch was finished
                self.state = {"epoch": self.state["epoch"] + 1, "position": 0}
            self.sampler.load_state_dict({**self.state, "seed": self.seed})
            self._iterator = iter(self._loader)
        batch = next(self._iterator, None)
        if batch is None:  # this epoch is finished: the next call starts the next one
            self._iterator = None
            return self.next_batch(batch_size)
        self.state["position"] += 1
        return batch[0], batch[1]

    def state_dict(self) -> dict[str, Any]:
        return dict(self.state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = {"epoch": int(state["epoch"]), "position": int(state["position"])}
        self._iterator = None


class HeadCheck(Callback):
    """Refuses a model whose heads are not ``head_dims`` (names, order, sizes) at the start."""

    def __init__(self, head_dims: Mapping[str, int]) -> None:
        self.head_dims = dict(head_dims)

    def on_train_start(self, trainer: TrainerView) -> None:
        got = getattr(trainer.model, "head_dims", None)
        if got is None or list(got.items()) != list(self.head_dims.items()):
            raise ValueError(
                f"sharing: expected a model with heads {self.head_dims} (model.options.heads, "
                f"in this order), got {got if got is not None else 'a single-head model'}"
            )


class Sharing(TrainingMethod):
    """The shared-characteristics method (module docstring); build it with :func:`sharing`.
    One process only: it runs a second forward pass per step on its own shuffled batches."""

    supports_distributed = False

    def __init__(
        self,
        head_dims: Mapping[str, int],
        sampler_name: str,
        mode: str,
        alpha: float,
        rho: float,
        decorrelation: Decorrelation,
        sampler_options: Mapping[str, Any],
        eval_view: str,
        combinations: Mapping[str, Mapping[str, float]],
        seed: int,
        report: Sequence[str] | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        if sampler_name not in SHARED_SAMPLERS:
            raise ValueError(
                f"sampler: expected one of {SHARED_SAMPLERS.names()}, got {sampler_name!r}"
            )
        if sampler_name == "surrogate" and mode != "two_step":
            raise ValueError(
                "sampler: 'surrogate' groups random images of a shuffled batch, which only the "
                "two_step mode draws; use mode: two_step or another sampler"
            )
        views = [*head_dims, *combinations]
        if eval_view not in views:
            raise ValueError(f"eval_view: expected one of {views}, got {eval_view!r}")
        others = [v for v in views if v != eval_view]
        unknown = sorted(set(report or ()) - set(others))
        if unknown:
            raise ValueError(f"report: expected names from {others}, got unknown {unknown}")
        self.head_dims = dict(head_dims)
        self.sampler_name = sampler_name
        self.mode = mode
        self.alpha = check_positive(alpha, "alpha", allow_zero=True)
        self.rho = check_positive(rho, "rho", allow_zero=True)
        self.decorrelation = decorrelation
        self.sampler_options = dict(sampler_options)
        self.eval_view = eval_view
        self.combinations = {name: dict(w) for name, w in combinations.items()}
        self.report = others if report is None else list(report)
        self.shuffled = ShuffledBatches(seed) if sampler_name == "surrogate" else None
        self.loss: SharingLoss | None = None

    def wrap_loss(self, loss: nn.Module) -> nn.Module:
        sampler = create_shared_sampler(self.sampler_name, **self.sampler_options)
        self.loss = SharingLoss(
            loss,
            SharedTripletLoss(copy.deepcopy(loss), sampler),
            self.decorrelation,
            self.head_dims,
            self.alpha,
            self.rho,
        )
        return self.loss

    def callbacks(self) -> list[Callback]:
        return [HeadCheck(self.head_dims), *([self.shuffled] if self.shuffled else [])]

    def train_step(
        self, trainer: TrainerView, images: Tensor, labels: Tensor
    ) -> tuple[Tensor, Tensor] | None:
        """``two_step``: two optimizer steps (module docstring); ``one_step``: the trainer's
        step on the whole objective."""
        if self.mode == "one_step":
            return None
        loss_fn = self._loss()
        emb = trainer.forward(images)
        disc = loss_fn.task_loss(emb, labels, DISCRIMINATIVE)
        trainer.optimizer_step(disc)
        if self.shuffled is not None:
            images, labels = self.shuffled.next_batch(len(labels))
            labels = labels.to(trainer.device)
        shared = loss_fn.task_loss(trainer.forward(images), labels, SHARED)
        trainer.optimizer_step(shared)
        return (disc + shared).detach(), emb.detach()

    def _loss(self) -> SharingLoss:
        if self.loss is None:
            raise RuntimeError("sharing: wrap_loss() builds the loss before training")
        return self.loss

    def eval_views(self, emb: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        views = head_embeddings(emb, self.head_dims, self.combinations)
        return views[self.eval_view], {name: views[name] for name in self.report}

    def log_fields(self) -> dict[str, float]:
        return {} if self.loss is None else self.loss.log_fields()


@METHODS.register("sharing", context=("embedding_dim", "seed"))
def sharing(
    embedding_dim: int,
    sampler: str = "shared_random",
    mode: str = "one_step",
    alpha: float = 0.3,
    rho: float = 1500.0,
    shared_dim: int = 128,
    hidden_dim: int = 512,
    decorrelation_lr: float | None = None,
    decorrelation_weight_decay: float = 0.0,
    lower_cutoff: float = 0.5,
    upper_cutoff: float | None = None,
    per_anchor: bool = False,
    surrogate_m: int = 4,
    eval_view: str = DISCRIMINATIVE,
    combinations: Mapping[str, Mapping[str, float]] | None = None,
    report: Sequence[str] | None = None,
    seed: int = 0,
) -> Sharing:
    """Shared characteristics with DiVA's defaults for CUB (alpha 0.3, rho 1500, shared_random).

    ``embedding_dim`` (the model's, ``D_d + D_s``) and ``seed`` come from the run;
    ``shared_dim`` is ``D_s``; ``combinations`` default to ``{"concat": {discriminative: 1,
    shared: 1}}``; ``report`` lists the views scored besides ``eval_view`` (default: all);
    ``surrogate_m`` is the surrogate block size; ``per_anchor`` (``shared_random``,
    ``surrogate``): one shared triplet per anchor, as the authors' code draws them, instead of one
    per positive pair (``shared_neg``/``shared_full`` always draw one per anchor).
    """
    if isinstance(shared_dim, bool) or not isinstance(shared_dim, int):
        raise ValueError(f"shared_dim: expected an int, got {shared_dim!r}")
    if not 0 < shared_dim < embedding_dim:
        raise ValueError(
            f"shared_dim: expected 0 < shared_dim < model.embedding_dim={embedding_dim} "
            f"(discriminative + shared), got {shared_dim}"
        )
    head_dims = {DISCRIMINATIVE: embedding_dim - shared_dim, SHARED: shared_dim}
    options: dict[str, Any] = {"lower_cutoff": lower_cutoff, "upper_cutoff": upper_cutoff}
    if sampler in ("shared_random", "surrogate"):
        options["per_anchor"] = per_anchor
    if sampler == "surrogate":
        options["m"] = surrogate_m
    decorrelation = Decorrelation(
        shared_dim,
        head_dims[DISCRIMINATIVE],
        hidden_dim,
        lr=decorrelation_lr,
        weight_decay=decorrelation_weight_decay,
    )
    if combinations is None:
        combinations = {"concat": {DISCRIMINATIVE: 1.0, SHARED: 1.0}}
    return Sharing(
        head_dims,
        sampler,
        mode,
        alpha,
        rho,
        decorrelation,
        options,
        eval_view,
        combinations,
        seed,
        report,
    )
