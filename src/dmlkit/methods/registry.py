"""Training methods selectable from a config: ``method: {name: ccp, options: {...}}``.

A method changes a run in these places, and nothing else:

- :meth:`TrainingMethod.wrap_loss` wraps or replaces the configured loss. Parameters of the
  returned module are trained, checkpointed and resumed with the loss (``loss`` state); a
  submodule with an ``optimizer_group()`` method (e.g. :class:`dmlkit.losses.Proxies`) gets its
  own optimizer parameter group.
- :meth:`TrainingMethod.callbacks` adds trainer callbacks (:mod:`dmlkit.methods.hooks`), which
  run before the callbacks a user passes and keep their state in checkpoints.
- :meth:`TrainingMethod.train_step` may replace the trainer's step
  (:meth:`dmlkit.training.Trainer.train_step`: forward, gather, loss, backward, optimizer step)
  with an iteration of its own, e.g. several optimizer steps, on other batches too; by default it
  returns ``None`` and the trainer's step runs.
- :meth:`TrainingMethod.eval_views` picks the embedding that is scored (and selects the model)
  from the model's output and adds named views scored alongside (``"view/metric"`` keys);
  :meth:`TrainingMethod.log_fields` adds values to the train log records.

Factories are registered in ``METHODS``; a factory that takes ``num_classes``,
``embedding_dim`` or ``seed`` receives the training set's class count, the model's embedding size
and the run's seed unless the options set them. ``none`` changes nothing.
"""

from __future__ import annotations

from torch import Tensor, nn

from dmlkit.core.registry import Registry
from dmlkit.methods.hooks import Callback, TrainerView


class TrainingMethod:
    """Base class: the plain run (the loss unchanged, no callbacks).

    ``supports_distributed``: whether the method's iteration is correct under several processes
    (it sees the global batch through ``trainer.gather`` and does one forward pass per step).
    """

    supports_distributed: bool = True

    def wrap_loss(self, loss: nn.Module) -> nn.Module:
        """The loss the run trains, built from the configured ``loss``."""
        return loss

    def callbacks(self) -> list[Callback]:
        """Callbacks the method needs, in the order they are called."""
        return []

    def train_step(
        self, trainer: TrainerView, images: Tensor, labels: Tensor
    ) -> tuple[Tensor, Tensor] | None:
        """An iteration of the method's own in place of the trainer's step, or ``None`` (the
        default) for the trainer's step. Given the batch ``images``, ``labels (B,)`` (on the
        device), a method that replaces the step drives it through ``trainer.forward``,
        ``trainer.gather`` and ``trainer.optimizer_step`` and returns the detached loss and the
        local embeddings ``(B, D)``. The trainer steps the schedule afterwards."""
        return None

    def eval_views(self, emb: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """From evaluated model outputs ``emb (N, D)``: the embedding to score and select on,
        and further named views to score (default: ``emb`` itself, none)."""
        return emb, {}

    def log_fields(self) -> dict[str, float]:
        """Values added to each train log record (default: none)."""
        return {}


METHODS: Registry[TrainingMethod] = Registry("method")


@METHODS.register("none")
def plain() -> TrainingMethod:
    """The configured loss alone."""
    return TrainingMethod()
