"""Small Markdown builders shared by the page generators: tables, cells, numbers, code."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Page:
    """A generated page: its path in the site, its navigation title and its Markdown."""

    uri: str
    title: str
    markdown: str


CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)")


def cell(text: object) -> str:
    """``text`` as one Markdown table cell: one line, pipes outside code spans escaped (a
    table row is not split at a pipe inside a code span)."""
    line = " ".join(str(text).split())
    parts: list[str] = []
    last = 0
    for span in CODE_SPAN.finditer(line):
        parts += [line[last : span.start()].replace("|", "\\|"), span.group(0)]
        last = span.end()
    parts.append(line[last:].replace("|", "\\|"))
    return "".join(parts)


def code(text: object) -> str:
    """``text`` as an inline code span (backticks inside are fenced by longer runs)."""
    value = str(text)
    fence = "`"
    while fence in value:
        fence += "`"
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table; every value passes through :func:`cell`."""
    lines = [
        "| " + " | ".join(cell(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def number(value: float | int | bool) -> str:
    """A number for a table: integers as they are, floats to 4 significant digits."""
    if isinstance(value, int):  # bool is an int
        return str(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def fenced(text: str, language: str = "") -> str:
    """``text`` in a fenced code block (the fence outgrows any backtick run inside)."""
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}{language}\n{text.rstrip()}\n{fence}"
