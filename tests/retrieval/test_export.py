"""Export: TorchScript and ONNX outputs equal the eager evaluated model within 1e-5 at several
batch sizes (dynamic batch axis), the sidecar describes input, output and preprocessing, and a
two-head model exports the view its run evaluates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from dmlkit.config import config_to_dict, load_config
from dmlkit.retrieval import ModelBundle, bundle_from_checkpoint
from dmlkit.retrieval.export import export_model
from dmlkit.retrieval.preprocess import preprocessing
from dmlkit.training.build import build_model
from tests.tiny_demo import TINY_DEMO

# TorchScript still loads and runs in torch 2.14, which announces its deprecation
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")


def exported_outputs(path: Path, fmt: str, x: torch.Tensor) -> np.ndarray:
    if fmt == "torchscript":
        return torch.jit.load(str(path))(x).detach().numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["embeddings"], {"images": x.numpy()})[0]


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_model_equals_eager(fmt: str, checkpoint: Path, tmp_path: Path) -> None:
    bundle = bundle_from_checkpoint(checkpoint)
    path, meta = export_model(bundle, fmt, tmp_path / fmt)
    model = bundle.build()
    for batch in (1, 5, 33):
        x = torch.randn(batch, 1, 8, 8)
        with torch.no_grad():
            eager = model(x).numpy()
        out = exported_outputs(path, fmt, x)
        assert out.shape == (batch, 16)
        assert np.abs(out - eager).max() <= 1e-5
        assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    sidecar = json.loads(meta.read_text())
    assert sidecar["input"] == {"name": "images", "shape": ["batch", 1, 8, 8], "dtype": "float32"}
    assert sidecar["output"]["shape"] == ["batch", 16] and sidecar["normalized"] is True
    assert sidecar["preprocessing"] == {
        "transform": "small", "size": 8, "channels": 1, "channel_order": "L", "resize": None,
        "scale": 1.0, "mean": [0.5], "std": [0.5],
    }  # fmt: skip


def test_a_two_head_model_exports_its_evaluated_view(tmp_path: Path) -> None:
    config = load_config(
        None,
        [
            *TINY_DEMO,
            "model.in_channels=1",
            "model.embedding_dim=24",
            "model.options.heads={discriminative: 16, shared: 8}",
            "method.name=sharing",
            "method.options.shared_dim=8",
            "method.options.hidden_dim=16",
        ],
    )
    model = build_model(config.model).eval()
    bundle = ModelBundle(
        config_to_dict(config), model.state_dict(), 10, preprocessing(config, 8), 16
    )
    path, _ = export_model(bundle, "torchscript", tmp_path)
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        heads = model.forward_heads(x)
    out = torch.jit.load(str(path))(x)
    assert out.shape == (3, 16)
    assert torch.allclose(out, heads["discriminative"], atol=1e-6)


def test_preprocessing_of_the_imagenet_presets() -> None:
    caffe = preprocessing(load_config(None, ["data.transform=caffe_bgr"]), None)
    assert (caffe.size, caffe.resize, caffe.channel_order, caffe.scale) == (227, 256, "BGR", 255.0)
    assert caffe.mean == (104.0, 117.0, 128.0) and caffe.std == (1.0, 1.0, 1.0)
    dml = preprocessing(load_config(None, ["data.transform=dml", "data.image_size=112"]), None)
    assert (dml.size, dml.resize, dml.channels, dml.std) == (112, 128, 3, (0.229, 0.224, 0.225))


def test_export_without_a_fixed_input_side_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    bundle = bundle_from_checkpoint(checkpoint)
    loose = ModelBundle(
        bundle.config, bundle.weights, bundle.num_classes,
        type(bundle.preprocessing)(**{**bundle.preprocessing.__dict__, "size": None}), 16,
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"data\.image_size is not set"):
        export_model(loose, "torchscript", tmp_path)
    with pytest.raises(ValueError, match="--format: expected one of"):
        export_model(bundle, "tflite", tmp_path)
