"""From a config to the parts of a run: device, dataset splits, sampler, model, loss, method; and
the trained model back from a checkpoint.

Every component is built by registry name (``DATASETS``, ``TRANSFORMS``, ``MODELS``, ``LOSSES``,
``METHODS``), so an unknown name fails with the list of registered ones. :func:`resolve_config`
fills the values the config leaves to the data (``model.in_channels``, ``data.batches_per_epoch``),
so the saved config describes the run completely.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from dmlkit.config import (
    ConfigError,
    DataConfig,
    ExperimentConfig,
    LossConfig,
    MethodConfig,
    MinerConfig,
    ModelConfig,
    RegularizerConfig,
    apply_overrides,
    config_from_dict,
)
from dmlkit.core import BuildContext, Registry
from dmlkit.data import (
    DATASETS,
    ClassFold,
    DMLDataset,
    check_splits,
    create_dataset,
    create_transform,
)
from dmlkit.data.registry import COMMON_NAMES
from dmlkit.losses import LOSSES, MINERS, REGULARIZERS, PairLoss, Regularized, Regularizer
from dmlkit.methods import METHODS, TrainingMethod
from dmlkit.models import MODELS, EmbeddingModel, create_model
from dmlkit.sampling import MPerClassBatchSampler
from dmlkit.training.checkpoint import load_checkpoint

MODEL_FIELDS = (
    "pretrained",
    "pooling",
    "head_bn",
    "normalize",
    "frozen_bn",
    "freeze_bn_affine",
    "in_channels",
)
T = TypeVar("T")


def _build(section: str, factory: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``factory(*args, **kwargs)``; a ``TypeError`` (an option the factory does not take) becomes
    a ``ConfigError`` naming the config section it came from."""
    try:
        return factory(*args, **kwargs)
    except TypeError as err:
        raise ConfigError(f"{section}: {err}") from err


@dataclass
class Splits:
    """The datasets of a run: ``train`` (training transform), ``val`` (``None`` when the run
    selects on test) and ``test`` (evaluation transform)."""

    train: DMLDataset
    val: DMLDataset | None
    test: DMLDataset


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; any other name as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device: {name!r} requested but CUDA is not available")
    return device


def build_split(config: DataConfig, split: str, train: bool) -> DMLDataset:
    """Split ``split`` of the configured dataset with the training or the evaluation transform."""
    transform = create_transform(config.transform, train=train, image_size=config.image_size)
    reserved = COMMON_NAMES
    _check_options("data.options", "dataset", config.name, DATASETS.get(config.name),
                   config.options, reserved)  # fmt: skip
    return _build(
        "data.options",
        create_dataset,
        config.name,
        split,
        root=config.root,
        transform=transform,
        val_classes=ClassFold(config.val_fold, config.val_folds)
        if config.val_folds
        else config.val_classes,
        seed=config.split_seed,
        **config.options,
    )


def build_splits(config: ExperimentConfig) -> Splits:
    """Train, val (only when selecting on val) and test splits; the training set's augmentation
    stream follows the run's ``seed``. All splits are checked before training starts
    (:func:`~dmlkit.data.check.check_splits`: missing or, with ``data.check_images``, unreadable
    images, classes the sampler cannot draw), every problem in one ``ValueError``."""
    train = build_split(config.data, "train", train=True)
    train.seed = config.seed
    val = None
    if not config.train.select_on_test:
        try:
            val = build_split(config.data, "val", train=False)
        except ValueError as err:
            raise ConfigError(
                f"model selection uses the validation split, which could not be built: {err}. "
                "Configure one (data.val_classes for held-out classes, or data.options."
                "val_fraction for datasets that hold out images), or set train.select_on_test: "
                "true to select on the test classes (test-set feedback)"
            ) from err
        if len(val) == 0:
            raise ConfigError(
                "the validation split is empty: set data.val_classes (held-out classes) or "
                "data.options.val_fraction, or train.select_on_test: true"
            )
    test = build_split(config.data, "test", train=False)
    named = (
        {"train": train, "test": test}
        if val is None
        else {"train": train, "val": val, "test": test}
    )
    check_splits(
        named,
        None if config.data.replacement else config.data.m,
        config.data.batch_size // config.data.m,
        decode_images=config.data.check_images,
    )
    return Splits(train, val, test)


def build_sampler(
    config: ExperimentConfig, train: DMLDataset, rank: int = 0, world_size: int = 1
) -> MPerClassBatchSampler:
    """The m-per-class batch sampler over the training labels, seeded by the run's ``seed``;
    rank ``rank`` of ``world_size`` draws its share of the common batch sequence
    (``data.batch_size`` per rank)."""
    data = config.data
    return MPerClassBatchSampler(
        train.labels,
        m=data.m,
        batch_size=data.batch_size,
        num_batches=data.batches_per_epoch,
        seed=config.seed,
        replacement=data.replacement,
        rank=rank,
        world_size=world_size,
    )


def resolve_config(
    config: ExperimentConfig, train: DMLDataset, sampler: MPerClassBatchSampler
) -> ExperimentConfig:
    """``config`` with ``model.in_channels`` and ``data.batches_per_epoch`` filled in."""
    model = config.model
    if model.in_channels is None:
        model = dataclasses.replace(model, in_channels=train.image_channels)
    data = dataclasses.replace(config.data, batches_per_epoch=len(sampler))
    return dataclasses.replace(config, model=model, data=data)


def build_model(config: ModelConfig) -> EmbeddingModel:
    """``create_model`` with the typed fields that are set and ``options``."""
    kwargs: dict[str, Any] = {
        name: getattr(config, name) for name in MODEL_FIELDS if getattr(config, name) is not None
    }
    _check_options("model.options", "model", config.name, MODELS.get(config.name),
                   config.options, ("embedding_dim", *MODEL_FIELDS))  # fmt: skip
    return _build(
        "model.options",
        create_model,
        config.name,
        embedding_dim=config.embedding_dim,
        **kwargs,
        **config.options,
    )


def _accepted(factory: Callable[..., Any]) -> tuple[list[str], bool]:
    """The keyword names ``factory`` takes and whether it also takes any other (``**kwargs``)."""
    params = inspect.signature(factory).parameters
    open_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return [
        n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD
    ], open_kwargs


def _check_options(
    section: str,
    kind: str,
    name: str,
    factory: Callable[..., Any],
    options: dict[str, Any],
    reserved: Sequence[str] = (),
) -> None:
    """``ConfigError`` when ``options`` sets a ``reserved`` argument (one the config sets through
    its own fields) or one ``factory`` does not take; the message lists the accepted options."""
    named, open_kwargs = _accepted(factory)
    accepted = [n for n in named if n not in reserved]
    clash = sorted(set(options) & set(reserved))
    if clash:
        raise ConfigError(
            f"{section}: {clash} are set by other config fields, not by {section}; "
            f"{section} accepted for {kind} {name!r}: {', '.join(accepted) or 'none'}"
        )
    unknown = sorted(set(options) - set(named))
    if unknown and not open_kwargs:
        raise ConfigError(
            f"{section}: unknown option(s) {unknown} for {kind} {name!r}; "
            f"accepted: {', '.join(accepted) or 'none'}"
        )


def _create_with_context(
    section: str, kind: str, name: str, registry: Registry[T], options: dict[str, Any],
    context: BuildContext,
) -> T:  # fmt: skip
    """``registry``'s ``name`` built with ``options`` and the :class:`BuildContext` fields its
    entry declares (unless the options set them); unknown options raise ``ConfigError`` listing
    the accepted ones."""
    factory = registry.get(name)
    _check_options(section, kind, name, factory, options)
    return _build(section, factory, **context.for_entry(registry.info(name), options))


def build_loss(config: LossConfig, num_classes: int, embedding_dim: int) -> nn.Module:
    """The loss ``config.name`` with ``options`` and ``miner``, in row blocks of ``chunk_size``,
    then its ``regularizers``; a loss that declares ``num_classes`` or ``embedding_dim`` as its
    context (per-class parameters, proxies) gets the training set's values unless the options set
    them. Unknown options raise ``ConfigError`` listing the accepted ones."""
    context = BuildContext(num_classes, embedding_dim)
    options = dict(config.options)
    if config.miner is not None:
        factory = LOSSES.get(config.name)
        _check_options("loss.options", "loss", config.name, factory, options, ("miner",))
        options["miner"] = build_miner(config.miner, config.name, factory, context)
    loss = _create_with_context("loss.options", "loss", config.name, LOSSES, options, context)
    if getattr(loss, "views_input", False):
        raise ConfigError(
            f"loss.name: {config.name!r} takes two augmented views of each item, not labels, so "
            "the trainer cannot feed it; use it in your own loop (module docstring of "
            f"{type(loss).__module__})"
        )
    if config.chunk_size is not None:
        if not isinstance(loss, PairLoss):
            raise ConfigError(
                f"loss.chunk_size: expected a pair-engine loss, got {config.name!r} "
                f"({type(loss).__name__})"
            )
        try:
            loss.chunked(config.chunk_size)
        except ValueError as err:
            raise ConfigError(f"loss.chunk_size: {err}") from err
    return _regularized(loss, config.regularizers) if config.regularizers else loss


def _regularized(loss: nn.Module, entries: Sequence[RegularizerConfig]) -> nn.Module:
    """``loss`` with the configured regularizers; a bad entry raises ``ConfigError`` naming it."""
    terms: list[tuple[Regularizer, float]] = []
    for k, entry in enumerate(entries):
        section = f"loss.regularizers[{k}]"
        if entry.name not in REGULARIZERS:
            raise ConfigError(
                f"{section}.name: expected one of {', '.join(REGULARIZERS.names())}, "
                f"got {entry.name!r}"
            )
        factory = REGULARIZERS.get(entry.name)
        _check_options(f"{section}.options", "regularizer", entry.name, factory, entry.options)
        try:
            terms.append((_build(f"{section}.options", factory, **entry.options), entry.weight))
        except ConfigError:
            raise
        except ValueError as err:
            raise ConfigError(f"{section}.options: {err}") from err
    try:
        return Regularized(loss, terms)
    except ValueError as err:
        raise ConfigError(f"loss.regularizers: {err}") from err


def build_miner(
    config: MinerConfig, loss_name: str, loss_factory: Callable[..., Any], context: BuildContext
) -> nn.Module:
    """The pair miner of ``loss.miner`` for the loss ``loss_name``; ``ConfigError`` when that loss
    takes no ``miner=`` or the miner's name or options are unknown."""
    if "miner" not in inspect.signature(loss_factory).parameters:
        takes = [
            n for n in LOSSES.names() if "miner" in inspect.signature(LOSSES.get(n)).parameters
        ]
        raise ConfigError(
            f"loss.miner: loss {loss_name!r} takes no miner; expected loss.miner: null, or a loss "
            f"that takes one: {', '.join(takes)}"
        )
    if config.name not in MINERS:
        raise ConfigError(
            f"loss.miner.name: expected a registered miner ({', '.join(MINERS.names())}), "
            f"got {config.name!r}"
        )
    return _create_with_context(
        "loss.miner.options", "miner", config.name, MINERS, config.options, context
    )


def build_method(
    config: MethodConfig, num_classes: int, embedding_dim: int, seed: int
) -> TrainingMethod:
    """The training method ``config.name`` with ``options`` (see :mod:`dmlkit.methods.registry`),
    given the :class:`BuildContext` fields it declares."""
    context = BuildContext(num_classes, embedding_dim, seed)
    return _create_with_context(
        "method.options", "method", config.name, METHODS, config.options, context
    )


def model_from_checkpoint(
    path: str | Path, overrides: Sequence[str] = ()
) -> tuple[EmbeddingModel, ExperimentConfig]:
    """The model saved in checkpoint ``path`` (``best.pt`` or ``last.pt``) with its config, the
    ``overrides`` (``a.b=c``) applied to that config; the model is on the CPU in eval mode."""
    state = load_checkpoint(path)
    if "config" not in state or "model" not in state:
        raise ValueError(f"{path}: expected a dmlkit training checkpoint with config and model")
    config = config_from_dict(apply_overrides(state["config"], overrides))
    model = build_model(config.model)
    model.load_state_dict(state["model"])
    return model.eval(), config
