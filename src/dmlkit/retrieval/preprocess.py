"""What an image goes through before the model: the run's evaluation transform, written down.

:class:`Preprocessing` is plain data (the export sidecar and the index store it as a dict): the
transform preset and input side the run evaluated with, the channels the model takes, and what the
preset does in numbers, so that code outside dmlkit can reproduce it::

    small:      resize to size x size (bilinear), x in [0, 1], (x - 0.5) / 0.5 per channel
    none:       resize to size x size, x in [0, 1]
    dml*:       resize the shorter side to `resize`, centre crop size x size, RGB in [0, 1],
                (x - mean) / std with the ImageNet mean and std
    caffe_bgr:  as dml227, then channels reversed to BGR, x * 255 - [104, 117, 128]

``transform()`` gives the callable dmlkit uses (``PIL.Image -> (C, H, W)`` float32), the same
:func:`dmlkit.data.create_transform` the evaluation used, after converting the image to the
model's channels (``L`` for one channel, ``RGB`` for three).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from PIL import Image
from torch import Tensor

from dmlkit.config import ExperimentConfig
from dmlkit.data import create_transform
from dmlkit.data.transforms import CAFFE_BGR_MEAN, IMAGENET_MEAN, IMAGENET_STD

DML_CROPS = {"dml": 224, "dml227": 227, "caffe_bgr": 227}
SIMPLE_NORMALISATION = {"small": (0.5, 0.5), "none": (0.0, 1.0)}  # (mean, std) of every channel


@dataclass(frozen=True)
class Preprocessing:
    """The evaluation transform in numbers (module docstring). ``size``: the side of the model's
    input; ``resize``: the shorter side before the centre crop (DML presets, else ``None``);
    ``channel_order``: ``"RGB"``, ``"BGR"`` or ``"L"``; ``scale``: the factor on [0, 1] pixels
    before ``(x - mean) / std`` (``mean`` and ``std`` empty for a transform registered outside
    dmlkit)."""

    transform: str
    size: int | None
    channels: int
    channel_order: str
    resize: int | None
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists for the tuples)."""
        out = asdict(self)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """The inverse of :meth:`to_dict`."""
        fields = {**data, "mean": tuple(data["mean"]), "std": tuple(data["std"])}
        return cls(**fields)

    def transform_fn(self) -> Callable[[Image.Image], Tensor]:
        """``PIL.Image -> (C, H, W)`` float32: channel conversion, then the evaluation preset."""
        preset = create_transform(self.transform, train=False, image_size=self.size)
        mode = "L" if self.channels == 1 else "RGB"

        def apply(img: Image.Image) -> Tensor:
            return preset(img.convert(mode) if img.mode != mode else img)

        return apply


def preprocessing(config: ExperimentConfig, image_size: int | None) -> Preprocessing:
    """The :class:`Preprocessing` of a run: ``config.data.transform`` at ``config.data.image_size``
    (else ``image_size``, the side of the dataset's fixed-size images)."""
    name = config.data.transform
    size = config.data.image_size or image_size
    channels = config.model.in_channels or 3
    if name in DML_CROPS:
        crop = size or DML_CROPS[name]
        resize = 256 if crop == DML_CROPS[name] else round(crop * 8 / 7)
        if name == "caffe_bgr":
            return Preprocessing(name, crop, 3, "BGR", resize, 255.0, CAFFE_BGR_MEAN, (1.0,) * 3)
        return Preprocessing(name, crop, 3, "RGB", resize, 1.0, IMAGENET_MEAN, IMAGENET_STD)
    order = "L" if channels == 1 else "RGB"
    if name in SIMPLE_NORMALISATION:
        mean, std = (
            (SIMPLE_NORMALISATION[name][0],) * channels,
            (SIMPLE_NORMALISATION[name][1],) * channels,
        )
    else:  # a transform registered outside dmlkit: its numbers are its own
        mean, std = (), ()
    return Preprocessing(name, size, channels, order, None, 1.0, mean, std)
