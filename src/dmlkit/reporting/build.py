"""The report of a finished run: ``RUN_DIR/report/index.html`` plus its figures as PNGs.

    from dmlkit.reporting import build_report
    build_report("runs/demo-20260101-120000")          # or: dmlkit report RUN_DIR

The page is self-contained (figures embedded as base64 data URIs, inline CSS), so the one file
can be mailed; the figures are also saved beside it:

- ``curves.png``: training loss and learning rate, validation and test metrics against the step;
- ``recall_at_k.png``: Recall@K before training, at the end and at the selected step;
- ``embedding_map.png``: t-SNE (after PCA) of at most 2,000 test embeddings, coloured by class;
- ``retrieval.png``: ``num_queries`` random test queries with their ``top_k`` neighbours (by the
  run's similarity, cosine by default), framed green (same class) or red (other class).

The page also has the metrics table (before / final / best and the change) and the config.
The retrieval grid needs the test images: ``dataset`` (the run's test split, anything with
``image(i) -> PIL.Image`` and ``labels``), else the split rebuilt from the saved config; when
neither works the grid is left out with a note saying why. Parts whose input file is missing are
left out the same way (:mod:`dmlkit.reporting.run`). Randomness (queries, map subsample, t-SNE)
comes from ``seed`` only. Needs matplotlib (``pip install dmlkit[plots]``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import yaml

from dmlkit.evaluation.metric_table import COUNTS
from dmlkit.reporting.figures import (
    curves_figure,
    map_figure,
    png_bytes,
    recall_figure,
    require_matplotlib,
    retrieval_figure,
)
from dmlkit.reporting.fonts import label_fonts
from dmlkit.reporting.neighbours import MIN_MAP_POINTS, project_2d, retrieve
from dmlkit.reporting.page import Section, metrics_table, render_page
from dmlkit.reporting.run import RunFolder, TestEmbeddings, load_run
from dmlkit.training.run_metrics import RunMetrics

EVAL_FIELDS = ("kind", "step", "epoch", "split")
NAME_LENGTH = 18


class ImageDataset(Protocol):
    """What the retrieval grid needs from a dataset: raw images and labels by item index."""

    labels: Any

    def image(self, i: int) -> Any: ...


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return value


def _section(out: Path, name: str, title: str, fig: Any, caption: str) -> Section:
    png = png_bytes(fig)
    (out / name).write_bytes(png)
    return Section(title, png=png, alt=title, caption=caption)


def _curve_metrics(eval_rows: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for row in eval_rows:
        names += [k for k in row if k not in EVAL_FIELDS and k not in COUNTS and k not in names]
    return names


def _config_get(config: dict[str, Any] | None, section: str, key: str) -> Any:
    value = (config or {}).get(section)
    return value.get(key) if isinstance(value, dict) else None


def _summary(run: RunFolder) -> list[str]:
    m, cfg = run.metrics, run.config
    items = [f"dataset {m.dataset or _config_get(cfg, 'data', 'name')}"]
    model = _config_get(cfg, "model", "name")
    if model is not None:
        items.append(f"model {model} ({_config_get(cfg, 'model', 'embedding_dim')}-d)")
    loss = _config_get(cfg, "loss", "name")
    if loss is not None:
        items.append(f"loss {loss}")
    if m.steps is not None:
        timing = ""
        if m.train_time_s is not None:
            timing = f" in {m.train_time_s / 60:.1f} min"
        if m.images_per_s is not None:
            timing += f" ({m.images_per_s:.0f} images/s)"
        items.append(f"{m.steps} steps{timing}")
    if m.best_step is not None:
        by = f" by {m.selection_metric}" if m.selection_metric else ""
        items.append(f"selected step {m.best_step} on {m.selected_on or '?'}{by}")
    return items


def _recall_curves(metrics: RunMetrics) -> dict[str, dict[str, float]]:
    curves = {}
    for values, label in ((metrics.before, "before training"), (metrics.final, "final")):
        if values:
            curves[label] = values
    if metrics.best and metrics.best != metrics.final:
        curves[f"selected (step {metrics.best_step})"] = metrics.best
    return curves


def _rebuild_test_split(config: dict[str, Any] | None) -> tuple[ImageDataset | None, str]:
    """The run's test split from its saved config, or ``None`` and why not."""
    if config is None:
        return None, "no config.yaml to rebuild the test split from"
    from dmlkit.config import config_from_dict
    from dmlkit.training.build import build_split

    try:
        return build_split(config_from_dict(config).data, "test", train=False), ""
    except (OSError, ValueError, KeyError, TypeError, ImportError) as err:
        return None, f"the test split could not be rebuilt from config.yaml ({err})"


def _matches(dataset: ImageDataset, emb: TestEmbeddings) -> str:
    """Empty when ``dataset`` holds the embedded items (same labels at ``index``), else why not."""
    labels = np.asarray(dataset.labels)
    if len(emb.index) and (emb.index.min() < 0 or emb.index.max() >= len(labels)):
        return (
            f"the dataset has {len(labels)} items but the embeddings index up to {emb.index.max()}"
        )
    if not np.array_equal(labels[emb.index], emb.labels):
        return "the dataset's labels differ from the saved embeddings' labels"
    return ""


def _class_namer(dataset: ImageDataset | None) -> tuple[Callable[[int], str], list[str]]:
    """The label of a class id (its name, shortened, in characters the figures can draw) and the
    font families to draw labels with (:func:`~dmlkit.reporting.fonts.label_fonts`)."""
    names = [str(n) for n in getattr(dataset, "class_names", None) or []]
    fonts = label_fonts(names)

    def name(label: int) -> str:
        text = fonts.printable(names[label]) if 0 <= label < len(names) else f"class {label}"
        return text if len(text) <= NAME_LENGTH else text[: NAME_LENGTH - 1] + "…"

    return name, fonts.families


def build_report(
    run_dir: str | Path,
    dataset: ImageDataset | None = None,
    top_k: int = 5,
    num_queries: int = 8,
    seed: int = 0,
) -> Path:
    """Write ``RUN_DIR/report/index.html`` and its PNGs (module docstring); returns the page."""
    require_matplotlib()
    top_k = _positive_int("top_k", top_k)
    num_queries = _positive_int("num_queries", num_queries)
    run = load_run(run_dir)
    out = run.path / "report"
    out.mkdir(exist_ok=True)
    notes = list(run.notes)
    metrics = run.metrics
    if metrics.selected_on == "test":
        notes.append(
            "The model was selected on the test split (test-set feedback): the 'best' column is "
            "optimistic; select on a validation split for an unbiased estimate."
        )
    sections = []

    if run.train_rows or run.eval_rows:
        fig = curves_figure(run.train_rows, run.eval_rows, _curve_metrics(run.eval_rows),
                            metrics.best_step, metrics.selected_on or "")  # fmt: skip
        sections.append(_section(out, "curves.png", "Training curves", fig,
                                 "Loss and learning rate per logged step; metrics per evaluation."))  # fmt: skip
    else:
        sections.append(Section("Training curves", note="No log records."))

    ks = [int(k) for k in metrics.ks]
    curves = _recall_curves(metrics)
    if ks and any(f"recall@{k}" in c for c in curves.values() for k in ks):
        sections.append(_section(out, "recall_at_k.png", "Recall@K", recall_figure(ks, curves),
                                 "Leave-one-out Recall@K on the test split."))  # fmt: skip
    else:
        sections.append(Section("Recall@K", note="metrics.json has no recall@K values."))

    emb = run.embeddings
    if emb is not None:
        why = ""
        if dataset is None:
            dataset, why = _rebuild_test_split(run.config)
        if dataset is not None:
            why = _matches(dataset, emb)
            dataset = None if why else dataset
        if why:
            notes.append(f"Retrieval examples left out: {why}.")
    class_name, families = _class_namer(dataset)

    if emb is not None and len(emb.emb) >= MIN_MAP_POINTS:
        points, rows = project_2d(emb.emb, seed)
        fig = map_figure(points, emb.labels[rows], class_name, families, seed)
        sections.append(_section(out, "embedding_map.png", "Test embeddings", fig,
                                 "PCA then t-SNE of a random subsample; colour = class."))  # fmt: skip
    else:
        why = "no embeddings" if emb is None else f"fewer than {MIN_MAP_POINTS} embeddings"
        sections.append(Section("Test embeddings", note=f"No embedding map: {why}."))

    if emb is not None and dataset is not None and len(emb.emb) >= 2:
        k = min(top_k, len(emb.emb) - 1)
        q = min(num_queries, len(emb.emb))
        if (k, q) != (top_k, num_queries):
            notes.append(f"Retrieval grid reduced to {q} queries x top {k} ({len(emb.emb)} items).")
        metric = _config_get(run.config, "eval", "similarity") or "cosine"
        result = retrieve(emb.emb, emb.labels, q, k, seed, metric)
        source = dataset

        def image(row: int) -> Any:
            return source.image(int(emb.index[row]))

        fig = retrieval_figure(result, emb.labels, image, class_name, families)
        sections.append(_section(out, "retrieval.png", "Retrieval examples", fig,
                                 f"Neighbours by {metric} similarity among all test items."))  # fmt: skip
    else:
        sections.append(Section("Retrieval examples", note="No retrieval grid (see the notes)."))

    config_text = None
    if run.config is not None:
        config_text = yaml.safe_dump(run.config, sort_keys=False, default_flow_style=False)
    page = render_page(
        f"dmlkit report: {run.path.name}",
        _summary(run),
        metrics_table(metrics, COUNTS),
        sections,
        notes,
        config_text,
    )
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
