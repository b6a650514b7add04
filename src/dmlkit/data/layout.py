"""Finding a dataset's files under a local root, with errors that show the expected layout."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def resolve_root(root: str | Path | None, dataset: str, layout: str) -> Path:
    """``root`` as an existing directory; ``ValueError``/``FileNotFoundError`` showing ``layout``."""
    if root is None:
        raise ValueError(f"{dataset}: expected root=<local directory>, got None.\n{layout}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{dataset}: root directory {path} does not exist.\n{layout}")
    return path


def locate(
    root: str | Path | None, files: Sequence[str], subdirs: Sequence[str], dataset: str, layout: str
) -> Path:
    """The directory, ``root`` itself or ``root/<subdir>``, that holds all of ``files``.

    The first directory holding ``files[0]`` is chosen; a missing file there raises
    ``FileNotFoundError`` naming it and showing ``layout``.
    """
    path = resolve_root(root, dataset, layout)
    candidates = [path, *(path / s for s in subdirs)]
    base = next((c for c in candidates if (c / files[0]).is_file()), candidates[-1])
    for name in files:
        if not (base / name).is_file():
            raise FileNotFoundError(f"{dataset}: missing file {base / name}.\n{layout}")
    return base


def read_rows(path: Path, columns: int, skip: int = 0) -> list[list[str]]:
    """Whitespace-separated rows of ``path`` after ``skip`` header lines, blank lines ignored.

    Raises ``ValueError`` naming the file and line when a row has fewer than ``columns`` fields.
    """
    rows = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            fields = line.split()
            if number <= skip or not fields:
                continue
            if len(fields) < columns:
                raise ValueError(
                    f"{path}:{number}: expected {columns} whitespace-separated fields, "
                    f"got {line.rstrip()!r}"
                )
            rows.append(fields[:columns])
    return rows
