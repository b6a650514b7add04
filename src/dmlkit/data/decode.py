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

:func:`decode_bytes` with ``reduce`` > 1 decodes a JPEG at 1/2, 1/4 or 1/8 of its size in the
DCT domain (PIL's draft mode), for a crop large enough that the reduced image still has at least
the output's pixels (:class:`~dmlkit.data.transforms.DMLTransform` decides); :func:`jpeg_size`
reads the size from the header first.
"""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

JPEG_MAGIC = b"\xff\xd8\xff"


def read_image(path: str | Path | BinaryIO, name: str | None = None) -> Image.Image:
    """Decode ``path`` (a file name or an open binary file) fully and return it as RGB.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the path (or
    ``name``) for data that is not a readable image (truncated, corrupt, unknown format, or
    more pixels than PIL's decompression-bomb limit).
    """
    shown = name if name is not None else path
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {shown}") from None
    except UnidentifiedImageError:
        raise ValueError(
            f"cannot decode image {shown}: not an image in a format PIL reads"
        ) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot decode image {shown}: {err}") from err


def pil_to_uint8(img: Image.Image) -> Tensor:
    """``PIL.Image`` -> uint8 ``(3, H, W)`` RGB (a channels-last view of one copy of the pixels)."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)


@functools.cache
def jpeg_decoder() -> Callable[[Tensor], Tensor] | None:
    """``bytes (N,) uint8 -> (3, H, W) uint8`` RGB by torchvision, or ``None`` without it;
    torchvision (seconds to import) is imported on the first JPEG, not with this module."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:
        return None

    def decode(data: Tensor) -> Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return decode_jpeg(data, mode=ImageReadMode.RGB)

    return decode


def read_bytes(path: str | Path) -> np.ndarray:
    """The bytes of ``path`` as uint8 ``(N,)`` (``FileNotFoundError`` naming a missing file)."""
    try:
        return np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {path}") from None


def jpeg_size(data: np.ndarray) -> tuple[int, int] | None:
    """``(width, height)`` from the frame header (SOF marker) of JPEG bytes, walking the marker
    segments before it; ``None`` when ``data`` is not a JPEG or has no readable frame header."""
    raw = data[:3].tobytes()
    if raw != JPEG_MAGIC:
        return None
    pos, size = 2, len(data)
    while pos + 4 <= size:
        if data[pos] != 0xFF:
            return None
        marker = int(data[pos + 1])
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int(data[pos + 2]) << 8 | int(data[pos + 3])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > size:
                return None
            height = int(data[pos + 5]) << 8 | int(data[pos + 6])
            width = int(data[pos + 7]) << 8 | int(data[pos + 8])
            return (width, height) if width and height else None
        pos += 2 + length
    return None


def decode_bytes(data: np.ndarray, path: str | Path, reduce: int = 1) -> Tensor:
    """The RGB pixels of the image file ``path`` whose bytes are ``data``, uint8 ``(3, H, W)``.

    ``reduce`` 2, 4 or 8: libjpeg's reduced-size decoding through PIL's draft mode, the image
    scaled by ``1 / reduce`` in the DCT domain (``ceil(W / reduce) x ceil(H / reduce)``), which
    skips most of the inverse DCT, upsampling and colour conversion work; a file that does not
    allow it (not a JPEG, several scans in PIL's terms) comes back at full size, so callers map
    coordinates by the size they get. Errors as :func:`decode_file`'s.
    """
    if reduce != 1:
        return _decode_reduced(data, path, reduce)
    decode_jpeg = jpeg_decoder() if data[:3].tobytes() == JPEG_MAGIC else None
    if decode_jpeg is not None:
        try:
            return decode_jpeg(torch.from_numpy(data))
        except RuntimeError:
            pass  # PIL decides, and names the path when it fails too
    return pil_to_uint8(read_image(path))


def _decode_reduced(data: np.ndarray, path: str | Path, reduce: int) -> Tensor:
    if reduce not in (2, 4, 8):
        raise ValueError(f"reduce: expected 1, 2, 4 or 8, got {reduce}")
    try:
        with Image.open(io.BytesIO(data.tobytes())) as img:
            width, height = img.size
            if img.format == "JPEG" and img.draft("RGB", (width // reduce, height // reduce)):
                return pil_to_uint8(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot decode image {path}: {err}") from err
    return decode_bytes(data, path)  # no reduced decoding for this file: the full image


def decode_file(path: str | Path) -> Tensor:
    """The RGB pixels of the image file ``path``, uint8 ``(3, H, W)`` (module docstring).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the path for a file
    that is not a readable image.
    """
    return decode_bytes(read_bytes(path), path)
