"""Training methods selectable from a config: ``method: {name: ccp, options: {...}}``.

A method changes a run in up to two places, and nothing else:

- :meth:`TrainingMethod.wrap_loss` wraps or replaces the configured loss. Parameters of the
  returned module are trained, checkpointed and resumed with the loss (``loss`` state); a
  submodule with an ``optimizer_group()`` method (e.g. :class:`dmlkit.losses.Proxies`) gets its
  own optimizer parameter group.
- :meth:`TrainingMethod.callbacks` adds trainer callbacks (:mod:`dmlkit.methods.hooks`), which
  run before the callbacks a user passes and keep their state in checkpoints.

Factories are registered in ``METHODS``; a factory that takes ``num_classes``,
``embedding_dim`` or ``seed`` receives the training set's class count, the model's embedding size
and the run's seed unless the options set them. ``none`` changes nothing.
"""

from __future__ import annotations

from torch import nn

from dmlkit.core.registry import Registry
from dmlkit.methods.hooks import Callback


class TrainingMethod:
    """Base class: the plain run (the loss unchanged, no callbacks)."""

    def wrap_loss(self, loss: nn.Module) -> nn.Module:
        """The loss the run trains, built from the configured ``loss``."""
        return loss

    def callbacks(self) -> list[Callback]:
        """Callbacks the method needs, in the order they are called."""
        return []


METHODS: Registry[TrainingMethod] = Registry("method")


@METHODS.register("none")
def plain() -> TrainingMethod:
    """The configured loss alone."""
    return TrainingMethod()
