"""The search results page: one self-contained HTML file (thumbnails as base64 PNG data URIs),
a row per query with its image, then its neighbours best first with score, class and, with a
calibrated threshold, a match / no match mark. Every text is HTML-escaped."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

from dmlkit.retrieval.retriever import Neighbour

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 1.5em;
       color: #222; }
.row { display: flex; gap: 10px; align-items: flex-start; margin-bottom: 14px; }
.cell { width: 112px; font-size: 12px; text-align: center; word-break: break-all; }
.cell img { width: 96px; height: 96px; object-fit: contain; image-rendering: pixelated;
            background: #eee; border: 3px solid #ccc; }
.query img { border-color: #1f5fbf; }
.match img { border-color: #1a7f37; } .nomatch img { border-color: #c62828; }
.missing { width: 96px; height: 96px; background: #eee; display: inline-block; }
"""


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for ``png``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _cell(png: bytes | None, lines: Sequence[str], kind: str) -> str:
    image = f'<img src="{data_uri(png)}" alt="">' if png else '<span class="missing"></span>'
    text = "<br>".join(html.escape(line) for line in lines if line)
    return f'<div class="cell {kind}">{image}<br>{text}</div>'


def results_page(
    queries: Sequence[tuple[str, bytes | None]],
    results: Sequence[Sequence[Neighbour]],
    thumbnails: dict[int, bytes | None],
    threshold: float | None,
) -> str:
    """The page for ``queries`` (``(name, thumbnail PNG)``) and their ``results``;
    ``thumbnails`` maps item ids to PNGs (``None``: no image)."""
    note = (
        f"match threshold {threshold:.4f} (score &ge; threshold: match)"
        if threshold is not None
        else "no calibrated threshold (dmlkit calibrate stores one in the index)"
    )
    rows = []
    for (name, png), hits in zip(queries, results, strict=True):
        cells = [_cell(png, ["query", name], "query")]
        for rank, hit in enumerate(hits, 1):
            mark = {True: "match", False: "no match", None: ""}[hit.match]
            kind = {True: "match", False: "nomatch", None: ""}[hit.match]
            lines = [f"#{rank} id {hit.id}", f"{hit.score:.4f}", hit.class_name, mark]
            cells.append(_cell(thumbnails.get(hit.id), lines, kind))
        rows.append(f'<div class="row">{"".join(cells)}</div>')
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>dmlkit search</title><style>{STYLE}</style></head><body>"
        f"<h1>Search results</h1><p>{note}</p>{''.join(rows)}</body></html>\n"
    )
