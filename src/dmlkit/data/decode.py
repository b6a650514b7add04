"""Image files to RGB pixels: a ``PIL.Image`` (:func:`read_image`) or a uint8 tensor
``(3, H, W)`` (:func:`decode_file`, :func:`pil_to_uint8`).

:func:`decode_file` decodes JPEG files with ``torchvision.io.decode_jpeg`` (libjpeg-turbo straight
into a tensor, without a ``PIL.Image`` and its copies; the rates of both decoders are in
``benchmarks/results/input_pipeline.json``) and every other format, or every file when
torchvision's decoder is not available, with PIL. Both give the same pixels for JPEG (the same
libjpeg-turbo with the same settings; tested), so the choice changes the speed only. A file
torchvision cannot decode goes to PIL, which decides: errors name the path, as
:func:`read_image`'s do. torchvision 0.29 deprecates its image decoders in favour of TorchCodec;
the deprecation warning is silenced here, and when the decoder is gone PIL takes over.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

JPEG_MAGIC = b"\xff\xd8\xff"


def read_image(path: str | Path) -> Image.Image:
    """Decode ``path`` fully and return it as RGB.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the path for a file
    that is not a readable image (truncated, corrupt, unknown format).
    """
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {path}") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot decode image {path}: {err}") from err


def pil_to_uint8(img: Image.Image) -> Tensor:
    """``PIL.Image`` -> uint8 ``(3, H, W)`` RGB (a channels-last view of one copy of the pixels)."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)


def _jpeg_decoder() -> Callable[[Tensor], Tensor] | None:
    """``bytes (N,) uint8 -> (3, H, W) uint8`` RGB by torchvision, or ``None`` without it."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:
        return None

    def decode(data: Tensor) -> Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return decode_jpeg(data, mode=ImageReadMode.RGB)

    return decode


_DECODE_JPEG = _jpeg_decoder()


def decode_file(path: str | Path) -> Tensor:
    """The RGB pixels of the image file ``path``, uint8 ``(3, H, W)`` (module docstring).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the path for a file
    that is not a readable image.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {path}") from None
    if _DECODE_JPEG is not None and data[:3].tobytes() == JPEG_MAGIC:
        try:
            return _DECODE_JPEG(torch.from_numpy(data))
        except RuntimeError:
            pass  # PIL decides, and names the path when it fails too
    return pil_to_uint8(read_image(path))
