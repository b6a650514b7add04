"""The DML presets' crop geometry: torchvision's draws exactly, the same augmentation distribution
(two-sample tests against torchvision's own sampler), and one resampling that matches the two of
``Resize`` + ``RandomResizedCrop`` pixel for pixel within a few grey levels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from dmlkit.data.crops import (
    DML_RATIO,
    DML_SCALE,
    Crop,
    center_crop,
    dml_crop,
    random_resized_crop,
    resized_size,
)
from dmlkit.data.transforms import IMAGENET_MEAN, IMAGENET_STD, create_transform

T = pytest.importorskip("torchvision.transforms", reason="the reference is torchvision's")
stats = pytest.importorskip("scipy.stats")

SIZES = [(500, 375), (375, 500), (256, 256), (1000, 60), (60, 1000), (301, 299), (17, 900)]


def _stand_in(width: int, height: int) -> torch.Tensor:
    """A tensor with the shape of a ``width x height`` image, for torchvision's ``get_params``."""
    return torch.zeros(1, 1, 1).expand(1, height, width)


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_random_resized_crop_draws_what_torchvision_draws(width: int, height: int) -> None:
    for seed in range(200):
        torch.manual_seed(seed)
        ours = random_resized_crop(width, height, DML_SCALE, DML_RATIO)
        after_ours = torch.rand(1)
        torch.manual_seed(seed)
        theirs = T.RandomResizedCrop.get_params(_stand_in(width, height), DML_SCALE, DML_RATIO)
        assert ours == theirs
        assert torch.equal(after_ours, torch.rand(1))  # the same number of draws


def test_the_central_fallback_matches_torchvision() -> None:
    # a 1000 x 10 strip: no 3/4-4/3 crop of 16-100 % of the area fits in 10 tries
    torch.manual_seed(0)
    ours = random_resized_crop(1000, 10, DML_SCALE, DML_RATIO)
    torch.manual_seed(0)
    assert ours == T.RandomResizedCrop.get_params(_stand_in(1000, 10), DML_SCALE, DML_RATIO)
    assert ours == (0, (1000 - 13) // 2, 10, 13)


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_resized_size_and_center_crop_match_torchvision(width: int, height: int) -> None:
    img = Image.new("RGB", (width, height))
    resized = T.Resize(256)(img)
    assert resized_size(width, height, 256) == resized.size
    rw, rh = resized.size
    i, j, h, w = center_crop(rw, rh, 224)
    probe = Image.fromarray(np.arange(rw * rh, dtype=np.int32).reshape(rh, rw))
    assert np.array_equal(
        np.asarray(T.CenterCrop(224)(probe)), np.asarray(probe)[i : i + h, j : j + w]
    )


def test_crop_maps_back_to_the_original_and_rounds_inside_it() -> None:
    torch.manual_seed(3)
    box = dml_crop(500, 375, 224, 256, train=True)
    torch.manual_seed(3)
    i, j, h, w = random_resized_crop(341, 256, DML_SCALE, DML_RATIO)
    flip = bool(torch.rand(1) < 0.5)
    sx, sy = 500 / 341, 375 / 256
    assert box == Crop(j * sx, i * sy, w * sx, h * sy, flip)
    assert Crop(-0.4, 9.6, 0.2, 400.0).pixels(500, 375) == (0, 10, 1, 375)
    evaluation = dml_crop(500, 375, 224, 256, train=False)
    assert not evaluation.flip
    # left round((341 - 224) / 2) = round(58.5) = 58 (Python's and torchvision's rounding)
    assert evaluation.pixels(500, 375) == (
        round(58 * sx),
        round(16 * sy),
        round((58 + 224) * sx),
        round((16 + 224) * sy),
    )
    with pytest.raises(ValueError, match="at least 224x224, got 200x300"):
        center_crop(200, 300, 224)
    with pytest.raises(ValueError, match="expected positive width and height, got 0x5"):
        resized_size(0, 5, 256)


def test_reduction_keeps_the_output_pixels() -> None:
    assert Crop(0, 0, 900, 700, False).reduction(224) == 2  # 700 / 2 = 350, 700 / 4 < 224
    assert Crop(0, 0, 1800, 1800, False).reduction(224) == 8
    assert Crop(0, 0, 896, 896, False).reduction(224) == 4
    assert Crop(0, 0, 447.9, 900, False).reduction(224) == 1
    assert Crop(10, 20, 30, 40).scaled(0.5, 0.25) == Crop(5, 5, 15, 10)


def _summaries(
    boxes: list[tuple[float, float, float, float, bool]], aspect: float
) -> dict[str, np.ndarray]:
    """Relative area, log pixel aspect, relative centre x / y and flips of ``(x, y, w, h, flip)``
    boxes in units of the side of an image of aspect ``aspect`` (width / height)."""
    a = np.array(boxes, dtype=np.float64)
    return {
        "scale": a[:, 2] * a[:, 3],
        "log_aspect": np.log(a[:, 2] / a[:, 3] * aspect),
        "centre_x": a[:, 0] + a[:, 2] / 2,
        "centre_y": a[:, 1] + a[:, 3] / 2,
        "flip": a[:, 4],
    }


@pytest.mark.parametrize(("width", "height"), [(500, 375), (375, 500)])
def test_the_augmentation_distribution_is_torchvisions(width: int, height: int) -> None:
    """4000 crops of ours (one stream, seed 0) against 4000 of torchvision's Resize(256) +
    RandomResizedCrop + RandomHorizontalFlip sampler on the resized image (seed 1): two-sample
    KS tests of relative area, log aspect and centre, a chi-square test of the flips."""
    n = 4000
    resized = T.Resize(256)(Image.new("RGB", (width, height)))
    rw, rh = resized.size
    rrc = T.RandomResizedCrop(224, scale=DML_SCALE, ratio=DML_RATIO)
    ours, theirs = [], []
    torch.manual_seed(0)
    for _ in range(n):
        c = dml_crop(width, height, 224, 256, train=True)
        ours.append((c.left / width, c.top / height, c.width / width, c.height / height, c.flip))
    torch.manual_seed(1)
    for _ in range(n):
        i, j, h, w = rrc.get_params(resized, rrc.scale, rrc.ratio)
        flip = bool(torch.rand(1) < 0.5)  # RandomHorizontalFlip's draw
        theirs.append((j / rw, i / rh, w / rw, h / rh, flip))
    a, b = _summaries(ours, rw / rh), _summaries(theirs, rw / rh)
    for name in ("scale", "log_aspect", "centre_x", "centre_y"):
        assert stats.ks_2samp(a[name], b[name]).pvalue > 0.01, name
    flips = np.array(
        [[a["flip"].sum(), n - a["flip"].sum()], [b["flip"].sum(), n - b["flip"].sum()]]
    )
    assert stats.chi2_contingency(flips).pvalue > 0.01
    # and the sampler is the preset's: scale within 0.16-1 of the resized area, aspect 3/4-4/3
    assert a["scale"].min() > 0.15 and a["scale"].max() <= 1.0
    assert np.abs(a["log_aspect"]).max() < math.log(4 / 3) + 0.02
    assert 0.47 < a["flip"].mean() < 0.53


def _smooth_photo(width: int, height: int) -> Image.Image:
    """A smooth colour image (interpolated random 6 x 8 colour field)."""
    field = np.random.default_rng(0).integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    return Image.fromarray(field).resize((width, height), Image.Resampling.BICUBIC)


@pytest.mark.parametrize("train", [True, False])
def test_one_resampling_matches_resize_then_crop(train: bool) -> None:
    """The preset (crop drawn on the resized size, one uint8 resampling of the region) against
    torchvision's two-step Resize(256) + RandomResizedCrop / CenterCrop + flip with the same
    seed: the same crop and flip, pixels within a few grey levels."""
    img = _smooth_photo(500, 375)
    geometry = (
        [T.RandomResizedCrop(224, scale=DML_SCALE, ratio=DML_RATIO), T.RandomHorizontalFlip()]
        if train
        else [T.CenterCrop(224)]
    )
    reference = T.Compose(
        [T.Resize(256), *geometry, T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )
    ours = create_transform("dml", train=train)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    flips = 0
    for seed in range(10):
        torch.manual_seed(seed)
        a = ours(img)
        flips += dml_crop(500, 375, 224, 256, train).flip
        torch.manual_seed(seed)
        b = reference(img)
        grey_levels = ((a - b) * std * 255).abs()
        assert a.shape == b.shape == (3, 224, 224)
        assert float(grey_levels.mean()) < 1.0 and float(grey_levels.max()) < 12.0
    assert not train or 0 < flips < 10  # both orientations were compared
