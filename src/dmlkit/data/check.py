"""Preflight check of a run's datasets before training: every problem found, reported in one error."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dmlkit.data.base import DMLDataset, FileDataset
from dmlkit.sampling.batch import classes_below

SHOWN = 20


def _listing(title: str, entries: list[str]) -> str:
    more = f"\n    ... and {len(entries) - SHOWN} more" if len(entries) > SHOWN else ""
    return f"{title}:\n    " + "\n    ".join(entries[:SHOWN]) + more


def dataset_problems(
    dataset: DMLDataset,
    m: int | None = None,
    decode_images: bool = True,
    batch_classes: int | None = None,
) -> list[str]:
    """Every problem of ``dataset``, one text each (empty list: none).

    Looks for: an empty dataset; missing image files; images that do not decode (every image is
    read when ``decode_images``, O(N) decodes; otherwise only the existence of the files of a
    :class:`FileDataset` is checked); with ``m``, classes with fewer than ``m`` items, which an
    m-per-class sampler without replacement refuses; with ``batch_classes``, fewer classes than
    one batch draws (``batch_size / m``).
    """
    problems = []
    if len(dataset) == 0:
        problems.append("the dataset has no items")
    missing: list[str] = []
    unreadable: list[str] = []
    if decode_images:
        for i in range(len(dataset)):
            try:
                dataset.image(i)
            except FileNotFoundError as err:
                missing.append(f"item {i}: {err}")
            except ValueError as err:
                unreadable.append(f"item {i}: {err}")
    elif isinstance(dataset, FileDataset):
        missing = [f"item {i}: {p}" for i, p in enumerate(dataset.paths) if not Path(p).is_file()]
    if missing:
        problems.append(_listing(f"{len(missing)} missing image file(s)", missing))
    if unreadable:
        problems.append(_listing(f"{len(unreadable)} unreadable image(s)", unreadable))
    if m is not None and len(dataset):
        small = [f"{dataset.class_names[c]!r} ({n})" for c, n in classes_below(dataset.labels, m)]
        if small:
            problems.append(
                _listing(
                    f"{len(small)} class(es) with fewer than m={m} images (set data.replacement: "
                    "true to repeat their images, or a smaller data.m)",
                    small,
                )
            )
    if batch_classes is not None and len(dataset) and dataset.num_classes < batch_classes:
        problems.append(
            f"{dataset.num_classes} class(es), but a batch draws {batch_classes} classes "
            "(data.batch_size / data.m); use a smaller batch or a larger m"
        )
    return problems


def _raise(problems: list[str]) -> None:
    if problems:
        raise ValueError(
            f"dataset check found {len(problems)} problem(s):\n- " + "\n- ".join(problems)
        )


def check_dataset(dataset: DMLDataset, m: int | None = None, decode_images: bool = True) -> None:
    """Raise one ``ValueError`` listing all problems of ``dataset`` (:func:`dataset_problems`),
    or return ``None``."""
    _raise(dataset_problems(dataset, m, decode_images))


def check_splits(
    splits: Mapping[str, DMLDataset],
    m: int | None,
    batch_classes: int,
    decode_images: bool = True,
) -> None:
    """Raise one ``ValueError`` listing the problems of all ``splits`` (``{name: dataset}``), each
    prefixed by its split name, or return ``None``. The sampler conditions (``m`` images per
    class, ``batch_classes`` classes) apply to the ``"train"`` split only."""
    _raise(
        [
            f"{name}: {problem}"
            for name, dataset in splits.items()
            for problem in dataset_problems(
                dataset,
                m if name == "train" else None,
                decode_images,
                batch_classes if name == "train" else None,
            )
        ]
    )
