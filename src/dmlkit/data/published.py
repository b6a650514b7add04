"""The four published DML benchmarks, read from a local root in their published layouts.

Splits are the standard class-disjoint ones (no bounding-box crops):

- ``"cub"``: CUB-200-2011, classes 1-100 train (5,864 images), 101-200 test (5,924).
- ``"cars"``: Cars196, classes 1-98 train (8,054), 99-196 test (8,131); the ``test`` flag of
  ``cars_annos.mat`` (the classification split) is ignored.
- ``"sop"``: Stanford Online Products, ``Ebay_train.txt`` (11,318 classes, 59,551 images) and
  ``Ebay_test.txt`` (11,316 classes, 60,502).
- ``"inshop"``: In-Shop Clothes Retrieval, ``list_eval_partition.txt``: train (3,997 items, 25,882
  images), query (14,218) and gallery (12,612) over 3,985 test items; ``"test"`` is query and
  gallery together. Query and gallery share one label space.

``"val"`` (all four) is a seeded class-disjoint subset of the training classes
(``val_classes`` > 0). Image files are read on demand; :func:`dmlkit.data.check_dataset` finds
missing or unreadable ones up front.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dmlkit.data.base import FileDataset
from dmlkit.data.build import ItemTable, file_split
from dmlkit.data.layout import locate, read_rows
from dmlkit.data.registry import SplitRequest, register_dataset
from dmlkit.data.splits import QUERY_GALLERY, SPLITS, first_half_parts

CUB_LAYOUT = """expected layout (CUB-200-2011 as published; root may also be CUB_200_2011 itself):
  <root>/CUB_200_2011/images.txt               "<image id> <relative path>"
  <root>/CUB_200_2011/image_class_labels.txt   "<image id> <class id>"
  <root>/CUB_200_2011/classes.txt              "<class id> <class name>"
  <root>/CUB_200_2011/images/<class name>/<file>.jpg"""

CARS_LAYOUT = """expected layout (Cars196 as published):
  <root>/cars_annos.mat     (annotations: relative_im_path, class; class_names)
  <root>/car_ims/<file>.jpg"""

SOP_LAYOUT = """expected layout (Stanford Online Products as published; root may also be its parent):
  <root>/Stanford_Online_Products/Ebay_train.txt   "image_id class_id super_class_id path"
  <root>/Stanford_Online_Products/Ebay_test.txt
  <root>/Stanford_Online_Products/<super class>_final/<file>.JPG"""

INSHOP_LAYOUT = """expected layout (In-Shop Clothes Retrieval Benchmark as published; root may be its parent):
  <root>/Eval/list_eval_partition.txt   count, header, "image_name item_id evaluation_status"
  <root>/Img/img/<gender>/<category>/<item id>/<file>.jpg"""


@register_dataset("cub")
def cub(request: SplitRequest, *, on_corrupt: str = "error") -> FileDataset:
    """CUB-200-2011 (module docstring); ``root`` holds ``CUB_200_2011/`` or is that directory."""
    files = ["images.txt", "image_class_labels.txt", "classes.txt"]
    base = locate(request.root, files, ["CUB_200_2011"], "cub", CUB_LAYOUT)
    images = dict(read_rows(base / "images.txt", 2))
    labels = dict(read_rows(base / "image_class_labels.txt", 2))
    names = {int(k): v for k, v in read_rows(base / "classes.txt", 2)}
    unlabelled = sorted(set(images) - set(labels), key=int)
    if unlabelled:
        raise ValueError(
            f"cub: {base / 'image_class_labels.txt'} has no class for image ids "
            f"{', '.join(unlabelled[:10])}{' ...' if len(unlabelled) > 10 else ''}"
        )
    ids = sorted(images, key=int)
    classes = np.array([int(labels[i]) for i in ids])
    unknown = sorted(set(classes.tolist()) - set(names))
    if unknown:
        raise ValueError(f"cub: {base / 'classes.txt'} does not name class ids {unknown[:10]}")
    paths = [base / "images" / images[i] for i in ids]
    parts = first_half_parts(classes)
    return file_split(ItemTable("cub", paths, classes, parts, names=names), request, on_corrupt)


@register_dataset("cars")
def cars(request: SplitRequest, *, on_corrupt: str = "error") -> FileDataset:
    """Cars196 (module docstring); reading ``cars_annos.mat`` needs scipy."""
    base = locate(request.root, ["cars_annos.mat"], [], "cars", CARS_LAYOUT)
    try:
        from scipy.io import loadmat
    except ImportError as err:
        raise ImportError("cars: reading cars_annos.mat needs scipy: pip install scipy") from err
    mat = loadmat(base / "cars_annos.mat", squeeze_me=True)
    if "annotations" not in mat or "class_names" not in mat:
        raise ValueError(
            f"cars: {base / 'cars_annos.mat'} lacks 'annotations' or 'class_names'.\n{CARS_LAYOUT}"
        )
    ann = np.atleast_1d(mat["annotations"])
    fields = ann.dtype.names or ()
    if "relative_im_path" not in fields or "class" not in fields:
        raise ValueError(
            f"cars: annotations in {base / 'cars_annos.mat'} need fields relative_im_path and "
            f"class, got {fields}"
        )
    classes = np.array([int(c) for c in ann["class"]])
    names = {k + 1: str(n) for k, n in enumerate(np.atleast_1d(mat["class_names"]))}
    paths = [base / str(p) for p in ann["relative_im_path"]]
    parts = first_half_parts(classes)
    return file_split(ItemTable("cars", paths, classes, parts, names=names), request, on_corrupt)


@register_dataset("sop")
def sop(request: SplitRequest, *, on_corrupt: str = "error") -> FileDataset:
    """Stanford Online Products (module docstring); classes named ``<super class>/<product id>``."""
    files = ["Ebay_train.txt", "Ebay_test.txt"]
    base = locate(request.root, files, ["Stanford_Online_Products"], "sop", SOP_LAYOUT)
    paths, classes, parts, names = [], [], [], {}
    for part, name in (("train", "Ebay_train.txt"), ("test", "Ebay_test.txt")):
        for _, class_id, _, rel in read_rows(base / name, 4, skip=1):
            key = int(class_id)
            paths.append(base / rel)
            classes.append(key)
            parts.append(part)
            names[key] = f"{Path(rel).parent.name}/{Path(rel).stem.rsplit('_', 1)[0]}"
    keys, parts_arr = np.array(classes), np.array(parts)
    return file_split(ItemTable("sop", paths, keys, parts_arr, names=names), request, on_corrupt)


@register_dataset("inshop")
def inshop(request: SplitRequest, *, on_corrupt: str = "error") -> FileDataset:
    """In-Shop Clothes Retrieval (module docstring); splits also ``"query"`` and ``"gallery"``."""
    subdirs = ["In-shop Clothes Retrieval Benchmark"]
    base = locate(request.root, ["Eval/list_eval_partition.txt"], subdirs, "inshop", INSHOP_LAYOUT)
    listing = base / "Eval" / "list_eval_partition.txt"
    with open(listing, encoding="utf-8") as fh:
        first = fh.readline().strip()
    rows = read_rows(listing, 3, skip=2)
    if not first.isdigit() or int(first) != len(rows):
        raise ValueError(
            f"inshop: {listing} announces {first!r} images on its first line, lists {len(rows)}"
        )
    status = np.array([r[2] for r in rows])
    unknown = sorted(set(status.tolist()) - {"train", *QUERY_GALLERY})
    if unknown:
        raise ValueError(
            f"inshop: {listing}: expected evaluation_status train/query/gallery, got {unknown}"
        )
    paths = [base / "Img" / r[0] for r in rows]
    keys = np.array([r[1] for r in rows])
    allowed = (*SPLITS, *QUERY_GALLERY)
    return file_split(ItemTable("inshop", paths, keys, status, allowed), request, on_corrupt)
