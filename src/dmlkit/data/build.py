"""From an item table (image or path, class key, part) to the dataset of one split.

Every reader parses its files into an :class:`ItemTable` (aligned ``class keys (N,)``,
``parts (N,)`` (see :mod:`dmlkit.data.splits`) and the images or paths), then calls
:func:`file_split` or :func:`array_split` with its :class:`~dmlkit.data.registry.SplitRequest`; they
select the split, renumber the labels, name the classes and keep each item's place in the full table
as its ``item_ids``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from dmlkit.data.base import ON_CORRUPT, ArrayDataset, DMLDataset, FileDataset, readable
from dmlkit.data.registry import SplitRequest
from dmlkit.data.splits import SPLITS, SplitItems, check_split, select_split

D = TypeVar("D", bound=DMLDataset)


def names_of(class_keys: np.ndarray, names: Mapping[Any, str] | None) -> list[str]:
    """Class names for ``class_keys``: ``names[key]``, or ``str(key)`` without a mapping."""
    return [str(k) if names is None else names[k] for k in class_keys]


@dataclass(frozen=True)
class ItemTable:
    """A dataset's whole item table, aligned: ``items`` (paths, or uint8 images ``(N, H, W[, 3])``),
    class keys ``classes (N,)`` and ``parts (N,)``; the splits it ``allowed`` and its class
    ``names`` (``None``: the keys as strings)."""

    dataset: str
    items: Sequence[str | Path] | np.ndarray
    classes: np.ndarray
    parts: np.ndarray
    allowed: Sequence[str] = SPLITS
    names: Mapping[Any, str] | None = None


def _select(table: ItemTable, request: SplitRequest, parts: np.ndarray | None = None) -> SplitItems:
    """The items of ``request.split`` (``parts`` overriding the table's)."""
    return select_split(
        table.parts if parts is None else parts,
        table.classes,
        request.split,
        request.val_classes,
        request.seed,
    )


def _finish(out: D, items: SplitItems) -> D:
    """``out`` with each item's place in the full table (``item_ids``) and the query mask."""
    out.item_ids = items.indices.astype(np.int64)
    out.query_mask = items.query_mask
    return out


def file_split(table: ItemTable, request: SplitRequest, on_corrupt: str = "error") -> FileDataset:
    """The :class:`FileDataset` of ``request.split`` of a table of image paths.

    ``on_corrupt="skip"`` decodes the split's images once and drops unreadable ones with a warning;
    ``"error"`` (default) leaves them in, and reading one raises an error naming its path.
    """
    check_split(request.split, table.allowed, table.dataset)
    if on_corrupt not in ON_CORRUPT:
        raise ValueError(f"on_corrupt: expected one of {ON_CORRUPT}, got {on_corrupt!r}")
    paths = np.asarray([str(p) for p in table.items], dtype=object)
    items = _select(table, request)
    if on_corrupt == "skip":
        bad = items.indices[~readable(list(paths[items.indices]))]
        if len(bad):
            parts = table.parts.copy().astype(object)
            parts[bad] = "unreadable"
            items = _select(table, request, parts.astype(str))
    out = FileDataset(
        list(paths[items.indices]),
        items.labels,
        names_of(items.class_keys, table.names),
        request.transform,
        seed=request.seed,
    )
    return _finish(out, items)


def array_split(table: ItemTable, request: SplitRequest) -> ArrayDataset:
    """The :class:`ArrayDataset` of ``request.split`` of a table of uint8 images."""
    check_split(request.split, table.allowed, table.dataset)
    items = _select(table, request)
    images = np.asarray(table.items)[items.indices]
    out = ArrayDataset(
        images,
        items.labels,
        names_of(items.class_keys, table.names),
        request.transform,
        seed=request.seed,
    )
    return _finish(out, items)
