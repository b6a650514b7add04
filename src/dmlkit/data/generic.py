"""Your own images: a class-per-directory folder (``"folder"``) or a CSV listing (``"csv"``).

Without a predefined split, classes are split class-disjointly: a seeded ``test_fraction`` of the
classes (default half) is the test split, the rest train (``val_classes`` then holds out training
classes for ``"val"``). Class keys are the directory names or CSV labels as strings; labels are
numbered in their sorted order.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dmlkit.data.base import FileDataset, Transform
from dmlkit.data.build import ItemTable, file_split
from dmlkit.data.layout import resolve_root
from dmlkit.data.registry import SplitRequest, register_dataset
from dmlkit.data.splits import QUERY_GALLERY, SPLITS, class_disjoint_parts

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
PARTS = (*SPLITS, *QUERY_GALLERY)

FOLDER_LAYOUT = f"""expected layout (one directory per class, images at any depth below it):
  <root>/<class name>/<image>            split class-disjointly with test_fraction and seed
or predefined parts:
  <root>/train/<class name>/<image>, <root>/test/<class name>/<image> [, <root>/val/...]
image suffixes: {" ".join(IMAGE_SUFFIXES)}"""

CSV_LAYOUT = """expected: root = a CSV file with a header row naming the columns
  path,label[,split]
path relative to the CSV's directory (or absolute), label any class name, split one of
train/val/test/query/gallery (without a split column classes are split with test_fraction)."""


def class_images(directory: Path) -> list[tuple[str, Path]]:
    """``(class name, image path)`` for every image below each class subdirectory, sorted."""
    found = []
    for class_dir in sorted(p for p in directory.iterdir() if p.is_dir()):
        for path in sorted(class_dir.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                found.append((class_dir.name, path))
    return found


@register_dataset("folder")
def folder(
    request: SplitRequest, *, on_corrupt: str = "error", test_fraction: float = 0.5
) -> FileDataset:
    """Images in class subdirectories of ``root`` (layout in ``FOLDER_LAYOUT``)."""
    base = resolve_root(request.root, "folder", FOLDER_LAYOUT)
    predefined = (base / "train").is_dir() and (base / "test").is_dir()
    present = [p for p in SPLITS if (base / p).is_dir()] if predefined else [""]
    entries = [(part, *item) for part in present for item in class_images(base / part)]
    if not entries:
        raise FileNotFoundError(
            f"folder: no images in class subdirectories of {base}.\n{FOLDER_LAYOUT}"
        )
    classes = np.array([e[1] for e in entries])
    paths = [e[2] for e in entries]
    parts = (
        np.array([e[0] for e in entries])
        if predefined
        else class_disjoint_parts(classes, test_fraction, request.seed)
    )
    return file_split(ItemTable("folder", paths, classes, parts), request, on_corrupt)


def _csv_rows(listing: Path) -> list[dict[str, str]]:
    """The rows of a CSV listing with at least the columns ``path`` and ``label``."""
    with open(listing, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        if "path" not in columns or "label" not in columns:
            raise ValueError(
                f"csv: {listing}: expected columns path,label[,split], got {columns}.\n{CSV_LAYOUT}"
            )
        rows = list(reader)
    if not rows:
        raise ValueError(f"csv: {listing} lists no images")
    return rows


@register_dataset("csv")
def csv_listing(
    request: SplitRequest, *, on_corrupt: str = "error", test_fraction: float = 0.5
) -> FileDataset:
    """Images listed in the CSV file ``root`` (format in ``CSV_LAYOUT``)."""
    root = request.root
    if root is None or not Path(root).expanduser().is_file():
        raise FileNotFoundError(
            f"csv: expected root = an existing CSV file, got {root!r}.\n{CSV_LAYOUT}"
        )
    listing = Path(root).expanduser()
    rows = _csv_rows(listing)
    has_split = "split" in rows[0]
    for number, row in enumerate(rows, start=2):
        if not row["path"] or not row["label"] or (has_split and row["split"] not in PARTS):
            raise ValueError(
                f"csv: {listing}:{number}: expected a path, a label"
                f"{' and a split in ' + '/'.join(PARTS) if has_split else ''}, got {row}"
            )
    classes = np.array([row["label"] for row in rows])
    paths = [listing.parent / Path(row["path"]).expanduser() for row in rows]
    if has_split:
        parts = np.array([row["split"] for row in rows])
    else:
        parts = class_disjoint_parts(classes, test_fraction, request.seed)
    return file_split(ItemTable("csv", paths, classes, parts, PARTS), request, on_corrupt)


def image_listing(
    root: str | Path, transform: Transform | None = None, seed: int = 0
) -> FileDataset:
    """Every image of a folder or a CSV listing as one dataset, without splitting (what an index
    of a collection holds).

    A folder: images in class subdirectories (``<root>/<class>/<image>``, any depth) take the
    directory name as their class; images directly in ``root`` have no class (``""``). A CSV:
    ``path,label`` (``FOLDER_LAYOUT`` / ``CSV_LAYOUT``; a ``split`` column is ignored). Items are
    in sorted path order (CSV: file order); ``item_ids`` are their positions.
    """
    base = Path(root).expanduser()
    if base.is_file() and base.suffix.lower() == ".csv":
        rows = _csv_rows(base)
        entries = [(row["label"], base.parent / Path(row["path"]).expanduser()) for row in rows]
    elif base.is_dir():
        loose = sorted(
            p for p in base.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        entries = [("", p) for p in loose] + class_images(base)
    else:
        raise FileNotFoundError(
            f"{base}: expected a folder of images (a subfolder per class) or a CSV listing "
            "with the columns path,label"
        )
    if not entries:
        raise FileNotFoundError(
            f"{base}: no images found (suffixes {' '.join(IMAGE_SUFFIXES)}), in the folder or "
            "its class subfolders"
        )
    names = sorted({name for name, _ in entries})
    labels = np.searchsorted(np.array(names), np.array([name for name, _ in entries]))
    return FileDataset([str(p) for _, p in entries], labels, names, transform, seed=seed)


def image_files(sources: Sequence[str | Path]) -> list[Path]:
    """The image files named by ``sources``: a file as given, a folder as every image below it
    (sorted); ``FileNotFoundError`` for a missing source or a folder without images."""
    files: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            found = sorted(
                p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not found:
                raise FileNotFoundError(
                    f"{source}: a folder without images ({' '.join(IMAGE_SUFFIXES)})"
                )
            files += found
        elif source.is_file():
            files.append(source)
        else:
            raise FileNotFoundError(f"{source}: no such image file or folder")
    return files
