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
presets and keep their channel count for "small"/"none". The DML presets need torchvision (the
``vision`` extra). Random draws use torch's default CPU generator, which :class:`DMLDataset`
seeds per sample and epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from dmlkit.core.registry import Registry

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


class ConvertRGB:
    """``PIL.Image`` -> RGB ``PIL.Image`` (picklable, for loader workers)."""

    def __call__(self, img: Image.Image) -> Image.Image:
        return img.convert("RGB")


class CaffeBGR:
    """RGB ``(3, H, W)`` in [0, 1] -> BGR in 0-255 minus ``CAFFE_BGR_MEAN``."""

    def __call__(self, x: Tensor) -> Tensor:
        mean = torch.tensor(CAFFE_BGR_MEAN, dtype=x.dtype).view(3, 1, 1)
        return x.flip(0) * 255.0 - mean


def dml_transform(train: bool, crop: int, resize: int, caffe: bool) -> ImageTransform:
    """The DML preset geometry (module docstring) with ImageNet or Caffe normalisation."""
    try:
        from torchvision import transforms as T
    except ImportError as err:
        raise ImportError(
            "the DML transform presets need torchvision: pip install 'dmlkit[vision]'"
        ) from err
    if train:
        geometry = [
            T.Resize(resize),
            T.RandomResizedCrop(crop, scale=(0.16, 1.0), ratio=(3 / 4, 4 / 3)),
            T.RandomHorizontalFlip(),
        ]
    else:
        geometry = [T.Resize(resize), T.CenterCrop(crop)]
    norm = CaffeBGR() if caffe else T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    return T.Compose([ConvertRGB(), *geometry, T.ToTensor(), norm])


def _dml_preset(default_crop: int, caffe: bool) -> Callable[[bool, int | None], ImageTransform]:
    def build(train: bool, image_size: int | None) -> ImageTransform:
        crop = default_crop if image_size is None else image_size
        if crop < 1:
            raise ValueError(f"image_size: expected a positive int or None, got {image_size}")
        resize = DML_RESIZE if crop == default_crop else round(crop * 8 / 7)
        return dml_transform(train, crop, resize, caffe)

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
