"""The generic loaders: a class-per-directory folder and a CSV listing."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_helpers import write_image

from dmlkit.data import create_dataset


def make_folder(root: Path, classes: list[str], per_class: int = 2) -> None:
    for c in classes:
        for j in range(per_class):
            write_image(root / c / f"{j}.png")


def test_folder_splits_classes_disjointly(tmp_path: Path) -> None:
    names = [f"class_{k}" for k in range(6)]
    make_folder(tmp_path, names)
    (tmp_path / "class_0" / "notes.txt").write_text("not an image")
    write_image(tmp_path / "class_0" / "nested" / "deep.JPG")
    train = create_dataset("folder", "train", root=tmp_path, seed=4)
    test = create_dataset("folder", "test", root=tmp_path, seed=4)
    assert len(train.class_names) == len(test.class_names) == 3
    assert sorted(train.class_names + test.class_names) == names
    everything = [Path(p) for p in train.paths + test.paths]
    assert len(everything) == 13 and all(p.suffix.lower() in (".png", ".jpg") for p in everything)
    assert create_dataset("folder", "test", root=tmp_path, seed=4).paths == test.paths
    third = create_dataset("folder", "test", root=tmp_path, test_fraction=1 / 3)
    assert len(third.class_names) == 2


def test_folder_predefined_parts(tmp_path: Path) -> None:
    make_folder(tmp_path / "train", ["a", "b"])
    make_folder(tmp_path / "val", ["c"])
    make_folder(tmp_path / "test", ["d", "e"], per_class=3)
    assert create_dataset("folder", "train", root=tmp_path).class_names == ["a", "b"]
    assert create_dataset("folder", "val", root=tmp_path).class_names == ["c"]
    test = create_dataset("folder", "test", root=tmp_path)
    assert test.class_names == ["d", "e"] and test.labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(FileNotFoundError, match="no images in class subdirectories"):
        create_dataset("folder", "train", root=tmp_path)


def test_csv_with_split_column(tmp_path: Path) -> None:
    for name in ("a1", "a2", "b1", "c1", "c2"):
        write_image(tmp_path / "imgs" / f"{name}.png")
    absolute = write_image(tmp_path / "elsewhere" / "d1.png")
    listing = tmp_path / "meta" / "list.csv"
    listing.parent.mkdir()
    listing.write_text(
        "path,label,split,extra\n"
        "../imgs/a1.png,cat,train,x\n../imgs/a2.png,cat,train,x\n../imgs/b1.png,dog,val,x\n"
        f"../imgs/c1.png,cow,query,x\n../imgs/c2.png,cow,gallery,x\n{absolute},eel,gallery,x\n"
    )
    assert create_dataset("csv", "train", root=listing).class_names == ["cat"]
    assert create_dataset("csv", "val", root=listing).class_names == ["dog"]
    gallery = create_dataset("csv", "gallery", root=listing)
    assert gallery.class_names == ["cow", "eel"] and gallery.labels.tolist() == [0, 1]
    assert Path(gallery.paths[1]) == absolute
    assert gallery.image(0).size == (6, 5)
    with pytest.raises(ValueError, match="already defines its 'val' items"):
        create_dataset("csv", "train", root=listing, val_classes=1)


def test_csv_without_split_column(tmp_path: Path) -> None:
    rows = [f"img{k}.png,label{k % 4}" for k in range(8)]
    for k in range(8):
        write_image(tmp_path / f"img{k}.png")
    listing = tmp_path / "list.csv"
    listing.write_text("path,label\n" + "\n".join(rows) + "\n")
    train = create_dataset("csv", "train", root=listing, test_fraction=0.25)
    test = create_dataset("csv", "test", root=listing, test_fraction=0.25)
    assert len(train.class_names) == 3 and len(test.class_names) == 1
    assert not set(train.class_names) & set(test.class_names)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,class\na.png,x\n", "expected columns path,label"),
        ("path,label\n", "lists no images"),
        ("path,label\na.png,\n", r"list\.csv:2: expected a path, a label"),
        ("path,label,split\na.png,x,holdout\n", "split in train/val/test/query/gallery"),
    ],
)
def test_csv_errors(tmp_path: Path, text: str, message: str) -> None:
    listing = tmp_path / "list.csv"
    listing.write_text(text)
    with pytest.raises(ValueError, match=message):
        create_dataset("csv", "train", root=listing)


def test_csv_root_must_be_a_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="an existing CSV file"):
        create_dataset("csv", "train", root=tmp_path)
