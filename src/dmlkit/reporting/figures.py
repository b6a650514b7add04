"""The report's figures, drawn with matplotlib's object API (no pyplot, no global backend).

- :func:`curves_figure`: training loss and learning rate against the step; validation and test
  metrics (in %) against the step, the selected step marked.
- :func:`recall_figure`: Recall@K against K before training, at the end and at the selected step.
- :func:`map_figure`: the 2-D embedding map, one colour per class.
- :func:`retrieval_figure`: one row per query: the query (blue frame) and its top-k neighbours,
  framed green when they share the query's class and red when not.

matplotlib is the optional extra ``plots``; :func:`require_matplotlib` names it when missing.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from dmlkit.reporting.neighbours import Retrieval

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from PIL import Image

QUERY, CORRECT, WRONG = "#1f77b4", "#2ca02c", "#d62728"
THUMBNAIL = 160
LEGEND_CLASSES = 20
SMOOTHING = 20  # the loss curve's running mean spans 1/20 of the logged points


def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """``out[i] = mean(values[max(0, i - window + 1) : i + 1])`` over the finite values (NaN
    when there are none), by prefix sums: O(n) time and memory."""
    finite = np.isfinite(values)
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
    counts = np.concatenate([[0], np.cumsum(finite)])
    end = np.arange(1, len(values) + 1)
    start = np.maximum(0, end - window)
    n = counts[end] - counts[start]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (sums[end] - sums[start]) / n, math.nan)


def require_matplotlib() -> None:
    """``ImportError`` naming ``pip install dmlkit[plots]`` when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as err:
        raise ImportError("the report needs matplotlib: pip install dmlkit[plots]") from err


def png_bytes(fig: Figure) -> bytes:
    """``fig`` as PNG bytes (100 dpi, white background)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, facecolor="white")
    return buffer.getvalue()


def _new_figure(
    width: float, height: float, layout: Literal["constrained"] | None = "constrained"
) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout=layout)


def _message(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _metric_panel(
    ax: Axes, rows: Sequence[dict[str, Any]], names: Sequence[str], title: str, best_step: Any
) -> None:
    ax.set_title(title)
    if not rows:
        _message(ax, "no evaluations")
        return
    steps = [row["step"] for row in rows]
    for name in names:
        values = [
            100 * row[name] if isinstance(row.get(name), (int, float)) else math.nan for row in rows
        ]
        ax.plot(steps, values, marker="o", markersize=3, label=name)
    if isinstance(best_step, int):
        ax.axvline(
            best_step,
            color="0.5",
            linestyle="--",
            linewidth=1,
            label=f"selected (step {best_step})",
        )
    ax.set_xlabel("step")
    ax.set_ylabel("%")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")


def curves_figure(
    train_rows: Sequence[dict[str, Any]],
    eval_rows: Sequence[dict[str, Any]],
    metric_names: Sequence[str],
    best_step: Any,
    selected_on: str,
) -> Figure:
    """Loss, learning rate and per-split metric curves (module docstring)."""
    fig = _new_figure(12, 7.5)
    (loss_ax, lr_ax), (val_ax, test_ax) = fig.subplots(2, 2)
    steps = [row["step"] for row in train_rows]
    for ax, key, title in (
        (loss_ax, "loss", "training loss"),
        (lr_ax, "lr", "learning rate (first group)"),
    ):
        ax.set_title(title)
        if not train_rows:
            _message(ax, "no training records")
            continue
        values = np.array([row.get(key, math.nan) for row in train_rows], dtype=np.float64)
        window = len(values) // SMOOTHING
        if key == "loss" and window > 1:
            ax.plot(steps, values, linewidth=0.8, color="0.7", label="logged batches")
            ax.plot(steps, trailing_mean(values, window), linewidth=1.6,
                    label=f"mean of the last {window} logs")  # fmt: skip
            ax.legend(fontsize=8)
        else:
            ax.plot(steps, values, linewidth=1.2)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax, split in ((val_ax, "val"), (test_ax, "test")):
        rows = [row for row in eval_rows if row.get("split") == split]
        title = f"{split} metrics" + (" (model selection)" if split == selected_on else "")
        _metric_panel(ax, rows, metric_names, title, best_step)
    return fig


def recall_figure(ks: Sequence[int], curves: dict[str, dict[str, float]]) -> Figure:
    """Recall@K (in %) against K for each named metrics dict in ``curves``."""
    fig = _new_figure(6.5, 4.2)
    ax = fig.subplots()
    for (name, metrics), marker in zip(curves.items(), "osD^v", strict=False):
        values = [100 * metrics.get(f"recall@{k}", math.nan) for k in ks]
        ax.plot(ks, values, marker=marker, label=name)
    ax.margins(y=0.1)
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(ks), [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("K")
    ax.set_ylabel("Recall@K (%)")
    ax.set_title("Recall@K on the test split")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def class_colours(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(classes (C,), colours (C, 4))``: tab10/tab20 for up to 20 classes, else evenly spaced
    hues of ``turbo`` in an order shuffled with ``seed`` so that consecutive labels differ."""
    from matplotlib import colormaps

    classes = np.unique(labels)
    c = len(classes)
    if c <= LEGEND_CLASSES:
        cmap = colormaps["tab10" if c <= 10 else "tab20"]
        return classes, cmap(np.arange(c) % cmap.N)
    order = np.random.default_rng(seed).permutation(c)
    return classes, colormaps["turbo"]((order + 0.5) / c)


def map_figure(
    points: np.ndarray,
    labels: np.ndarray,
    class_name: Callable[[int], str],
    families: Sequence[str],
    seed: int,
) -> Figure:
    """Scatter of ``points (M, 2)`` coloured by ``labels (M,)``; a legend for <= 20 classes, its
    class names drawn with the font ``families``."""
    fig = _new_figure(7.5, 6.5)
    ax = fig.subplots()
    classes, colours = class_colours(labels, seed)
    for c, colour in zip(classes, colours, strict=True):
        mask = labels == c
        ax.scatter(points[mask, 0], points[mask, 1], s=9, color=colour, alpha=0.85,
                   linewidths=0, label=class_name(int(c)))  # fmt: skip
    ax.set_title(f"t-SNE of {len(points)} test embeddings ({len(classes)} classes)")
    ax.set_xticks([])
    ax.set_yticks([])
    if len(classes) <= LEGEND_CLASSES:
        ax.legend(prop={"family": list(families), "size": 7}, markerscale=1.5,
                  loc="center left", bbox_to_anchor=(1.0, 0.5))  # fmt: skip
    return fig


def _thumbnail(image: Image.Image) -> np.ndarray:
    image = image.convert("L" if image.mode in ("1", "L", "I", "F") else "RGB")
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    return np.asarray(image)


def _framed(ax: Axes, pixels: np.ndarray, colour: str, title: str, families: Sequence[str]) -> None:
    grey = pixels.ndim == 2
    ax.imshow(pixels, cmap="gray" if grey else None, vmin=0, vmax=255,
              interpolation="nearest" if max(pixels.shape[:2]) < 64 else "antialiased")  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(5)
    ax.set_title(title, fontsize=8, color=colour, fontfamily=list(families))


def retrieval_figure(
    result: Retrieval,
    labels: np.ndarray,
    image: Callable[[int], Image.Image],
    class_name: Callable[[int], str],
    families: Sequence[str],
) -> Figure:
    """The query/neighbour grid (module docstring); ``image(row)`` gives an embedding row's
    picture and ``labels`` are the rows' labels; class names are drawn with the font
    ``families``."""
    q, k = result.neighbours.shape
    # a fixed grid (no layout engine): inches of title band on top, cells of 1.55 x 1.75 in
    height = 1.75 * q + 0.45
    fig = _new_figure(1.55 * (k + 1), height, layout=None)
    grid = {"left": 0.01, "right": 0.99, "bottom": 0.01, "top": 1 - 0.7 / height}
    axes = np.asarray(
        fig.subplots(q, k + 1, squeeze=False, gridspec_kw={**grid, "wspace": 0.12, "hspace": 0.5})
    )
    for r, query in enumerate(result.queries):
        _framed(axes[r, 0], _thumbnail(image(int(query))), QUERY,
                f"query\n{class_name(int(labels[query]))}", families)  # fmt: skip
        for j in range(k):
            row = int(result.neighbours[r, j])
            colour = CORRECT if result.correct[r, j] else WRONG
            title = f"{j + 1}. {class_name(int(labels[row]))}\nsim {result.scores[r, j]:.3f}"
            _framed(axes[r, j + 1], _thumbnail(image(row)), colour, title, families)
    hits = int(result.correct[:, 0].sum())
    fig.suptitle(
        f"{q} random test queries and their top {k} neighbours "
        f"(green: same class, red: other class; {hits}/{q} correct at rank 1)",
        fontsize=10,
        y=1 - 0.12 / height,
    )
    return fig
