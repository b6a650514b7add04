"""The Reality-Check protocol run: k class-disjoint folds x N seeds, scored on the test classes.

For each seed ``s`` and fold ``f`` of ``k`` the experiment is trained with validation fold ``f``
(``data.val_folds = k``, ``data.val_fold = f``: the other ``k - 1`` folds of the training classes
train) and the checkpoint with the best validation MAP@R is selected; the test classes are only
embedded and scored, never used for a choice. A *run* is one seed:

- separated: the mean over the ``k`` fold models of each test metric (each model's ``D``-d
  embedding alone);
- concatenated: the metrics of ``c = normalize([e_1 / |e_1|, ..., e_k / |e_k|])``, the ``k`` fold
  models' test embeddings ``e_f (N, D)`` concatenated into ``(N, k D)``.

Every metric is reported for the method's evaluated view and for its further views (a two-head
model's ``shared`` head and ``concat`` combination: ``"shared/map@r"``), each view concatenated
over the folds on its own; and, when the test split has query and gallery items (the glyph style
shift), also as ``"query_gallery/map@r"`` (queries against the gallery) for every view.

Each reported value is ``mean ± t-interval`` over the N runs (:func:`~dmlkit.protocol.stats.mean_ci`).
Folder ``out_dir``: ``seed<s>/fold<f>/`` (one trainer run each), ``search/`` (trials, when
searching), ``results.json``, ``results.md`` and ``protocol.yaml`` (the resolved config). After a
search, the seed of the search is not trained again: the best trial's fold models, trained with
that seed and the chosen values, are its runs (``search/trial<n>/fold<f>/``).
Memory: the ``k`` test embeddings of one seed, ``O(k N D)``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from dmlkit.config import ConfigError, ExperimentConfig, config_to_dict
from dmlkit.evaluation import combine_heads
from dmlkit.protocol.search import run_search, with_overrides
from dmlkit.protocol.settings import ProtocolConfig
from dmlkit.protocol.stats import mean_ci
from dmlkit.protocol.table import results_markdown
from dmlkit.training import Callback, Trainer
from dmlkit.training.evaluate import QUERY_GALLERY, metric_columns, score

SELECT_METRIC = "map@r"
MODES = ("separated", "concatenated")


@dataclass(frozen=True)
class FoldResult:
    """One trained fold model: its validation metrics at the selected step, its test metrics and
    test embeddings ``emb (N, D)`` with ``labels (N,)``; ``views`` maps each view of the method
    (``""`` the evaluated one) to its embeddings ``(N, D_view)``; ``query`` the query items of a
    query/gallery test split (``None`` otherwise)."""

    seed: int
    fold: int
    val: dict[str, float]
    test: dict[str, float]
    emb: torch.Tensor
    labels: torch.Tensor
    views: dict[str, torch.Tensor]
    query: torch.Tensor | None = None


def reported_keys(metrics: Sequence[str], views: Sequence[str], query: bool) -> list[str]:
    """``view/[query_gallery/]metric`` for every view (``""`` first: the plain metric names)."""
    sets = ["", f"{QUERY_GALLERY}/"] if query else [""]
    return [f"{v}/{q}{m}" if v else f"{q}{m}" for v in views for q in sets for m in metrics]


def check_selection(config: ExperimentConfig) -> None:
    """The protocol selects on validation MAP@R; ``ConfigError`` when the config says otherwise."""
    if config.train.select_on_test or config.eval.select_metric != SELECT_METRIC:
        raise ConfigError(
            f"protocol: model selection is on validation {SELECT_METRIC}; expected "
            f"train.select_on_test false and eval.select_metric {SELECT_METRIC!r}, got "
            f"{config.train.select_on_test} and {config.eval.select_metric!r}"
        )


def fold_config(config: ExperimentConfig, seed: int, fold: int, folds: int) -> ExperimentConfig:
    """``config`` for fold ``fold`` of ``folds`` with training seed ``seed`` (test embeddings kept,
    no per-run report)."""
    data = dataclasses.replace(config.data, val_classes=0, val_folds=folds, val_fold=fold)
    output = dataclasses.replace(config.output, embeddings=True, report=False)
    return dataclasses.replace(config, seed=seed, data=data, output=output)


def train_fold(
    config: ExperimentConfig,
    seed: int,
    fold: int,
    folds: int,
    run_dir: Path,
    callbacks: Sequence[Callback] = (),
) -> FoldResult:
    """Train fold ``fold`` into ``run_dir``; the selected model's validation and test results."""
    trainer = Trainer(fold_config(config, seed, fold, folds), run_dir, callbacks)
    metrics = trainer.fit()
    saved = np.load(run_dir / "embeddings" / "test.npz")
    emb = torch.from_numpy(saved["emb"])
    main, further = trainer.method.eval_views(emb)
    return FoldResult(
        seed,
        fold,
        metrics["best_val"],
        metrics["best"],
        emb,
        torch.from_numpy(saved["labels"]),
        {"": main, **further},
        torch.from_numpy(saved["query"]) if "query" in saved.files else None,
    )


def concatenated_metrics(
    results: Sequence[FoldResult], config: ExperimentConfig
) -> dict[str, float]:
    """Test metrics of the re-normalised concatenation of the fold models' embeddings, per view
    (``view/metric``; the evaluated view's without prefix), with the query/gallery metrics when
    the test split has queries."""
    labels, query = results[0].labels, results[0].query
    if any(not torch.equal(r.labels, labels) for r in results):
        raise RuntimeError("the fold models were tested on different test items")
    metrics: dict[str, float] = {}
    for view in results[0].views:
        dims = {f"fold{r.fold}": r.views[view].shape[1] for r in results}
        unit = [F.normalize(r.views[view], dim=1) for r in results]
        emb = combine_heads(torch.cat(unit, dim=1), dims, dict.fromkeys(dims, 1.0))
        scored = score(emb, labels, config.eval, config.seed, query)
        metrics.update({f"{view}/{k}" if view else k: v for k, v in scored.items()})
    return metrics


def run_seed(
    protocol: ProtocolConfig,
    config: ExperimentConfig,
    seed: int,
    out_dir: Path,
    callbacks: Sequence[Callback] = (),
    trained: Sequence[FoldResult] | None = None,
) -> dict[str, Any]:
    """The ``k`` fold models of ``seed``: per-fold results, separated and concatenated metrics.
    ``trained``: the fold models of this seed and config, already trained (by the search)."""
    k = protocol.folds
    results = (
        list(trained)
        if trained is not None
        else [
            train_fold(config, seed, f, k, out_dir / f"seed{seed}" / f"fold{f}", callbacks)
            for f in range(k)
        ]
    )
    keys = reported_keys(protocol.metrics, list(results[0].views), results[0].query is not None)
    separated = {m: float(np.mean([r.test[m] for r in results])) for m in keys}
    concatenated = concatenated_metrics(results, config)
    return {
        "seed": seed,
        "folds": [{"fold": r.fold, "val": r.val, "test": r.test} for r in results],
        "separated": separated,
        "concatenated": {m: concatenated[m] for m in keys},
        "dims": {
            "separated": int(results[0].views[""].shape[1]),
            "concatenated": int(sum(r.views[""].shape[1] for r in results)),
        },
        "view_dims": {view: int(emb.shape[1]) for view, emb in results[0].views.items() if view},
    }


def summarize(protocol: ProtocolConfig, runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``{mode: {key: {mean, half_width, n, level}}}`` over the runs, for every reported key
    (the metrics, then those of further views and of the query/gallery set)."""
    return {
        mode: {
            key: dataclasses.asdict(mean_ci([run[mode][key] for run in runs], protocol.confidence))
            for key in runs[0][mode]
        }
        for mode in MODES
    }


def run_protocol(
    protocol: ProtocolConfig,
    config: ExperimentConfig,
    out_dir: str | Path,
    callbacks: Sequence[Callback] = (),
) -> dict[str, Any]:
    """Search (when configured), train every seed's folds, write and return the results."""
    out_dir = Path(out_dir)
    check_selection(config)
    unknown = [
        m for m in protocol.metrics if m not in metric_columns(config.eval.metrics, config.eval.ks)
    ]
    if unknown:
        raise ConfigError(
            f"protocol.metrics: {unknown} are not reported by eval.metrics {config.eval.metrics}"
        )
    search = None
    reused: dict[int, list[FoldResult]] = {}
    if protocol.search.trials:
        trials: dict[str, list[FoldResult]] = {}

        def validation_map_r(trial_config: ExperimentConfig, trial_dir: Path) -> float:
            seed, k = protocol.search.seed, protocol.folds
            folds = [
                train_fold(trial_config, seed, f, k, trial_dir / f"fold{f}", callbacks)
                for f in range(k)
            ]
            trials[trial_dir.name] = folds
            return float(np.mean([r.val[SELECT_METRIC] for r in folds]))

        search = run_search(protocol.search, config, out_dir / "search", validation_map_r)
        config = with_overrides(config, search["overrides"])
        # the best trial trained this very config with the search seed: its fold models are the
        # protocol's models of that seed (training is deterministic for a config and a seed)
        reused[protocol.search.seed] = trials[f"trial{search['number']}"]
    out_dir.mkdir(parents=True, exist_ok=True)
    resolved = {**config_to_dict(config), "protocol": dataclasses.asdict(protocol)}
    (out_dir / "protocol.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    runs = [
        run_seed(protocol, config, seed, out_dir, callbacks, reused.get(seed))
        for seed in protocol.seeds
    ]
    results = {
        "protocol": dataclasses.asdict(protocol),
        "config": config_to_dict(config),
        "search": search,
        "runs": runs,
        "summary": summarize(protocol, runs),
        "dims": runs[0]["dims"],
        "view_dims": runs[0]["view_dims"],
    }
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / "results.md").write_text(results_markdown(results))
    return results
