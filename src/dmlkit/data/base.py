"""The dataset contract: raw images, contiguous labels, and per-sample seeded augmentation.

``DMLDataset[i]`` returns ``(image (C, H, W) float32, label int)``. Labels are ``0..C-1`` within the
split (``labels (N,)`` int64), ``class_names[c]`` names label ``c`` and ``image(i)`` gives the raw
``PIL.Image`` (for retrieval grids). ``item_ids (N,)`` int64 name each item by its place in the
dataset's full item list (the same id in every split it could be in), and ``item_paths()`` gives
each item's image file (``""`` for images held in memory): what an index or an embedding file
writes beside the vectors. Augmentation randomness is a pure function of
``(seed, epoch, i)``: the transform runs with the CPU default generator seeded from those three
numbers (the generator state is restored afterwards), so a run resumed at any batch draws the same
crops and flips as an uninterrupted one, whatever the number of loader workers. Call
:meth:`DMLDataset.set_epoch` when a new epoch starts (before the loader's iterator is created).
The epoch lives in shared memory, so loader workers that persist across epochs
(``persistent_workers=True``) see the new one.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from dmlkit.data.decode import read_image
from dmlkit.data.transforms import to_tensor

Transform = Callable[[Image.Image], Tensor]
ON_CORRUPT = ("error", "skip")


class DMLDataset(Dataset[tuple[Tensor, int]], ABC):
    """Images with class labels for metric learning.

    ``labels (N,)`` int64 in ``0..C-1`` with ``C = len(class_names)``; ``image_channels`` is the
    channel count after the default conversion (1 grayscale, 3 RGB) and ``image_size`` the side of
    square fixed-size images (``None`` when images vary). Without a ``transform`` an item is the
    image as float32 in ``[0, 1]``, shape ``(C, H, W)``.

    ``query_mask`` (``None``, or bool ``(N,)``): set on a ``"test"`` split made of query and gallery
    items (In-Shop, the glyph style shift); evaluation then also scores the queries against the
    gallery (:func:`dmlkit.training.evaluate.score`).
    """

    def __init__(
        self,
        labels: np.ndarray,
        class_names: Sequence[str],
        transform: Transform | None,
        image_channels: int,
        image_size: int | None,
        seed: int = 0,
    ) -> None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(
                f"labels: expected a 1-D integer array, got {labels.dtype} {labels.shape}"
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
            raise ValueError(
                f"labels: expected values in 0..{len(class_names) - 1} "
                f"(one per class name), got {labels.min()}..{labels.max()}"
            )
        self.labels = labels.astype(np.int64)
        self.class_names = list(class_names)
        self.transform: Transform = to_tensor if transform is None else transform
        self.image_channels = image_channels
        self.image_size = image_size
        self.seed = seed
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self.item_ids = np.arange(len(self.labels), dtype=np.int64)
        self.query_mask: np.ndarray | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def item_paths(self) -> list[str]:
        """The image file of each item; ``""`` for images held in memory."""
        return [""] * len(self)

    def __len__(self) -> int:
        return len(self.labels)

    @abstractmethod
    def load(self, i: int) -> Image.Image:
        """The raw image of item ``i`` (``0 <= i < len(self)``)."""

    def image(self, i: int) -> Image.Image:
        """The raw image of item ``i`` (negative indices count from the end)."""
        return self.load(self._index(i))

    @property
    def epoch(self) -> int:
        """The epoch whose augmentation stream items are drawn from (:meth:`set_epoch`)."""
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch`` >= 0 (see the module docstring)."""
        if epoch < 0:
            raise ValueError(f"epoch: expected an integer >= 0, got {epoch}")
        self._epoch.fill_(int(epoch))

    def sample_seed(self, i: int) -> int:
        """The augmentation seed of item ``i`` in the current epoch, from ``(seed, epoch, i)``."""
        state = np.random.SeedSequence((self.seed, self.epoch, i)).generate_state(1, np.uint64)
        return int(state[0])

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        i = self._index(i)
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(self.sample_seed(i))
            x = self.transformed(i)
        return x, int(self.labels[i])

    def transformed(self, i: int) -> Tensor:
        """Item ``i`` (``0 <= i < len(self)``) through the transform, under the current random
        state (``__getitem__`` seeds it)."""
        return self.transform(self.load(i))

    def _index(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} items")
        return i % n


class ArrayDataset(DMLDataset):
    """In-memory uint8 images ``(N, H, W)`` (grayscale) or ``(N, H, W, 3)`` (RGB). Memory O(N H W)."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        class_names: Sequence[str],
        transform: Transform | None = None,
        seed: int = 0,
    ) -> None:
        if images.dtype != np.uint8 or images.ndim not in (3, 4) or len(images) != len(labels):
            raise ValueError(
                f"images: expected uint8 (N, H, W) or (N, H, W, 3) with N = {len(labels)}, "
                f"got {images.dtype} {images.shape}"
            )
        height, width = images.shape[1:3]
        super().__init__(
            labels,
            class_names,
            transform,
            image_channels=1 if images.ndim == 3 else images.shape[3],
            image_size=height if height == width else None,
            seed=seed,
        )
        self.images = images

    def load(self, i: int) -> Image.Image:
        return Image.fromarray(self.images[i])


class FileDataset(DMLDataset):
    """Images read from files on demand and converted to RGB. Memory O(N) paths.

    A transform with a ``from_file(path)`` method gets the path instead of a decoded
    ``PIL.Image`` (see :meth:`transformed`)."""

    def __init__(
        self,
        paths: Sequence[str],
        labels: np.ndarray,
        class_names: Sequence[str],
        transform: Transform | None = None,
        seed: int = 0,
    ) -> None:
        if len(paths) != len(labels):
            raise ValueError(f"paths: expected {len(labels)} (one per label), got {len(paths)}")
        super().__init__(
            labels, class_names, transform, image_channels=3, image_size=None, seed=seed
        )
        self.paths = list(paths)

    def load(self, i: int) -> Image.Image:
        return read_image(self.paths[i])

    def transformed(self, i: int) -> Tensor:
        """A transform with ``from_file(path)`` (the DML presets) decodes the file itself
        (straight to a tensor); any other gets the ``PIL.Image``."""
        from_file = getattr(self.transform, "from_file", None)
        if from_file is not None:
            return from_file(self.paths[i])
        return self.transform(self.load(i))

    def item_paths(self) -> list[str]:
        return [str(p) for p in self.paths]


def readable(paths: Sequence[str]) -> np.ndarray:
    """Bool mask ``(N,)``: which ``paths`` decode; warns once listing the ones that do not.

    Reads every file (O(N) image decodes).
    """
    ok = np.ones(len(paths), dtype=bool)
    problems = []
    for k, path in enumerate(paths):
        try:
            read_image(path)
        except (FileNotFoundError, ValueError) as err:
            ok[k] = False
            problems.append(str(err))
    if problems:
        shown = "\n  ".join(problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        warnings.warn(
            f"skipping {len(problems)} unreadable image(s) (on_corrupt='skip'):\n  {shown}{more}",
            stacklevel=3,
        )
    return ok
