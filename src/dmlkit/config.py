"""Experiment configuration: typed sections loaded from YAML, validated, with ``--set`` overrides.

    config = load_config("configs/glyphs/ms.yaml", overrides=["optimizer.lr=3e-4"])
    save_config(config, run_dir / "config.yaml")

An :class:`ExperimentConfig` has the sections ``data``, ``model``, ``loss``, ``method``,
``optimizer``, ``schedule``, ``train``, ``eval``, ``output`` and the top-level ``seed``. Every
section is a dataclass: a key that is not one of its fields is an error that lists the valid keys
of that section, and a value of the wrong type is an error naming the field, the expected type and
the value. Component options (``data.options``, ``model.options``, ``loss.options``,
``method.options``) are free-form mappings handed to the dataset, model, loss or method factory,
which check them.

Files may start from another file: ``base: ../ms.yaml`` (relative to the file) loads that one
first; then each section of this file replaces the base's values field by field (a field's value,
including an ``options`` mapping, is replaced as a whole, never merged). ``--set a.b=c`` overrides
apply last, the value parsed as a YAML scalar or flow list (``--set data.options.holdout=classes``,
``--set eval.ks=[1,10]``). Float fields also take numbers that YAML 1.1 reads as text
(``3e-5``).
"""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

DEMO_CONFIG = "demo.yaml"
_FLOAT_TEXT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


class ConfigError(ValueError):
    """An invalid configuration: unknown key, wrong type or bad override."""


@dataclass
class DataConfig:
    """Dataset, transforms and batch construction.

    ``val_classes``: training classes held out as the validation split (fraction or count) for
    class-disjoint datasets; datasets that hold out images take ``options.val_fraction`` instead.
    ``val_folds`` (k >= 2, with ``val_classes`` 0) makes the validation split fold ``val_fold`` of a
    class-disjoint k-fold split of the training classes instead (the k folds partition them).
    ``split_seed`` fixes which classes (or images) form the splits, independently of the run's
    ``seed``, so runs with different seeds share one split.
    Batches hold ``batch_size / m`` classes with ``m`` images each; ``batches_per_epoch`` defaults
    to ``len(train) // batch_size``.
    ``num_workers`` loader processes decode and augment the images (0: in the main process);
    the training loader's workers live for the whole run. ``worker_threads``: torch threads in
    each of them (PyTorch's default 1; more only pays when a worker's resampling is the
    bottleneck and cores are free); it applies to workers, so it needs ``num_workers > 0``.
    """

    name: str = "digits"
    root: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    val_classes: float | int = 0
    val_folds: int = 0
    val_fold: int = 0
    split_seed: int = 0
    transform: str = "small"
    image_size: int | None = None
    batch_size: int = 32
    m: int = 4
    replacement: bool = False
    batches_per_epoch: int | None = None
    num_workers: int = 0
    worker_threads: int = 1
    check_images: bool = False


@dataclass
class ModelConfig:
    """Embedding model; ``None`` fields take the model's default (``in_channels``: the dataset's).

    ``frozen_bn``: the backbone's BatchNorm layers normalise with their running statistics and never
    update them; ``freeze_bn_affine`` (with ``frozen_bn``) also stops their weight and bias from
    learning (as Keras' frozen BatchNorm of the CCP code), which otherwise train (as in the
    PyTorch codes of MS, DRO, Revisiting-DML and the Reality Check)."""

    name: str = "small_cnn"
    embedding_dim: int = 128
    pretrained: str | None = None
    pooling: str | None = None
    head_bn: bool | None = None
    normalize: bool | None = None
    frozen_bn: bool | None = None
    freeze_bn_affine: bool | None = None
    in_channels: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class RegularizerConfig:
    """One regularizer added to the loss: registry name (``lp``, ``zero_mean``,
    ``center_invariant``, ``regular_face``, ``sparse_centers``), weight > 0 and keyword options
    (``target: embeddings`` or ``target: weights`` where both apply)."""

    name: str = ""
    weight: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class MinerConfig:
    """Pair miner by registry name (``dmlkit list``) and its keyword options."""

    name: str = "all"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class LossConfig:
    """Loss by registry name (``dmlkit list``) and its keyword options; ``miner`` (``null``: the
    loss's own) is given to losses that take ``miner=``; ``chunk_size`` computes a pair-engine loss
    in blocks of that many rows (same value and gradient, peak memory O(chunk_size x B); see
    :class:`dmlkit.losses.PairLoss`); ``regularizers`` adds weighted penalties on the embeddings
    or the loss's class weights (:class:`dmlkit.losses.Regularized`)."""

    name: str = "ms"
    options: dict[str, Any] = field(default_factory=dict)
    miner: MinerConfig | None = None
    chunk_size: int | None = None
    regularizers: list[RegularizerConfig] = field(default_factory=list)


@dataclass
class MethodConfig:
    """Training method by registry name (``none``, ``ccp``, ...; see :mod:`dmlkit.methods`) and
    its keyword options; ``none`` trains the configured loss alone."""

    name: str = "none"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimizerConfig:
    """Optimizer (``adam``, ``adamw``, ``sgd``, ``rmsprop``) with three parameter groups.

    ``lr`` is the head's rate; ``backbone_lr`` and ``loss_lr`` (learnable loss parameters such as
    proxies or margin betas) default to it. ``momentum`` is used by SGD and RMSprop, ``betas`` by
    Adam/AdamW. ``clip_grad_norm`` clips the global gradient norm of all groups.
    """

    name: str = "adam"
    lr: float = 1e-3
    backbone_lr: float | None = None
    loss_lr: float | None = None
    weight_decay: float = 0.0
    loss_weight_decay: float = 0.0
    momentum: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    clip_grad_norm: float | None = None


@dataclass
class ScheduleConfig:
    """Learning-rate factor per optimizer step (multiplies every group's rate).

    ``constant``; ``step`` (× ``gamma`` every ``step_size`` steps); ``multistep`` (× ``gamma`` at
    each of ``milestones``); ``cosine`` (from 1 to ``min_factor`` over the run). ``warmup_steps``
    ramps the factor linearly from ``1 / warmup_steps`` to 1 first.
    """

    name: str = "constant"
    warmup_steps: int = 0
    step_size: int | None = None
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    min_factor: float = 0.0


@dataclass
class TrainConfig:
    """The loop: ``steps`` optimizer steps, evaluation and checkpoints every N steps (0: at the
    end only), mixed precision ``amp`` (``none``, ``bf16``, ``fp16`` with a gradient scaler).

    Model selection uses the validation split unless ``select_on_test`` is set, which selects the
    best checkpoint on the test classes (test-set feedback, as some published code does).
    ``patience``: stop after this many evaluations in a row without a better selection metric
    (``None``: train all ``steps``).
    ``nonfinite``: what a step with a NaN/inf loss or gradient does: ``stop`` (write ``last.pt``
    and raise, naming the step and the batch items) or ``skip`` (drop its update, count it in
    metrics.json's ``nonfinite_skipped``, log it and warn).
    ``dist_timeout``: seconds a process of a ``torchrun`` run waits in a collective for the
    others; a dead or hung peer ends every process with an error after this long.
    ``compile``: run the training forward and backward through ``torch.compile`` (inductor; on
    the CPU it needs a C++ compiler); the first steps take the compilation time, evaluation
    stays eager. ``channels_last``: convolutions in the channels-last layout (``null``: on for
    CNNs compiled on a GPU; ``true`` needs a model with convolutions). See
    :mod:`dmlkit.training.compile`.
    """

    steps: int = 1000
    device: str = "auto"
    amp: str = "none"
    eval_every: int = 0
    checkpoint_every: int = 0
    log_every: int = 10
    select_on_test: bool = False
    patience: int | None = None
    nonfinite: str = "stop"
    progress: bool = True
    num_threads: int | None = None
    dist_timeout: float = 300.0
    compile: bool = False
    channels_last: bool | None = None


@dataclass
class EvalConfig:
    """Metrics (names of :func:`dmlkit.evaluation.evaluate`), Recall@K values, the selection
    metric, whether to evaluate the untrained model (``before``) and the test split at every
    periodic evaluation (``periodic_test``).

    ``knn_backend``: ``torch`` (exact, default), ``faiss`` (exact), or approximate search for
    large collections, ``faiss_ivf`` or ``faiss_hnsw`` with ``knn_options`` (see
    :mod:`dmlkit.evaluation.approximate`); approximate evaluations report the recall of the
    neighbours against exact search (``knn_recall@...``) beside the metrics."""

    metrics: list[str] = field(default_factory=lambda: list(_metric_table().DEFAULT_METRICS))
    ks: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    select_metric: str = "map@r"
    similarity: str = "cosine"
    batch_size: int = 256
    before: bool = True
    periodic_test: bool = True
    knn_backend: str = "torch"
    knn_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class OutputConfig:
    """Run folder ``dir/name-YYYYmmdd-HHMMSS`` (without the suffix when ``timestamp`` is false)."""

    dir: str = "runs"
    name: str = "run"
    timestamp: bool = True
    embeddings: bool = True
    report: bool = True
    tensorboard: bool = False


@dataclass
class ExperimentConfig:
    """A whole experiment (module docstring)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    seed: int = 0


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if get_origin(tp) in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if get_origin(tp) is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, path: str) -> Any:
    """``value`` checked against the annotation ``tp`` (and converted: int -> float, text -> float)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        arms = get_args(tp)
        if value is None and type(None) in arms:
            return None
        for arm in sorted(arms, key=lambda a: a is float):  # exact arms before the int -> float one
            if arm is type(None):
                continue
            try:
                return _convert(value, arm, path)
            except ConfigError:
                continue
        raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _from_mapping(tp, value, path)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list ({_type_name(tp)}), got {value!r}")
        (item,) = get_args(tp)
        return [_convert(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{path}: expected a mapping with text keys, got {value!r}")
        return dict(value)
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and is_number and isinstance(value, int):
        return value
    if tp is float and (is_number or (isinstance(value, str) and _FLOAT_TEXT.match(value.strip()))):
        return float(value)
    if tp is str and isinstance(value, str):
        return value
    raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def _from_mapping(cls: type, data: Any, path: str) -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ``ConfigError``."""
    where = path or "config"
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of keys to values, got {data!r}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(names)}"
        )
    kwargs = {k: _convert(v, hints[k], f"{path}.{k}" if path else k) for k, v in data.items()}
    return cls(**kwargs)


def config_from_dict(data: Mapping[str, Any]) -> ExperimentConfig:
    """Validate a plain mapping (as read from YAML) into an :class:`ExperimentConfig`."""
    return check_values(_from_mapping(ExperimentConfig, data, ""))


def config_to_dict(config: ExperimentConfig) -> dict[str, Any]:
    """The config as plain YAML-ready data (sections in schema order)."""
    return dataclasses.asdict(config)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top, got {data!r}")
    return data


def _merge(base: dict[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """Sections of ``child`` replace ``base``'s field by field; top-level scalars replace."""
    merged = dict(base)
    for key, value in child.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def read_config_file(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The raw mapping of ``path`` with its ``base`` chain applied (not yet validated)."""
    path = Path(path).expanduser().resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise ConfigError(f"config base chain loops: {chain}")
    data = _read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base: expected a path to another config file, got {base!r}")
    return _merge(read_config_file(path.parent / base, (*_seen, path)), data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=c"`` -> ``(["a", "b"], yaml value of "c")``; ``ConfigError`` when malformed."""
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(f"--set {text!r}: expected KEY.PATH=VALUE, for example optimizer.lr=1e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML: {err}") from err
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``data`` with each ``a.b=c`` of ``overrides`` set (intermediate mappings made)."""
    result = _merge({}, data)
    for text in overrides:
        parts, value = parse_override(text)
        node = result
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = {}
            elif not isinstance(child, Mapping):
                raise ConfigError(
                    f"--set {text!r}: {'.'.join(parts[: i + 1])} is a value, not a section"
                )
            node[part] = child = dict(child)
            node = child
        node[parts[-1]] = value
    return result


def demo_config_path() -> Path:
    """The embedded demo config shipped inside the package (``dmlkit/configs/demo.yaml``)."""
    return Path(str(resources.files("dmlkit") / "configs" / DEMO_CONFIG))


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read ``path`` (default: the embedded demo), apply ``overrides``, validate."""
    data = read_config_file(demo_config_path() if path is None else path)
    return config_from_dict(apply_overrides(data, overrides))


def save_config(config: ExperimentConfig, path: str | Path) -> None:
    """Write the resolved ``config`` as YAML."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))


def config_diff(a: ExperimentConfig, b: ExperimentConfig) -> list[str]:
    """``"section.field: a_value != b_value"`` for every field where ``a`` and ``b`` differ."""

    def fields(config: ExperimentConfig) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in config_to_dict(config).items():
            if isinstance(value, dict) and dataclasses.is_dataclass(getattr(config, key)):
                out.update({f"{key}.{name}": v for name, v in value.items()})
            else:
                out[key] = value
        return out

    fa, fb = fields(a), fields(b)
    return [f"{k}: {fa[k]!r} != {fb[k]!r}" for k in fa if fa[k] != fb[k]]


CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer.name": ("adam", "adamw", "sgd", "rmsprop"),
    "schedule.name": ("constant", "step", "multistep", "cosine"),
    "train.amp": ("none", "bf16", "fp16"),
    "train.nonfinite": ("stop", "skip"),
    "eval.knn_backend": ("torch", "faiss", "faiss_ivf", "faiss_hnsw"),
}


def _check_ranges(config: ExperimentConfig) -> None:
    """Values bounded on both sides or ordered: Adam betas, the cosine floor, milestones."""
    betas = config.optimizer.betas
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ConfigError(f"optimizer.betas: expected two values in [0, 1), got {betas}")
    if not 0.0 <= config.schedule.min_factor <= 1.0:
        raise ConfigError(
            f"schedule.min_factor: expected a value in [0, 1], got {config.schedule.min_factor}"
        )
    milestones = config.schedule.milestones
    if any(m < 1 for m in milestones) or milestones != sorted(set(milestones)):
        raise ConfigError(
            f"schedule.milestones: expected increasing positive steps, got {milestones}"
        )


def _metric_table() -> Any:
    """:mod:`dmlkit.evaluation.metric_table`, imported when first needed (it loads torch)."""
    from dmlkit.evaluation import metric_table

    return metric_table


def check_values(config: ExperimentConfig) -> ExperimentConfig:
    """Range and choice checks that need no registry; ``ConfigError`` naming the field."""
    table = _metric_table()
    unknown = [m for m in config.eval.metrics if m not in table.METRIC_NAMES]
    if unknown:
        raise ConfigError(
            f"eval.metrics: unknown {unknown}; expected names from {table.METRIC_NAMES}"
        )
    for path, allowed in {**CHOICES, "eval.similarity": table.SIMILARITIES}.items():
        section, name = path.split(".")
        value = getattr(getattr(config, section), name)
        if value not in allowed:
            raise ConfigError(f"{path}: expected one of {', '.join(allowed)}, got {value!r}")
    positive = {
        "data.batch_size": config.data.batch_size,
        "data.m": config.data.m,
        "train.steps": config.train.steps,
        "train.log_every": config.train.log_every,
        "eval.batch_size": config.eval.batch_size,
        "model.embedding_dim": config.model.embedding_dim,
        "data.worker_threads": config.data.worker_threads,
        "optimizer.lr": config.optimizer.lr,
        "train.dist_timeout": config.train.dist_timeout,
    }
    non_negative = {
        "data.num_workers": config.data.num_workers,
        "train.eval_every": config.train.eval_every,
        "train.checkpoint_every": config.train.checkpoint_every,
        "schedule.warmup_steps": config.schedule.warmup_steps,
        "optimizer.weight_decay": config.optimizer.weight_decay,
        "optimizer.momentum": config.optimizer.momentum,
        "schedule.gamma": config.schedule.gamma,
    }
    for path, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{path}: expected a positive value, got {value}")
    for path, value in non_negative.items():
        if value < 0:
            raise ConfigError(f"{path}: expected a value >= 0, got {value}")
    positive_or_unset = {
        "data.image_size": config.data.image_size,
        "data.batches_per_epoch": config.data.batches_per_epoch,
        "optimizer.backbone_lr": config.optimizer.backbone_lr,
        "optimizer.loss_lr": config.optimizer.loss_lr,
        "optimizer.clip_grad_norm": config.optimizer.clip_grad_norm,
        "schedule.step_size": config.schedule.step_size,
        "train.num_threads": config.train.num_threads,
        "loss.chunk_size": config.loss.chunk_size,
        "optimizer.eps": config.optimizer.eps,
    }
    for path, value in positive_or_unset.items():
        if value is not None and not value > 0:
            raise ConfigError(f"{path}: expected a positive value (or null), got {value}")
    _check_ranges(config)
    if config.data.batch_size % config.data.m:
        raise ConfigError(
            f"data.batch_size: expected a multiple of data.m={config.data.m} "
            f"(classes x images per class), got {config.data.batch_size}"
        )
    if config.train.patience is not None and (
        config.train.patience < 1 or config.train.eval_every == 0
    ):
        raise ConfigError(
            f"train.patience: expected a positive count of evaluations with train.eval_every > 0, "
            f"got patience={config.train.patience}, eval_every={config.train.eval_every}"
        )
    data = config.data
    if (data.val_folds or data.val_fold) and (
        data.val_folds < 2 or data.val_classes or not 0 <= data.val_fold < data.val_folds
    ):
        raise ConfigError(
            "data.val_folds: expected k >= 2 folds with data.val_classes 0 and data.val_fold in "
            f"0..k-1, got val_folds={data.val_folds}, val_fold={data.val_fold}, "
            f"val_classes={data.val_classes}"
        )
    if data.worker_threads != 1 and data.num_workers == 0:
        raise ConfigError(
            f"data.worker_threads: sets the threads of loader workers, expected data.num_workers "
            f"> 0 with it, got worker_threads={data.worker_threads}, num_workers=0 (the main "
            "process's threads are train.num_threads)"
        )
    for k, reg in enumerate(config.loss.regularizers):
        if not 0.0 < reg.weight < float("inf"):
            raise ConfigError(
                f"loss.regularizers[{k}].weight: expected a finite positive value, got {reg.weight}"
            )
    if not config.eval.ks or min(config.eval.ks) < 1:
        raise ConfigError(f"eval.ks: expected positive integers, got {config.eval.ks}")
    return config
