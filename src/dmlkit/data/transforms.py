"""Transform presets: ``create_transform(name, train, image_size)`` -> ``PIL.Image -> Tensor (C, H, W)``.

=============  =================================================================================
``"dml"``       the DML standard for ImageNet backbones. Train: Resize 256, RandomResizedCrop 224
                (scale 0.16-1, ratio 3/4-4/3), horizontal flip p=0.5; eval: Resize 256, CenterCrop
                224. RGB in [0, 1], then ``(x - mean) / std`` with the ImageNet mean and std.
``"dml227"``    the same at 227 (the MLRC / BN-Inception crop).
``"caffe_bgr"`` the same geometry at 227 with the Caffe normalisation of BN-Inception weights:
                channels reversed to BGR, scaled to 0-255, minus ``[104, 117, 128]`` (B, G, R).
``"small"``     for small fixed-size sets (digits, Fashion-MNIST, glyphs). Train: a random affine
                map (rotation within +-10 degrees, scale 0.9-1.1, shift within +-1/16 of the side,
                zero fill); eval: none. Then ``(x - 0.5) / 0.5``. PIL and torch, no torchvision.
``"none"``      the image as float32 in [0, 1]. PIL and torch.
=============  =================================================================================

With ``image_size`` the crop (or, for "small"/"none", the output side) changes; the DML presets then
resize to ``round(8 / 7 * image_size)`` before cropping. Grayscale inputs become RGB for the DML
presets and keep their channel count for "small"/"none". Random draws use torch's default CPU
generator, which :class:`DMLDataset` seeds per sample and epoch.

The DML presets (:class:`DMLTransform`) draw the crop of the resized image without resizing it
(:mod:`dmlkit.data.crops`), resample the cropped region once in uint8 and normalise last; image
files are decoded by torchvision when it is installed (:mod:`dmlkit.data.decode`), by PIL
otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from dmlkit.core.registry import Registry
from dmlkit.data.crops import Crop, dml_crop
from dmlkit.data.decode import decode_bytes, jpeg_size, pil_to_uint8, read_bytes

ImageTransform = Callable[[Image.Image], Tensor]
TRANSFORMS: Registry[ImageTransform] = Registry("transform")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (104.0, 117.0, 128.0)
DML_RESIZE = 256


def to_tensor(img: Image.Image) -> Tensor:
    """``PIL.Image`` (L, RGB, ...) -> float32 ``(C, H, W)`` in ``[0, 1]``; other modes become RGB."""
    if img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    arr = np.array(img, dtype=np.uint8)
    x = torch.from_numpy(arr).float().div_(255.0)
    return x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1).contiguous()


def random_affine(
    img: Image.Image,
    max_degrees: float = 10.0,
    scale: tuple[float, float] = (0.9, 1.1),
    max_shift: float = 1 / 16,
) -> Image.Image:
    """One random rotation + scale + shift about the image centre, zero fill, bilinear sampling.

    Angle ``U(-max_degrees, max_degrees)``, scale ``U(*scale)``, shift ``U(-max_shift, max_shift)``
    of the side per axis, drawn from torch's default generator. The output pixel ``o`` samples the
    input at ``c + R(-angle) (o - c - shift) / scale`` (``c`` the centre). Cost O(H W).
    """
    u = torch.rand(4).tolist()
    angle = math.radians(max_degrees * (2.0 * u[0] - 1.0))
    zoom = scale[0] + (scale[1] - scale[0]) * u[1]
    width, height = img.size
    cx, cy = width / 2.0, height / 2.0
    sx = cx + (2.0 * u[2] - 1.0) * max_shift * width
    sy = cy + (2.0 * u[3] - 1.0) * max_shift * height
    a, b = math.cos(angle) / zoom, math.sin(angle) / zoom
    coeffs = (a, b, cx - a * sx - b * sy, -b, a, cy + b * sx - a * sy)
    return img.transform(
        img.size, Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR, fillcolor=0
    )


class TensorTransform:
    """The presets without torchvision: optional resize to ``image_size`` (bilinear, antialiased),
    optional :func:`random_affine`, to tensor, optional ``(x - 0.5) / 0.5``."""

    def __init__(self, image_size: int | None, augment: bool, normalize: bool) -> None:
        if image_size is not None and image_size < 1:
            raise ValueError(f"image_size: expected a positive int or None, got {image_size}")
        self.image_size = image_size
        self.augment = augment
        self.normalize = normalize

    def __call__(self, img: Image.Image) -> Tensor:
        if self.image_size is not None and img.size != (self.image_size, self.image_size):
            img = img.resize((self.image_size, self.image_size), Image.Resampling.BILINEAR)
        if self.augment:
            img = random_affine(img)
        x = to_tensor(img)
        return (x - 0.5) / 0.5 if self.normalize else x


class DMLTransform:
    """The ``dml`` / ``dml227`` / ``caffe_bgr`` presets: one crop of the original image, resampled
    once, uint8 until the normalisation.

    Geometry (:func:`~dmlkit.data.crops.dml_crop`): the crop and flip of torchvision's
    ``Resize(resize)`` + ``RandomResizedCrop(crop, scale=(0.16, 1), ratio=(3/4, 4/3))`` +
    ``RandomHorizontalFlip()`` for ``train``, of ``Resize(resize)`` + ``CenterCrop(crop)``
    otherwise, drawn on the resized size and mapped back to the original pixels. The region is
    resized to ``crop x crop`` in uint8 (bilinear, antialiased, ``torch.nn.functional.interpolate``),
    mirrored, and only then made float32: ImageNet ``(x / 255 - mean) / std`` per RGB channel, or
    with ``caffe`` the channels reversed to BGR, ``x - CAFFE_BGR_MEAN`` on the 0-255 scale.

    ``__call__`` takes a ``PIL.Image``; ``from_file`` takes a path (what
    :class:`~dmlkit.data.base.FileDataset` uses): it draws the crop from the JPEG header's size
    and decodes at 1/2, 1/4 or 1/8 size when the crop keeps at least the output's pixels
    (reduced-size JPEG decoding), else in full with :func:`~dmlkit.data.decode.decode_bytes`.
    Output ``(3, crop, crop)`` float32. Cost: one decode, one resampling of the region
    (O(region + crop^2)), one float pass over the output.
    """

    def __init__(self, train: bool, crop: int, resize: int, caffe: bool) -> None:
        if crop < 1 or resize < crop:
            raise ValueError(
                f"image_size: expected a positive crop no larger than the resize, got crop "
                f"{crop}, resize {resize}"
            )
        self.train = train
        self.crop = crop
        self.resize = resize
        self.caffe = caffe
        # output channel c = x[c] * scale[c] + shift[c], x in RGB (BGR for caffe) on 0-255
        self.channels = (2, 1, 0) if caffe else (0, 1, 2)
        scale: tuple[float, ...]
        shift: tuple[float, ...]
        if caffe:
            scale, shift = (1.0, 1.0, 1.0), tuple(-m for m in CAFFE_BGR_MEAN)
        else:
            scale = tuple(1.0 / (255.0 * s) for s in IMAGENET_STD)
            shift = tuple(-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))
        self.scale = torch.tensor(scale, dtype=torch.float32).view(3, 1, 1)
        self.shift = torch.tensor(shift, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, img: Image.Image) -> Tensor:
        return self.apply(pil_to_uint8(img))

    def from_file(self, path: str | Path) -> Tensor:
        """The transform of the image file ``path``, decoded without a ``PIL.Image``; a JPEG's
        size is read from its header first, and when the crop has at least 2, 4 or 8 times the
        output's pixels each way the JPEG is decoded at that reduced size
        (:func:`~dmlkit.data.decode.decode_bytes`), the crop mapped onto it."""
        data = read_bytes(path)
        size = jpeg_size(data)
        if size is None:
            return self.apply(decode_bytes(data, path))
        box = self.draw(*size)
        return self.resample(decode_bytes(data, path, box.reduction(self.crop)), box, size)

    def apply(self, image: Tensor) -> Tensor:
        """uint8 RGB ``(3, H, W)`` (any strides) -> float32 ``(3, crop, crop)``."""
        height, width = image.shape[-2:]
        return self.resample(image, self.draw(width, height), (width, height))

    def draw(self, width: int, height: int) -> Crop:
        """The crop (and flip) of a ``width x height`` image (random when training)."""
        return dml_crop(width, height, self.crop, self.resize, self.train)

    def resample(self, image: Tensor, box: Crop, size: tuple[int, int]) -> Tensor:
        """``box`` (in the pixels of a ``size = (W, H)`` image) of ``image``, uint8 ``(3, h, w)``
        (that image, or a reduced decoding of it: the box is scaled by ``w / W``, ``h / H``),
        resampled to ``crop x crop``, mirrored, normalised to float32 ``(3, crop, crop)``."""
        height, width = image.shape[-2:]
        if (width, height) != size:
            box = box.scaled(width / size[0], height / size[1])
        x0, y0, x1, y1 = box.pixels(width, height)
        # channels-last: the layout of torch's vectorised uint8 antialiased resampling
        region = image[None, :, y0:y1, x0:x1].contiguous(memory_format=torch.channels_last)
        out = nn.functional.interpolate(
            region, size=(self.crop, self.crop), mode="bilinear", antialias=True
        )[0]
        if box.flip:
            out = out.flip(-1)
        # one pass to contiguous float32 planes (in BGR order for caffe), then in place: the
        # fastest order measured (a channel flip of the channels-last uint8 image is slower)
        x = torch.empty(3, self.crop, self.crop)
        for plane, channel in enumerate(self.channels):
            x[plane].copy_(out[channel])
        return x.mul_(self.scale).add_(self.shift)


def _dml_preset(default_crop: int, caffe: bool) -> Callable[[bool, int | None], ImageTransform]:
    def build(train: bool, image_size: int | None) -> ImageTransform:
        crop = default_crop if image_size is None else image_size
        if crop < 1:
            raise ValueError(f"image_size: expected a positive int or None, got {image_size}")
        resize = DML_RESIZE if crop == default_crop else round(crop * 8 / 7)
        return DMLTransform(train, crop, resize, caffe)

    return build


TRANSFORMS.register("dml")(_dml_preset(224, caffe=False))
TRANSFORMS.register("dml227")(_dml_preset(227, caffe=False))
TRANSFORMS.register("caffe_bgr")(_dml_preset(227, caffe=True))


@TRANSFORMS.register("small")
def _small(train: bool, image_size: int | None) -> ImageTransform:
    return TensorTransform(image_size, augment=train, normalize=True)


@TRANSFORMS.register("none")
def _none(train: bool, image_size: int | None) -> ImageTransform:
    return TensorTransform(image_size, augment=False, normalize=False)


def create_transform(name: str, train: bool, image_size: int | None = None) -> ImageTransform:
    """The preset ``name`` (module docstring) for training (``train=True``) or evaluation."""
    return TRANSFORMS.create(name, train=train, image_size=image_size)
