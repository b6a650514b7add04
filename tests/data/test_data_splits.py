"""Split rules: counts, class-disjointness, stratification, seeding, label renumbering, errors."""

from __future__ import annotations

import numpy as np
import pytest

from dmlkit.data.splits import (
    ClassFold,
    class_disjoint_parts,
    first_half_parts,
    held_out_count,
    image_holdout_parts,
    select_split,
)


@pytest.mark.parametrize(
    ("total", "amount", "expected"),
    [
        (10, 0, 0),
        (10, 0.0, 0),
        (10, 0.25, 2),
        (10, 0.01, 1),
        (10, 0.99, 9),
        (10, 3, 3),
        (3, 0.5, 2),
    ],
)
def test_held_out_count(total: int, amount: float, expected: int) -> None:
    assert held_out_count(total, amount, "x") == expected


@pytest.mark.parametrize(
    ("amount", "error"),
    [
        (True, TypeError),
        ("0.5", TypeError),
        (-0.1, ValueError),
        (1.0, ValueError),
        (10, ValueError),
        (-1, ValueError),
    ],
)
def test_held_out_count_rejects(amount: object, error: type) -> None:
    with pytest.raises(error, match="val_classes"):
        held_out_count(10, amount, "val_classes")  # type: ignore[arg-type]


def test_class_disjoint_parts_counts_and_seed() -> None:
    classes = np.repeat(np.arange(20), 3)
    parts = class_disjoint_parts(classes, 0.3, seed=1)
    test_classes = set(classes[parts == "test"].tolist())
    train_classes = set(classes[parts == "train"].tolist())
    assert len(test_classes) == 6 and len(train_classes) == 14
    assert not test_classes & train_classes
    assert np.array_equal(parts, class_disjoint_parts(classes, 0.3, seed=1))
    assert not np.array_equal(parts, class_disjoint_parts(classes, 0.3, seed=2))
    with pytest.raises(ValueError, match="test_fraction"):
        class_disjoint_parts(classes, 0.0, seed=0)


def test_first_half_parts_is_the_published_protocol() -> None:
    classes = np.repeat(np.arange(1, 201), 2)
    parts = first_half_parts(classes)
    assert set(classes[parts == "train"].tolist()) == set(range(1, 101))
    assert set(classes[parts == "test"].tolist()) == set(range(101, 201))
    cars = np.arange(1, 197)
    assert (first_half_parts(cars) == "train").sum() == 98


def test_image_holdout_is_stratified() -> None:
    classes = np.repeat(np.arange(4), [10, 20, 7, 3])
    parts = image_holdout_parts(classes, 0.3, 0.2, seed=0)
    for c, n in zip(range(4), [10, 20, 7, 3], strict=True):
        mine = parts[classes == c]
        assert (mine == "test").sum() == round(n * 0.3)
        assert (mine == "val").sum() == round(n * 0.2)
    assert np.array_equal(parts, image_holdout_parts(classes, 0.3, 0.2, seed=0))
    with pytest.raises(ValueError, match="test_fraction \\+ val_fraction"):
        image_holdout_parts(classes, 0.6, 0.4, seed=0)


def test_select_split_train_val_are_class_disjoint() -> None:
    classes = np.repeat(np.array([3, 5, 8, 13, 21, 34]), 2)
    parts = np.where(classes < 20, "train", "test")
    train = select_split(parts, classes, "train", val_classes=2, seed=0)
    val = select_split(parts, classes, "val", val_classes=2, seed=0)
    test = select_split(parts, classes, "test", val_classes=2, seed=0)
    assert len(val.class_keys) == 2 and len(train.class_keys) == 2
    assert set(train.class_keys) | set(val.class_keys) == {3, 5, 8, 13}
    assert not set(train.class_keys) & set(val.class_keys)
    assert test.class_keys.tolist() == [21, 34]
    for items in (train, val, test):
        assert items.labels.dtype == np.int64
        assert np.array_equal(items.class_keys[items.labels], classes[items.indices])
        assert set(items.labels.tolist()) == set(range(len(items.class_keys)))
    no_val = select_split(parts, classes, "train")
    assert no_val.class_keys.tolist() == [3, 5, 8, 13]


def test_select_split_query_gallery_share_labels() -> None:
    classes = np.array(["a", "b", "c", "c", "d", "b", "d"])
    parts = np.array(["train", "query", "query", "gallery", "gallery", "gallery", "gallery"])
    query = select_split(parts, classes, "query")
    gallery = select_split(parts, classes, "gallery")
    test = select_split(parts, classes, "test")
    assert query.class_keys.tolist() == gallery.class_keys.tolist() == ["b", "c", "d"]
    assert query.labels.tolist() == [0, 1]
    assert gallery.labels.tolist() == [1, 2, 0, 2]
    assert test.indices.tolist() == [1, 2, 3, 4, 5, 6]


def test_select_split_predefined_val_part() -> None:
    classes = np.array([1, 1, 2, 2, 3])
    parts = np.array(["train", "train", "val", "val", "test"])
    assert select_split(parts, classes, "val").indices.tolist() == [2, 3]
    with pytest.raises(ValueError, match="already defines its 'val' items"):
        select_split(parts, classes, "train", val_classes=1)


def test_select_split_errors() -> None:
    classes = np.array([1, 1, 2, 2])
    parts = np.array(["train", "train", "test", "test"])
    with pytest.raises(ValueError, match="val_classes > 0"):
        select_split(parts, classes, "val")
    with pytest.raises(ValueError, match="has no items"):
        select_split(parts, classes, "query")


def test_class_folds_partition_the_training_classes_and_leave_test_alone() -> None:
    classes = np.repeat(np.arange(20), 3)
    parts = np.where(classes < 10, "train", "test")
    folds = [select_split(parts, classes, "val", ClassFold(f, 4), seed=5) for f in range(4)]
    val_sets = [set(v.class_keys.tolist()) for v in folds]
    assert sorted(len(s) for s in val_sets) == [2, 2, 3, 3]
    assert set().union(*val_sets) == set(range(10))
    assert sum(len(s) for s in val_sets) == 10  # disjoint
    for f, val in enumerate(val_sets):
        train = select_split(parts, classes, "train", ClassFold(f, 4), seed=5)
        assert set(train.class_keys.tolist()) == set(range(10)) - val
    again = select_split(parts, classes, "val", ClassFold(1, 4), seed=5)
    assert np.array_equal(again.class_keys, folds[1].class_keys)


def test_class_fold_rejects_bad_numbers() -> None:
    with pytest.raises(ValueError, match="integer >= 2"):
        ClassFold(0, 1)
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        ClassFold(3, 3)
    classes = np.arange(3)
    with pytest.raises(ValueError, match="at least 4 training classes"):
        select_split(np.full(3, "train"), classes, "val", ClassFold(0, 4))
