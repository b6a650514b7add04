"""The dataset registry: ``create_dataset(name, split, root, transform, **kwargs)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dmlkit.core.registry import Registry
from dmlkit.data.base import DMLDataset, Transform

DATASETS: Registry[DMLDataset] = Registry("dataset")


def create_dataset(
    name: str,
    split: str,
    root: str | Path | None = None,
    transform: Transform | None = None,
    **kwargs: Any,
) -> DMLDataset:
    """Build split ``split`` of the dataset registered as ``name`` (see ``DATASETS.names()``).

    ``split`` is ``"train"``, ``"val"`` or ``"test"`` (In-Shop also ``"query"``/``"gallery"``);
    ``kwargs`` go to the dataset (``val_classes``, ``seed``, and the dataset's own options).
    """
    return DATASETS.create(name, split=split, root=root, transform=transform, **kwargs)
