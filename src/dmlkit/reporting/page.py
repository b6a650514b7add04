"""The report page: one self-contained HTML file (inline CSS, figures as base64 PNG data URIs),
so it can be mailed or archived alone. Every text from the run is HTML-escaped."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from dmlkit.training.run_metrics import RunMetrics

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1150px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
.summary { color: #555; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 0.25em 0.9em; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 2px solid #bbb; }
td.up { color: #1a7f37; } td.down { color: #c62828; }
figure { margin: 0.8em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.note { color: #8a5300; }
"""


@dataclass
class Section:
    """A titled figure: ``png`` bytes and a caption, or a note when the figure is missing."""

    title: str
    png: bytes | None = None
    alt: str = ""
    caption: str = ""
    note: str = ""


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for ``png``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _finite(value: object) -> TypeGuard[float]:
    """Whether ``value`` is a finite number (a metric that can be differenced)."""
    return isinstance(value, (int, float)) and math.isfinite(value)


def format_value(name: str, value: Any, counts: Sequence[str]) -> str:
    """A metric for the table: counts as integers, fractions as percentages, blanks for none."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return ""
    if name in counts:
        return str(int(value))
    return "nan" if not math.isfinite(value) else f"{100 * value:.2f}"


def metrics_table(metrics: RunMetrics, counts: Sequence[str]) -> str:
    """Rows = metrics, columns = before / final / best and the change final - before (points)."""
    values = {
        c: v
        for c, v in (("before", metrics.before), ("final", metrics.final), ("best", metrics.best))
        if v is not None
    }
    columns = list(values)
    if not columns:
        return '<p class="note">metrics.json has no before/final/best metrics.</p>'
    names: list[str] = []
    for column in columns:
        names += [n for n in values[column] if n not in names]
    best_step = metrics.best_step
    heads = [
        f"best (step {best_step})" if c == "best" and best_step is not None else c for c in columns
    ]
    change = "before" in columns and "final" in columns
    header = "".join(f"<th>{html.escape(h)}</th>" for h in ["metric", *heads])
    header += "<th>final &minus; before</th>" if change else ""
    body = []
    for name in names:
        cells = [f"<td>{html.escape(name)}</td>"]
        cells += [f"<td>{format_value(name, values[c].get(name), counts)}</td>" for c in columns]
        if change:
            a, b = values["before"].get(name), values["final"].get(name)
            if _finite(a) and _finite(b) and name not in counts:
                delta = 100 * (b - a)
                kind = "up" if delta > 0 else "down" if delta < 0 else ""
                cells.append(f'<td class="{kind}">{delta:+.2f}</td>')
            else:
                cells.append("<td></td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        '<p class="summary">Values in % (counts as numbers), on the test split.</p>'
    )


def _section(section: Section) -> str:
    title = f"<h2>{html.escape(section.title)}</h2>"
    if section.png is None:
        return title + f'<p class="note">{html.escape(section.note)}</p>'
    caption = f"<figcaption>{html.escape(section.caption)}</figcaption>" if section.caption else ""
    return (
        f'{title}<figure><img src="{data_uri(section.png)}" alt="{html.escape(section.alt)}">'
        f"{caption}</figure>"
    )


def render_page(
    title: str,
    summary: Sequence[str],
    table: str,
    sections: Sequence[Section],
    notes: Sequence[str],
    config_text: str | None,
) -> str:
    """The whole HTML document."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="summary">{" &middot; ".join(html.escape(s) for s in summary)}</p>',
        "<h2>Metrics</h2>",
        table,
        *(_section(s) for s in sections),
    ]
    if notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        parts.append(f'<h2>Notes</h2><ul class="note">{items}</ul>')
    if config_text is not None:
        parts.append(f"<h2>Configuration</h2><pre>{html.escape(config_text)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
