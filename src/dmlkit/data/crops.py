"""Crop geometry of the DML presets, drawn as torchvision draws it, without resizing the image.

The presets' geometry is torchvision's ``Resize(resize)`` followed by ``RandomResizedCrop(crop,
scale, ratio)`` and ``RandomHorizontalFlip()`` for training, ``Resize(resize)`` and
``CenterCrop(crop)`` for evaluation. Here the resize is never carried out: the crop is drawn on
the *size* the resize would give, ``(W', H')``, and mapped back to the original ``(W, H)``, so
one resampling of the cropped region replaces two resamplings of the image.

- Resized size (torchvision's rule for ``Resize(s)``): the short side becomes ``s``, the long
  side ``int(s * long / short)``.
- Random crop on ``(W', H')`` (torchvision's ``RandomResizedCrop.get_params``, the same calls on
  the CPU default generator): up to 10 tries of area ``a = W' H' U(scale)``, aspect
  ``r = exp(U(log ratio))``, ``w = round(sqrt(a r))``, ``h = round(sqrt(a / r))``; the first that
  fits gets its top-left ``i ~ U{0..H'-h}``, ``j ~ U{0..W'-w}``; else the central crop with the
  aspect clamped to ``ratio``. Then the flip, ``torch.rand(1) < 0.5``.
- Centre crop on ``(W', H')``: top ``round((H' - c) / 2)``, left ``round((W' - c) / 2)``.
- Mapped back: ``left = j W / W'``, ``top = i H / H'``, ``width = w W / W'``,
  ``height = h H / H'`` (sub-pixel; :meth:`Crop.pixels` rounds it to whole pixels).

So for the same generator state the crop and flip are those torchvision draws (tested), and the
augmentation distribution is the presets' distribution.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

DML_SCALE = (0.16, 1.0)
DML_RATIO = (3 / 4, 4 / 3)


@dataclass(frozen=True)
class Crop:
    """A region of an image in its pixel coordinates (``left``, ``top``, ``width``, ``height``,
    floats) and whether the output is mirrored left-right."""

    left: float
    top: float
    width: float
    height: float
    flip: bool = False

    def scaled(self, sx: float, sy: float) -> Crop:
        """The same region in an image resized by ``sx`` horizontally and ``sy`` vertically."""
        return Crop(self.left * sx, self.top * sy, self.width * sx, self.height * sy, self.flip)

    def reduction(self, size: int, factors: tuple[int, ...] = (8, 4, 2)) -> int:
        """The largest of ``factors`` by which the image may be shrunk while this region still
        has at least ``size`` pixels each way (1 when none may)."""
        return next((f for f in factors if min(self.width, self.height) / f >= size), 1)

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)``: the region rounded to whole pixels of a ``width x height``
        image, clamped to it, at least one pixel each way."""
        x0 = min(max(round(self.left), 0), width - 1)
        y0 = min(max(round(self.top), 0), height - 1)
        x1 = min(max(round(self.left + self.width), x0 + 1), width)
        y1 = min(max(round(self.top + self.height), y0 + 1), height)
        return x0, y0, x1, y1


def resized_size(width: int, height: int, short: int) -> tuple[int, int]:
    """``(W', H')`` of torchvision's ``Resize(short)`` of a ``width x height`` image."""
    if width < 1 or height < 1:
        raise ValueError(f"image size: expected positive width and height, got {width}x{height}")
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


@functools.lru_cache(maxsize=8)
def _log_ratio(ratio: tuple[float, float]) -> tuple[float, float]:
    """``log(ratio)`` in float32, as torchvision computes it (cached: the same for every draw)."""
    low, high = torch.log(torch.tensor(ratio)).tolist()
    return low, high


def random_resized_crop(
    width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[int, int, int, int]:
    """``(i, j, h, w)`` (top, left, height, width) of torchvision's ``RandomResizedCrop`` on a
    ``width x height`` image, drawn from the CPU default generator (module docstring)."""
    area = height * width
    low, high = _log_ratio(ratio)
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
        aspect = torch.exp(torch.empty(1).uniform_(low, high)).item()
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            i = int(torch.randint(0, height - h + 1, size=(1,)).item())
            j = int(torch.randint(0, width - w + 1, size=(1,)).item())
            return i, j, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        w, h = round(height * max(ratio)), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def center_crop(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """``(i, j, h, w)`` of torchvision's ``CenterCrop(size)`` on a ``width x height`` image no
    smaller than ``size`` each way."""
    if width < size or height < size:
        raise ValueError(
            f"center crop: expected an image of at least {size}x{size}, got {width}x{height}"
        )
    return round((height - size) / 2.0), round((width - size) / 2.0), size, size


def dml_crop(
    width: int,
    height: int,
    crop: int,
    resize: int,
    train: bool,
    scale: tuple[float, float] = DML_SCALE,
    ratio: tuple[float, float] = DML_RATIO,
) -> Crop:
    """The preset crop of a ``width x height`` image (module docstring): drawn on the size of
    ``Resize(resize)`` (random crop and flip for ``train``, the centre ``crop`` otherwise) and
    mapped back to the original pixels."""
    rw, rh = resized_size(width, height, resize)
    if train:
        i, j, h, w = random_resized_crop(rw, rh, scale, ratio)
        flip = bool(torch.rand(1) < 0.5)
    else:
        i, j, h, w = center_crop(rw, rh, crop)
        flip = False
    sx, sy = width / rw, height / rh
    return Crop(j * sx, i * sy, w * sx, h * sy, flip)
