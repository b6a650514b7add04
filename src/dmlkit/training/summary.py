"""The before / after table printed at the end of a run."""

from __future__ import annotations

from dmlkit.evaluation.metric_table import COUNTS
from dmlkit.training.run_metrics import RunMetrics


def metrics_table(metrics: RunMetrics) -> str:
    """Rows: every metric of the final evaluation; columns: before training (when evaluated),
    the model selected on val (or test) and the final model. Values as percentages."""
    if metrics.final is None or metrics.best is None:
        raise ValueError("metrics_table: expected the metrics of a finished run (final and best)")
    columns = []
    if metrics.before:
        columns.append(("before", metrics.before))
    columns.append((f"best (step {metrics.best_step}, on {metrics.selected_on})", metrics.best))
    columns.append((f"final (step {metrics.steps})", metrics.final))
    names = [k for k in metrics.final if k not in COUNTS]
    width = max(len("metric"), *(len(n) for n in names))
    header = "metric".ljust(width) + "".join(
        f"  {title:>{max(len(title), 8)}}" for title, _ in columns
    )
    lines = [header, "-" * len(header)]
    for name in names:
        cells = "".join(
            f"  {100 * values[name]:>{max(len(title), 8)}.2f}" for title, values in columns
        )
        lines.append(name.ljust(width) + cells)
    return "\n".join(lines)
