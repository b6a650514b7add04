"""Transform presets: exact values on constant images, geometry, channel handling, picklability."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from dmlkit.data import TRANSFORMS, create_transform, to_tensor
from dmlkit.data.transforms import CAFFE_BGR_MEAN, IMAGENET_MEAN, IMAGENET_STD, random_affine


def test_to_tensor_modes() -> None:
    gray = Image.fromarray(np.array([[0, 51], [102, 255]], dtype=np.uint8))
    x = to_tensor(gray)
    assert x.shape == (1, 2, 2) and x.dtype == torch.float32
    assert torch.equal(x[0], torch.tensor([[0.0, 0.2], [0.4, 1.0]]))
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 2] = 255, 51
    y = to_tensor(Image.fromarray(rgb))
    assert y.shape == (3, 2, 3) and torch.equal(y[:, 0, 0], torch.tensor([1.0, 0.0, 0.2]))
    rgba = Image.fromarray(np.full((2, 2, 4), 255, dtype=np.uint8))
    assert to_tensor(rgba).shape == (3, 2, 2)


def test_small_and_none_values() -> None:
    img = Image.fromarray(np.array([[0, 255], [51, 102]], dtype=np.uint8))
    plain = create_transform("none", train=True)(img)
    assert torch.equal(plain, to_tensor(img))
    small_eval = create_transform("small", train=False)(img)
    assert torch.allclose(small_eval, (to_tensor(img) - 0.5) / 0.5)
    resized = create_transform("small", train=False, image_size=4)(img)
    assert resized.shape == (1, 4, 4)


def test_small_train_is_a_seeded_random_affine() -> None:
    arr = np.zeros((16, 16), dtype=np.uint8)
    arr[4:12, 6:9] = 255
    img = Image.fromarray(arr)
    tf = create_transform("small", train=True)
    torch.manual_seed(1)
    a = tf(img)
    torch.manual_seed(1)
    b = tf(img)
    torch.manual_seed(2)
    c = tf(img)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (1, 16, 16) and float(a.min()) >= -1.0 and float(a.max()) <= 1.0
    # the map is close to the identity: most of the bar's mass stays
    assert float(((a + 1) / 2 * torch.from_numpy(arr / 255.0)).sum()) > 0.5 * float(
        arr.sum() / 255.0
    )


def test_random_affine_identity_parameters() -> None:
    arr = np.random.default_rng(0).integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    same = random_affine(Image.fromarray(arr), max_degrees=0.0, scale=(1.0, 1.0), max_shift=0.0)
    assert np.array_equal(np.asarray(same), arr)


def test_random_affine_quarter_turn() -> None:
    arr = np.zeros((5, 5), dtype=np.uint8)
    arr[0, 2] = 200  # top centre
    torch.manual_seed(0)
    u = torch.rand(4).tolist()
    # the angle is max_degrees * (2 u0 - 1): choose max_degrees so that it is 90 degrees
    torch.manual_seed(0)
    out = random_affine(Image.fromarray(arr), 90.0 / (2 * u[0] - 1.0), (1.0, 1.0), max_shift=0.0)
    moved = np.asarray(out)
    assert abs(int(moved[2, 0]) + int(moved[2, 4]) - 200) <= 1  # to the middle of a side
    assert abs(int(moved.sum()) - 200) <= 1


def test_random_affine_shift_moves_the_centroid() -> None:
    arr = np.zeros((20, 20), dtype=np.uint8)
    arr[7:12, 8:11] = 255
    torch.manual_seed(3)
    u = torch.rand(4).tolist()
    torch.manual_seed(3)
    out = np.asarray(random_affine(Image.fromarray(arr), 0.0, (1.0, 1.0), max_shift=0.1)).astype(
        float
    )
    rows, cols = np.mgrid[0:20, 0:20]
    before = np.array([(cols * arr).sum(), (rows * arr).sum()]) / arr.sum()
    after = np.array([(cols * out).sum(), (rows * out).sum()]) / out.sum()
    expected = np.array([(2 * u[2] - 1) * 0.1 * 20, (2 * u[3] - 1) * 0.1 * 20])
    assert np.allclose(after - before, expected, atol=0.02)


@pytest.mark.parametrize(("name", "size"), [("dml", 224), ("dml227", 227), ("caffe_bgr", 227)])
def test_dml_presets_geometry(name: str, size: int) -> None:
    pytest.importorskip("torchvision", reason="the DML presets use torchvision (vision extra)")
    img = Image.new("RGB", (300, 260), (10, 20, 30))
    for train in (True, False):
        assert create_transform(name, train=train)(img).shape == (3, size, size)
    assert create_transform(name, train=False, image_size=64)(img).shape == (3, 64, 64)
    gray = Image.new("L", (40, 50), 7)
    assert create_transform(name, train=True)(gray).shape == (3, size, size)


def test_dml_normalisations_on_a_constant_image() -> None:
    pytest.importorskip("torchvision", reason="the DML presets use torchvision (vision extra)")
    rgb = (200, 100, 50)
    img = Image.new("RGB", (256, 256), rgb)
    imagenet = create_transform("dml", train=False)(img)
    for c in range(3):
        expected = (rgb[c] / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert torch.allclose(imagenet[c], torch.tensor(expected), atol=1e-5)
    caffe = create_transform("caffe_bgr", train=True)(img)
    bgr = rgb[::-1]
    for c in range(3):
        assert torch.allclose(caffe[c], torch.tensor(bgr[c] - CAFFE_BGR_MEAN[c]), atol=1e-3)


def test_registry_and_pickling() -> None:
    assert TRANSFORMS.names() == ["caffe_bgr", "dml", "dml227", "none", "small"]
    with pytest.raises(KeyError, match="registered: caffe_bgr, dml"):
        create_transform("imagenet", train=True)
    with pytest.raises(ValueError, match="image_size"):
        create_transform("small", train=True, image_size=0)
    img = Image.new("L", (30, 30), 77)
    for name in ("none", "small"):
        tf = create_transform(name, train=False)
        assert torch.equal(pickle.loads(pickle.dumps(tf))(img), tf(img))


def test_dml_presets_pickle() -> None:
    pytest.importorskip("torchvision", reason="the DML presets use torchvision (vision extra)")
    img = Image.new("RGB", (300, 300), (1, 2, 3))
    for name in ("dml", "dml227", "caffe_bgr"):
        tf = create_transform(name, train=False)
        assert torch.equal(pickle.loads(pickle.dumps(tf))(img), tf(img))
