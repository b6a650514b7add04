"""The protocol's results as a Markdown table (the JSON is written by the runner)."""

from __future__ import annotations

from typing import Any

from dmlkit.protocol.stats import Estimate


def _prefixes(summary: dict[str, Any], metrics: list[str]) -> list[str]:
    """The prefixes of the reported keys beyond the plain metrics (``"shared/"``,
    ``"query_gallery/"``, ``"shared/query_gallery/"`` ...), in order of appearance."""
    prefixes: list[str] = []
    for key in next(iter(summary.values())):
        for m in metrics:
            if key.endswith("/" + m) and key[: -len(m)] not in prefixes:
                prefixes.append(key[: -len(m)])
    return prefixes


def _dim(results: dict[str, Any], mode: str, prefix: str) -> int:
    view = prefix.removesuffix("query_gallery/").rstrip("/")
    folds = results["protocol"]["folds"]
    if not view:
        return int(results["dims"][mode])
    dim = int(results.get("view_dims", {}).get(view, 0))
    return dim * folds if mode == "concatenated" else dim


def results_markdown(results: dict[str, Any]) -> str:
    """A title, one row per mode (``mean ± half width`` per metric), the further views and the
    query/gallery set (when reported) one row per mode and view, one row per run, and the search's
    chosen values when there was a search."""
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
    prefixes = _prefixes(summary, metrics)
    if prefixes:
        lines += [
            "",
            "Further views (a two-head model's heads and combinations) and the query/gallery set "
            "(queries of held-out faces against the gallery of the others):",
            "",
            "| mode | view | dim | " + " | ".join(metrics) + " |",
            "|---|---|---|" + "---|" * len(metrics),
        ]
        for prefix in prefixes:
            for mode, values in summary.items():
                cells = [Estimate(**values[prefix + m]).text() for m in metrics]
                dim = _dim(results, mode, prefix)
                row = f"| {mode} | {prefix.rstrip('/')} | {dim} | "
                lines.append(row + " | ".join(cells) + " |")
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
