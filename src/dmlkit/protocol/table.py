"""The protocol's results as a Markdown table (the JSON is written by the runner)."""

from __future__ import annotations

from typing import Any

from dmlkit.protocol.stats import Estimate


def results_markdown(results: dict[str, Any]) -> str:
    """A title, one row per mode (``mean ± half width`` per metric), one row per run, and the
    search's chosen values when there was a search."""
    protocol, config, summary = results["protocol"], results["config"], results["summary"]
    metrics = protocol["metrics"]
    level = round(100 * protocol["confidence"])
    lines = [
        f"# Reality-Check protocol: {config['data']['name']}, loss {config['loss']['name']}",
        "",
        f"{protocol['folds']} class-disjoint folds of the training classes, selection on "
        f"validation MAP@R, seeds {protocol['seeds']}; test classes, mean ± {level}% Student-t "
        "interval over the runs.",
        "",
        "| mode | dim | " + " | ".join(metrics) + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    for mode, values in summary.items():
        cells = [Estimate(**values[m]).text() for m in metrics]
        lines.append(f"| {mode} | {results['dims'][mode]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| seed | mode | " + " | ".join(metrics) + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    for run in results["runs"]:
        for mode in summary:
            cells = [f"{run[mode][m]:.4f}" for m in metrics]
            lines.append(f"| {run['seed']} | {mode} | " + " | ".join(cells) + " |")
    if results["search"] is not None:
        search = results["search"]
        lines += [
            "",
            f"Search: {len(search['trials'])} trials, best validation MAP@R "
            f"{search['value']:.4f} with " + ", ".join(f"`{o}`" for o in search["overrides"]),
        ]
    return "\n".join(lines) + "\n"
