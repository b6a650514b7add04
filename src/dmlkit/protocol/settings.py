"""The ``protocol`` section of a config file and how it is read.

A protocol file is an experiment config (:mod:`dmlkit.config`) with one more top-level section::

    protocol:
      folds: 4                  # class-disjoint validation folds of the training classes
      seeds: [0, 1, 2]          # one run = the k fold models of one seed
      confidence: 0.95          # Student-t interval over the runs
      metrics: [map@r, r_precision, precision@1]   # reported columns (test classes)
      search:                   # optional Optuna search on validation MAP@R (needs optuna)
        trials: 20
        seed: 0                 # the training seed of every trial
        include_config: false   # true: trial 0 takes the config's own values of the space
        space:
          optimizer.lr: {low: 1.0e-5, high: 1.0e-3, log: true}
          loss.options.margin: {low: 0.0, high: 0.5}
          data.m: {choices: [4, 8]}

``--set protocol.folds=2`` and ``--set train.steps=50`` both apply. Unknown keys and wrong types
raise :class:`~dmlkit.config.ConfigError` naming the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dmlkit.config import (
    ConfigError,
    ExperimentConfig,
    _from_mapping,
    apply_overrides,
    config_from_dict,
    read_config_file,
)


@dataclass
class SearchConfig:
    """Hyperparameter search: ``trials`` Optuna trials (0: no search), each training the k folds
    with training seed ``seed``; ``space`` maps a config path (``optimizer.lr``) to a range
    ``{low, high, log}`` (int when both bounds are ints) or ``{choices: [...]}``.
    ``include_config``: the first trial takes the config's own values of the space (the
    published defaults), the others are drawn."""

    trials: int = 0
    seed: int = 0
    space: dict[str, Any] = field(default_factory=dict)
    include_config: bool = False


@dataclass
class ProtocolConfig:
    """Folds, seeds, confidence level, reported metrics and the optional search (module
    docstring)."""

    folds: int = 4
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    confidence: float = 0.95
    metrics: list[str] = field(default_factory=lambda: ["map@r", "r_precision", "precision@1"])
    search: SearchConfig = field(default_factory=SearchConfig)


def check_protocol(protocol: ProtocolConfig) -> ProtocolConfig:
    """Range checks; ``ConfigError`` naming the field."""
    if protocol.folds < 2:
        raise ConfigError(f"protocol.folds: expected an integer >= 2, got {protocol.folds}")
    if not protocol.seeds or len(set(protocol.seeds)) != len(protocol.seeds):
        raise ConfigError(f"protocol.seeds: expected distinct seeds, got {protocol.seeds}")
    if not 0.0 < protocol.confidence < 1.0:
        raise ConfigError(
            f"protocol.confidence: expected a value in (0, 1), got {protocol.confidence}"
        )
    if not protocol.metrics:
        raise ConfigError("protocol.metrics: expected at least one metric name, got none")
    if protocol.search.trials < 0:
        raise ConfigError(f"protocol.search.trials: expected >= 0, got {protocol.search.trials}")
    if protocol.search.trials and not protocol.search.space:
        raise ConfigError("protocol.search.space: expected at least one parameter range, got none")
    return protocol


def load_protocol(
    path: str | Path, overrides: Sequence[str] = ()
) -> tuple[ProtocolConfig, ExperimentConfig]:
    """The protocol section and the experiment config of ``path`` with ``overrides`` applied."""
    data = apply_overrides(read_config_file(path), overrides)
    section = data.pop("protocol", None)
    if section is None:
        raise ConfigError(f"{path}: expected a 'protocol' section (folds, seeds, ...)")
    protocol = check_protocol(_from_mapping(ProtocolConfig, section, "protocol"))
    return protocol, config_from_dict(data)
