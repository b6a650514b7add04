"""The model a retrieval system runs: a trained model's evaluated view, L2-normalised.

    e = N(view(model(x)))        x (B, C, H, W) -> e (B, D)

``view`` is the training method's ``eval_views`` choice (a two-head model's discriminative head,
or a weighted concatenation; the plain output otherwise), so search, export and the run's
evaluation score the same embedding. ``N`` is the L2 normalisation, applied when the run
evaluates by cosine (``eval.similarity``); with ``dot`` or ``euclidean`` the view is used as is.

:class:`ModelBundle` is what an index stores to rebuild it without the checkpoint: the run's
config, the model weights, the training class count (some methods' factories take it) and the
preprocessing, all plain data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dmlkit.config import ExperimentConfig, config_from_dict, config_to_dict
from dmlkit.methods import TrainingMethod
from dmlkit.retrieval.preprocess import Preprocessing, preprocessing
from dmlkit.training.build import build_method, build_model, build_split, model_from_checkpoint


class EvaluatedModel(nn.Module):
    """``x -> N(view(model(x)))`` (module docstring); ``embedding_dim`` is D of the view."""

    def __init__(self, model: nn.Module, method: TrainingMethod, normalize: bool) -> None:
        super().__init__()
        self.model = model
        self.method = method
        self.normalize = normalize

    def forward(self, x: Tensor) -> Tensor:
        emb = self.method.eval_views(self.model(x))[0]
        return F.normalize(emb, dim=1) if self.normalize else emb


@dataclass
class ModelBundle:
    """A trained model as data: ``config`` (the run's, as a dict), ``weights`` (its state dict),
    ``num_classes`` (training classes), ``preprocessing`` and the view's ``embedding_dim``."""

    config: dict[str, Any]
    weights: dict[str, Tensor]
    num_classes: int
    preprocessing: Preprocessing
    embedding_dim: int

    def state(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "weights": self.weights,
            "num_classes": self.num_classes,
            "preprocessing": self.preprocessing.to_dict(),
            "embedding_dim": self.embedding_dim,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ModelBundle:
        return cls(
            dict(state["config"]),
            dict(state["weights"]),
            int(state["num_classes"]),
            Preprocessing.from_dict(state["preprocessing"]),
            int(state["embedding_dim"]),
        )

    def experiment(self) -> ExperimentConfig:
        return config_from_dict(self.config)

    def build(self) -> EvaluatedModel:
        """The evaluated model on the CPU, in eval mode."""
        config = self.experiment()
        model = build_model(config.model)
        model.load_state_dict(self.weights)
        return evaluated(model.eval(), config, self.num_classes)


def evaluated(model: nn.Module, config: ExperimentConfig, num_classes: int) -> EvaluatedModel:
    """``model`` with the view of its run's training method and the run's normalisation."""
    method = build_method(config.method, num_classes, config.model.embedding_dim, config.seed)
    return EvaluatedModel(model, method, config.eval.similarity == "cosine").eval()


def output_dim(model: nn.Module, prep: Preprocessing) -> int:
    """D of ``model``'s output, from one blank input of the preprocessing's shape."""
    side = prep.size or 32
    with torch.no_grad():
        return int(model(torch.zeros(2, prep.channels, side, side)).shape[1])


def bundle_from_checkpoint(path: str | Path, overrides: Sequence[str] = ()) -> ModelBundle:
    """The :class:`ModelBundle` of a training checkpoint (``best.pt`` or ``last.pt``)."""
    model, config = model_from_checkpoint(path, overrides)
    train = build_split(config.data, "train", train=False)
    prep = preprocessing(config, train.image_size)
    net = evaluated(model, config, train.num_classes)
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return ModelBundle(
        config_to_dict(config), weights, train.num_classes, prep, output_dim(net, prep)
    )
