"""Datasets and transforms: digits, Fashion-MNIST, glyphs, CUB, Cars196, SOP, In-Shop, folder/CSV.

``create_dataset(name, split, root, transform, **kwargs)`` builds a :class:`DMLDataset`;
``create_transform(name, train, image_size)`` builds a preset transform.
"""

from dmlkit.data import generic as _generic  # noqa: F401  (registers folder, csv)
from dmlkit.data import glyphs as _glyphs  # noqa: F401  (registers glyphs)
from dmlkit.data import offline as _offline  # noqa: F401  (registers digits, fashion_mnist)
from dmlkit.data import published as _published  # noqa: F401  (registers cub, cars, sop, inshop)
from dmlkit.data.base import ArrayDataset, DMLDataset, FileDataset, read_image
from dmlkit.data.check import check_dataset, check_splits
from dmlkit.data.generic import image_files, image_listing
from dmlkit.data.registry import DATASETS, SplitRequest, create_dataset, register_dataset
from dmlkit.data.splits import ClassFold
from dmlkit.data.transforms import TRANSFORMS, create_transform, to_tensor

__all__ = [
    "DATASETS",
    "TRANSFORMS",
    "ArrayDataset",
    "ClassFold",
    "DMLDataset",
    "FileDataset",
    "SplitRequest",
    "check_dataset",
    "check_splits",
    "create_dataset",
    "create_transform",
    "image_files",
    "image_listing",
    "read_image",
    "register_dataset",
    "to_tensor",
]
