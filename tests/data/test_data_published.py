"""CUB, Cars196, SOP and In-Shop from tiny fake roots in their published layouts."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import write_image

from dmlkit.data import create_dataset

COLORS = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0)]


def make_cub(root: Path) -> Path:
    """4 classes x 2 images; class k has colour COLORS[k-1]."""
    base = root / "CUB_200_2011"
    base.mkdir(parents=True)
    images, labels, classes = [], [], []
    for k in range(1, 5):
        name = f"{k:03d}.Bird_{k}"
        classes.append(f"{k} {name}")
        for j in range(2):
            image_id = 2 * (k - 1) + j + 1
            rel = f"{name}/Bird_{k}_{j}.jpg"
            write_image(base / "images" / rel, COLORS[k - 1])
            images.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {k}")
    (base / "images.txt").write_text("\n".join(images) + "\n")
    (base / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (base / "classes.txt").write_text("\n".join(classes) + "\n")
    return base


def test_cub_standard_split_and_items(tmp_path: Path) -> None:
    make_cub(tmp_path)
    train = create_dataset("cub", "train", root=tmp_path)
    test = create_dataset("cub", "test", root=tmp_path)
    assert train.class_names == ["001.Bird_1", "002.Bird_2"]
    assert test.class_names == ["003.Bird_3", "004.Bird_4"]
    assert train.labels.tolist() == [0, 0, 1, 1] and test.labels.tolist() == [0, 0, 1, 1]
    assert train.labels.dtype == np.int64 and train.num_classes == 2
    x, y = test[2]
    assert y == 1 and x.shape == (3, 5, 6) and x.dtype == torch.float32
    assert torch.allclose(x.mean(dim=(1, 2)), torch.tensor(COLORS[3]) / 255.0, atol=0.05)
    assert test.image(0).mode == "RGB" and test.image(-1).size == (6, 5)
    same = create_dataset("cub", "test", root=tmp_path / "CUB_200_2011")
    assert same.paths == test.paths


def test_cub_val_classes_are_held_out_of_train(tmp_path: Path) -> None:
    make_cub(tmp_path)
    train = create_dataset("cub", "train", root=tmp_path, val_classes=1, seed=3)
    val = create_dataset("cub", "val", root=tmp_path, val_classes=1, seed=3)
    assert len(train.class_names) == len(val.class_names) == 1
    assert set(train.class_names) | set(val.class_names) == {"001.Bird_1", "002.Bird_2"}
    assert val.labels.tolist() == [0, 0]


def test_cub_missing_file_is_named_with_layout(tmp_path: Path) -> None:
    base = make_cub(tmp_path)
    (base / "image_class_labels.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"image_class_labels\.txt") as err:
        create_dataset("cub", "train", root=tmp_path)
    assert "expected layout" in str(err.value) and "classes.txt" in str(err.value)
    with pytest.raises(FileNotFoundError, match=r"images\.txt"):
        create_dataset("cub", "train", root=base / "images")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_dataset("cub", "train", root=tmp_path / "nope")
    with pytest.raises(ValueError, match="root=<local directory>"):
        create_dataset("cub", "train")


def test_cub_inconsistent_files(tmp_path: Path) -> None:
    base = make_cub(tmp_path)
    (base / "image_class_labels.txt").write_text("1 1\n2 1\n")
    with pytest.raises(ValueError, match="no class for image ids 3, 4, 5"):
        create_dataset("cub", "train", root=tmp_path)
    (base / "images.txt").write_text("1\n")
    with pytest.raises(ValueError, match=r"images.txt:1: expected 2"):
        create_dataset("cub", "train", root=tmp_path)


def test_corrupt_image_error_names_path_and_skip_warns(tmp_path: Path) -> None:
    base = make_cub(tmp_path)
    bad = base / "images" / "001.Bird_1" / "Bird_1_1.jpg"
    bad.write_bytes(b"not a jpeg at all")
    train = create_dataset("cub", "train", root=tmp_path)
    with pytest.raises(ValueError, match=r"cannot decode image .*Bird_1_1\.jpg"):
        train[1]
    (base / "images" / "002.Bird_2" / "Bird_2_0.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"Bird_2_0\.jpg"):
        train[2]
    with pytest.warns(UserWarning, match="skipping 2 unreadable image"):
        skipped = create_dataset("cub", "train", root=tmp_path, on_corrupt="skip")
    assert [Path(p).name for p in skipped.paths] == ["Bird_1_0.jpg", "Bird_2_1.jpg"]
    assert skipped.labels.tolist() == [0, 1]
    with pytest.raises(ValueError, match="on_corrupt"):
        create_dataset("cub", "train", root=tmp_path, on_corrupt="ignore")


def make_cars(root: Path) -> None:
    from scipy.io import savemat

    fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"]
    ann = np.zeros((1, 8), dtype=[(f, "O") for f in fields])
    for i in range(8):
        k = i // 2 + 1
        rel = f"car_ims/{i + 1:06d}.jpg"
        write_image(root / rel, COLORS[k - 1])
        ann[0, i] = (rel, 0, 0, 5, 4, k, i % 2)
    names = np.array([f"Make Model {k}" for k in range(1, 5)], dtype=object)
    savemat(root / "cars_annos.mat", {"annotations": ann, "class_names": names})


def test_cars_first_half_of_classes(tmp_path: Path) -> None:
    pytest.importorskip("scipy", reason="scipy writes the fake cars_annos.mat")
    make_cars(tmp_path)
    train = create_dataset("cars", "train", root=tmp_path)
    test = create_dataset("cars", "test", root=tmp_path)
    assert train.class_names == ["Make Model 1", "Make Model 2"]
    assert test.class_names == ["Make Model 3", "Make Model 4"]
    assert [Path(p).name for p in train.paths] == [f"{i:06d}.jpg" for i in range(1, 5)]
    x, y = test[0]
    assert y == 0 and torch.allclose(x.mean(dim=(1, 2)), torch.tensor(COLORS[2]) / 255.0, atol=0.05)


def test_cars_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match=r"cars_annos\.mat") as err:
        create_dataset("cars", "train", root=tmp_path)
    assert "car_ims" in str(err.value)
    (tmp_path / "cars_annos.mat").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    with pytest.raises(ImportError, match="needs scipy"):
        create_dataset("cars", "train", root=tmp_path)


def make_sop(root: Path) -> Path:
    base = root / "Stanford_Online_Products"
    header = "image_id class_id super_class_id path\n"
    rows = {"Ebay_train.txt": [], "Ebay_test.txt": []}
    for image_id, (class_id, super_name) in enumerate(
        [
            (1, "bicycle"),
            (1, "bicycle"),
            (2, "cabinet"),
            (2, "cabinet"),
            (3, "chair"),
            (3, "chair"),
            (4, "chair"),
        ],
        start=1,
    ):
        rel = f"{super_name}_final/11100{class_id}_{image_id}.JPG"
        write_image(base / rel)
        target = "Ebay_train.txt" if class_id <= 2 else "Ebay_test.txt"
        rows[target].append(f"{image_id} {class_id} 1 {rel}")
    for name, lines in rows.items():
        (base / name).write_text(header + "\n".join(lines) + "\n")
    return base


def test_sop_files_define_the_split(tmp_path: Path) -> None:
    make_sop(tmp_path)
    train = create_dataset("sop", "train", root=tmp_path)
    test = create_dataset("sop", "test", root=tmp_path / "Stanford_Online_Products")
    assert train.class_names == ["bicycle_final/111001", "cabinet_final/111002"]
    assert train.labels.tolist() == [0, 0, 1, 1]
    assert test.class_names == ["chair_final/111003", "chair_final/111004"]
    assert test.labels.tolist() == [0, 0, 1]
    assert test.image(2).size == (6, 5)


def test_sop_missing_test_list(tmp_path: Path) -> None:
    base = make_sop(tmp_path)
    (base / "Ebay_test.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"Ebay_test\.txt") as err:
        create_dataset("sop", "train", root=tmp_path)
    assert "Stanford_Online_Products" in str(err.value)


def make_inshop(root: Path, rows: list[tuple[str, str]], count: int | None = None) -> None:
    lines = []
    for k, (item, status) in enumerate(rows):
        rel = f"img/WOMEN/Dresses/{item}/{k:02d}_1_front.jpg"
        write_image(root / "Img" / rel)
        lines.append(f"{rel} {item} {status}")
    (root / "Eval").mkdir(parents=True, exist_ok=True)
    text = f"{len(rows) if count is None else count}\nimage_name item_id evaluation_status\n"
    (root / "Eval" / "list_eval_partition.txt").write_text(text + "\n".join(lines) + "\n")


INSHOP_ROWS = [
    ("id_01", "train"), ("id_01", "train"), ("id_02", "train"), ("id_02", "train"),
    ("id_05", "query"), ("id_03", "query"), ("id_03", "gallery"), ("id_04", "gallery"),
    ("id_05", "gallery"),
]  # fmt: skip


def test_inshop_query_gallery_share_labels(tmp_path: Path) -> None:
    make_inshop(tmp_path, INSHOP_ROWS)
    train = create_dataset("inshop", "train", root=tmp_path)
    query = create_dataset("inshop", "query", root=tmp_path)
    gallery = create_dataset("inshop", "gallery", root=tmp_path)
    test = create_dataset("inshop", "test", root=tmp_path)
    assert train.class_names == ["id_01", "id_02"] and train.labels.tolist() == [0, 0, 1, 1]
    assert query.class_names == gallery.class_names == ["id_03", "id_04", "id_05"]
    assert query.labels.tolist() == [2, 0]
    assert gallery.labels.tolist() == [0, 1, 2]
    assert len(test) == 5
    assert Path(query.paths[0]).parts[-5:] == ("img", "WOMEN", "Dresses", "id_05", "04_1_front.jpg")


def test_inshop_partial_listing(tmp_path: Path) -> None:
    make_inshop(tmp_path, INSHOP_ROWS, count=52712)
    with pytest.raises(ValueError, match="announces '52712' images on its first line, lists 9"):
        create_dataset("inshop", "train", root=tmp_path)
    make_inshop(tmp_path, [*INSHOP_ROWS, ("id_09", "holdout")])
    with pytest.raises(ValueError, match="holdout"):
        create_dataset("inshop", "train", root=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"list_eval_partition\.txt"):
        create_dataset("inshop", "train", root=tmp_path / "Img")
