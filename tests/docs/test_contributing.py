"""CONTRIBUTING.md names files and names in them that exist: a guide that sends a contributor to a
moved file or a renamed table fails here, not in their hands."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "CONTRIBUTING.md"
TOKEN = re.compile(r"(?<!`)`([^`]+)`(?!`)")
PATH = re.compile(r"^(src|tests|configs|benchmarks|docs|scripts)/[\w./<>-]*$")
NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


def test_every_path_the_guide_names_exists() -> None:
    missing = []
    for token in tokens(GUIDE.read_text(encoding="utf-8")):
        if PATH.match(token):
            # a placeholder (<name>.py, <family>.py) stands for a new file in an existing folder
            path = REPO / token.split("<")[0] if "<" in token else REPO / token
            if not path.exists():
                missing.append(token)
    assert missing == []


def test_every_dmlkit_name_the_guide_names_exists() -> None:
    missing = []
    for token in tokens(GUIDE.read_text(encoding="utf-8")):
        name = token.removesuffix("()")
        if not (name.startswith("dmlkit.") and NAME.match(name)):
            continue
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):  # the longest importable module, then attributes
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            try:
                for attr in parts[cut:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                missing.append(token)
            break
    assert missing == []


def file_rows(text: str) -> list[tuple[list[Path], list[str]]]:
    """The table rows whose first cell names existing files: (files, the other cells)."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        files = [REPO / t for t in tokens(cells[0]) if PATH.match(t) and "<" not in t]
        if files and all(f.is_file() for f in files):
            rows.append((files, cells[1:]))
    return rows


ROWS = file_rows(GUIDE.read_text(encoding="utf-8"))


def test_the_guide_has_file_rows() -> None:
    assert len(ROWS) >= 8


@pytest.mark.parametrize(("files", "cells"), ROWS, ids=[r[0][0].name for r in ROWS])
def test_names_in_a_file_row_are_in_that_file(files: list[Path], cells: list[str]) -> None:
    text = "".join(f.read_text(encoding="utf-8") for f in files)
    names = [t for cell in cells for t in tokens(cell) if NAME.match(t)]
    absent = [n for n in names if not re.search(rf"\b{re.escape(n.split('.')[0])}\b", text)]
    assert absent == [], f"{[f.name for f in files]} do not contain {absent}"
