"""Hyperparameter search with Optuna (optional dependency) on validation MAP@R.

Each trial draws one value per entry of ``protocol.search.space`` (a config path such as
``optimizer.lr`` -> ``{low, high, log}``, integer when both bounds are integers, or
``{choices: [...]}``), applies them as ``--set`` overrides and scores the config with the
objective (the protocol uses the mean validation MAP@R of the k fold models of one seed). The TPE
sampler is seeded with ``search.seed``, so a search is reproducible. With ``include_config`` the
first trial is the config's own values of the space (which must lie in it). The test classes play
no part.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from dmlkit.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
)
from dmlkit.protocol.settings import SearchConfig

RANGE_KEYS = {"low", "high", "log"}
Objective = Callable[[ExperimentConfig, Path], float]


def require_optuna() -> ModuleType:
    """The ``optuna`` module, or a ``ConfigError`` that says how to install it."""
    try:
        import optuna
    except ModuleNotFoundError:
        raise ConfigError(
            "protocol.search needs Optuna, an optional dependency: pip install 'dmlkit[search]' "
            "(or pip install optuna), or set protocol.search.trials: 0"
        ) from None
    return optuna


def with_overrides(config: ExperimentConfig, overrides: Sequence[str]) -> ExperimentConfig:
    """``config`` with ``a.b=c`` overrides applied and validated again."""
    return config_from_dict(apply_overrides(config_to_dict(config), overrides))


def check_space(space: Mapping[str, Any]) -> None:
    """``ConfigError`` unless every entry is ``{low, high[, log]}`` with low < high or
    ``{choices: [non-empty list]}``."""
    for path, spec in space.items():
        where = f"protocol.search.space.{path}"
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where}: expected {{low, high, log}} or {{choices}}, got {spec!r}")
        if set(spec) == {"choices"}:
            if not isinstance(spec["choices"], list) or not spec["choices"]:
                raise ConfigError(
                    f"{where}.choices: expected a non-empty list, got {spec['choices']!r}"
                )
            continue
        low, high = spec.get("low"), spec.get("high")
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
        if not set(spec) <= RANGE_KEYS or not numbers or not low < high:  # type: ignore[operator]
            raise ConfigError(
                f"{where}: expected {{low, high, log}} with numbers low < high, or {{choices: "
                f"[...]}}, got {dict(spec)}"
            )
        if spec.get("log") and low <= 0:  # type: ignore[operator]
            raise ConfigError(f"{where}: a log range needs low > 0, got {low}")


def suggest(trial: Any, space: Mapping[str, Any]) -> list[str]:
    """One ``path=value`` override per space entry, drawn by the Optuna ``trial``."""
    overrides = []
    for path, spec in space.items():
        if "choices" in spec:
            value = trial.suggest_categorical(path, spec["choices"])
        elif isinstance(spec["low"], int) and isinstance(spec["high"], int):
            value = trial.suggest_int(path, spec["low"], spec["high"], log=bool(spec.get("log")))
        else:
            value = trial.suggest_float(
                path, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log"))
            )
        overrides.append(f"{path}={json.dumps(value)}")
    return overrides


def config_values(config: ExperimentConfig, space: Mapping[str, Any]) -> dict[str, Any]:
    """The config's value at each path of ``space``; ``ConfigError`` when a path has no value or a
    value outside its range or choices."""
    data = config_to_dict(config)
    values: dict[str, Any] = {}
    for path, spec in space.items():
        node: Any = data
        for part in path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise ConfigError(
                    f"protocol.search.include_config: the config sets no value at {path!r}; set "
                    "it in the config (or its overrides) or leave include_config off"
                )
            node = node[part]
        inside = (
            node in spec["choices"]
            if "choices" in spec
            else (isinstance(node, (int, float)) and spec["low"] <= node <= spec["high"])
        )
        if not inside:
            raise ConfigError(
                f"protocol.search.include_config: {path}={node!r} lies outside its space {spec}"
            )
        values[path] = node
    return values


def run_search(
    search: SearchConfig, config: ExperimentConfig, out_dir: Path, objective: Objective
) -> dict[str, Any]:
    """Run ``search.trials`` trials maximising ``objective(config with the trial's values,
    out_dir / "trial<n>")``; returns the best ``overrides``, ``value``, its trial ``number`` and
    every trial."""
    optuna = require_optuna()
    check_space(search.space)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=search.seed)
    )
    trials: list[dict[str, Any]] = []
    if search.include_config:
        study.enqueue_trial(config_values(config, search.space))

    def score(trial: Any) -> float:
        overrides = suggest(trial, search.space)
        value = objective(with_overrides(config, overrides), out_dir / f"trial{trial.number}")
        trials.append({"number": trial.number, "overrides": overrides, "value": value})
        return value

    study.optimize(score, n_trials=search.trials)
    best = trials[study.best_trial.number]
    return {
        "overrides": best["overrides"],
        "value": best["value"],
        "number": best["number"],
        "trials": trials,
    }
