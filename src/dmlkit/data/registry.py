"""The dataset registry: one keyword-only signature for every dataset.

A dataset is a *reader* ``reader(request, **options) -> DMLDataset`` registered with
:func:`register_dataset`; the registered factory has the signature every dataset shares,

    factory(split, *, root=None, transform=None, val_classes=0, seed=0, **options)

(the reader's own keyword-only ``options`` appended), and hands the reader one
:class:`SplitRequest`. ``create_dataset(name, split, root, transform, **kwargs)`` builds one split.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dmlkit.core.registry import Registry
from dmlkit.data.base import DMLDataset, Transform
from dmlkit.data.splits import ValClasses

DATASETS: Registry[DMLDataset] = Registry("dataset")


@dataclass(frozen=True)
class SplitRequest:
    """What a dataset is asked for: ``split`` (``"train"``, ``"val"``, ``"test"``; In-Shop and the
    glyph style shift also ``"query"``/``"gallery"``), the data ``root`` (``None``: the dataset's
    default), the image ``transform``, the held-out validation classes ``val_classes`` and the
    split ``seed``."""

    split: str
    root: str | Path | None = None
    transform: Transform | None = None
    val_classes: ValClasses = 0
    seed: int = 0


Reader = Callable[..., DMLDataset]
_KW = inspect.Parameter.KEYWORD_ONLY
COMMON_PARAMETERS = (
    inspect.Parameter("split", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str),
    inspect.Parameter("root", _KW, default=None, annotation=str | Path | None),
    inspect.Parameter("transform", _KW, default=None, annotation=Transform | None),
    inspect.Parameter("val_classes", _KW, default=0, annotation=ValClasses),
    inspect.Parameter("seed", _KW, default=0, annotation=int),
)
COMMON_NAMES = tuple(p.name for p in COMMON_PARAMETERS)


def register_dataset(name: str) -> Callable[[Reader], Reader]:
    """Register ``reader(request: SplitRequest, *, **options)`` as dataset ``name``; the factory
    takes the common keyword-only parameters plus the reader's options (refusing others)."""

    def deco(reader: Reader) -> Reader:
        options = list(inspect.signature(reader).parameters.values())[1:]
        if any(p.kind is not _KW for p in options):
            raise TypeError(f"dataset {name!r}: the reader's options must be keyword-only")
        accepted = {p.name for p in options}

        def factory(
            split: str,
            *,
            root: str | Path | None = None,
            transform: Transform | None = None,
            val_classes: ValClasses = 0,
            seed: int = 0,
            **kwargs: Any,
        ) -> DMLDataset:
            unknown = sorted(set(kwargs) - accepted)
            if unknown:
                raise TypeError(
                    f"dataset {name!r}: unknown option(s) {unknown}; accepted: "
                    f"{', '.join(sorted(accepted)) or 'none'}"
                )
            return reader(SplitRequest(split, root, transform, val_classes, seed), **kwargs)

        factory.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [*COMMON_PARAMETERS, *options], return_annotation=DMLDataset
        )
        factory.__doc__ = reader.__doc__
        factory.__name__ = factory.__qualname__ = reader.__name__
        factory.__module__ = reader.__module__
        DATASETS.register(name)(factory)
        return reader

    return deco


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
