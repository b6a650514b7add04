"""Local pretrained weights: exact round trips, prefix stripping, classifier keys, Caffe names,
and clear errors for every kind of mismatch."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dmlkit.core.serialization import write_state
from dmlkit.models import create_model, read_state_dict
from dmlkit.models.bninception import CAFFE_UNITS
from dmlkit.training.checkpoint import save_checkpoint


def _equal_states(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def _trained_small_cnn() -> torch.nn.Module:
    source = create_model("small_cnn", embedding_dim=8, head_bn=True)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p))
        for m in source.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    return source


def test_backbone_state_round_trips_exactly(tmp_path: Path) -> None:
    source = _trained_small_cnn()
    path = tmp_path / "backbone.pt"
    torch.save(source.backbone.state_dict(), path)
    model = create_model("small_cnn", embedding_dim=8, pretrained=str(path))
    _equal_states(model.backbone, source.backbone)
    assert not torch.equal(model.head.linear.weight, source.head.linear.weight)  # head stays fresh


def test_whole_model_state_round_trips_with_wrapper_prefixes(tmp_path: Path) -> None:
    source = _trained_small_cnn().eval()
    wrapped = {f"module._orig_mod.{k}": v for k, v in source.state_dict().items()}
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "state_dict": wrapped}, path)
    model = create_model("small_cnn", embedding_dim=8, head_bn=True, pretrained=path).eval()
    _equal_states(model, source)
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(model(x), source(x))


def test_a_dmlkit_training_checkpoint_is_a_pretrained_file(tmp_path: Path) -> None:
    source = _trained_small_cnn().eval()
    path = save_checkpoint(
        {"kind": "best", "step": 3, "config": {"model": {"name": "small_cnn"}},
         "model": source.state_dict(), "loss": {}},
        tmp_path / "best.pt",
    )  # fmt: skip
    model = create_model("small_cnn", embedding_dim=8, head_bn=True, pretrained=path).eval()
    _equal_states(model, source)
    write_state({"rows": torch.zeros(2)}, tmp_path / "index.pt", kind="index")
    with pytest.raises(ValueError, match=r"index.pt: a dmlkit 'index' file without model weights"):
        read_state_dict(tmp_path / "index.pt")
    box = torch.load(path, weights_only=True)
    box["state"]["model"]["head.linear.weight"][0, 0] += 1.0
    torch.save(box, path)
    with pytest.raises(ValueError, match=r"pretrained: .*best.pt: checksum mismatch"):
        read_state_dict(path)


def test_safetensors_file(tmp_path: Path) -> None:
    source = _trained_small_cnn()
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in source.backbone.state_dict().items()}, str(path))
    _equal_states(create_model("small_cnn", pretrained=path).backbone, source.backbone)


def test_torchvision_file_with_classifier_loads_without_it(tmp_path: Path) -> None:
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):
        shapes = torchvision.models.resnet18(weights=None).state_dict()
    state = {k: torch.randn(v.shape) if v.is_floating_point() else torch.zeros((), dtype=v.dtype)
             for k, v in shapes.items()}  # fmt: skip
    assert "fc.weight" in state
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    model = create_model("resnet18", pretrained=path)
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, state[key]), key


def _to_caffe_name(key: str) -> str:
    """Inverse of the loader's mapping, written out independently for the test."""
    units = {v: k for k, v in CAFFE_UNITS.items()}
    parts = key.split(".")
    param, part = parts[-1], parts[-2]
    suffix = "_bn" if part == "bn" else ""
    if parts[0].startswith("inception_"):
        unit = units[(parts[1], int(parts[2]))]
        return f"{parts[0]}_{unit}{suffix}.{param}"
    return f"{parts[0]}{suffix}.{param}"


def test_caffe_named_bninception_file_loads_exactly(tmp_path: Path) -> None:
    reference = create_model("bninception").backbone
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(1.0)
    state = {_to_caffe_name(k): v for k, v in reference.state_dict().items()
             if not k.endswith("num_batches_tracked")}  # fmt: skip
    assert "inception_3a_double_3x3_1_bn.running_mean" in state
    assert "inception_5b_pool_proj.bias" in state and "conv1_7x7_s2_bn.weight" in state
    state["last_linear.weight"] = torch.zeros(1000, 1024)
    state["last_linear.bias"] = torch.zeros(1000)
    path = tmp_path / "bn_inception.pth"
    torch.save(state, path)
    model = create_model("bninception", pretrained=path)
    for key, value in reference.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(model.backbone.state_dict()[key], value), key


def test_mismatches_are_listed_before_anything_changes(tmp_path: Path) -> None:
    source = create_model("small_cnn", widths=[8, 16])
    state = source.backbone.state_dict()
    state["extra.weight"] = torch.zeros(2)
    del state["0.bn.bias"]
    state["2.conv.weight"] = torch.zeros(16, 8, 5, 5)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    target = create_model("small_cnn", widths=[8, 16])
    with pytest.raises(ValueError) as err:
        create_model("small_cnn", widths=[8, 16], pretrained=path)
    message = str(err.value)
    assert "1 missing key(s): 0.bn.bias" in message
    assert "1 unexpected key(s): extra.weight" in message
    assert re.search(r"2\.conv\.weight file \(16, 8, 5, 5\) vs model \(16, 8, 3, 3\)", message)
    assert str(path) in message
    assert target.backbone[0].conv.weight.abs().sum() > 0


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        create_model("small_cnn", pretrained=tmp_path / "none.pt")
    old_ckpt = tmp_path / "last.pt"
    old_ckpt.write_bytes(b"DMLKIT-CHECKPOINT 1\nsha256 0\nbytes 0\n")
    with pytest.raises(ValueError, match=r"pretrained: .*last.pt: a checkpoint of the old format"):
        read_state_dict(old_ckpt)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"pretrained: .*garbage.pt: not a torch.save file"):
        read_state_dict(garbage)
    bad_safetensors = tmp_path / "w.safetensors"
    bad_safetensors.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    with pytest.raises(ValueError, match=r"w.safetensors is not a valid .safetensors file"):
        read_state_dict(bad_safetensors)
    not_state = tmp_path / "list.pt"
    torch.save({"epoch": 1, "weights": [1, 2]}, not_state)
    with pytest.raises(ValueError, match=r"holds no state dict .* keys \['epoch', 'weights'\]"):
        read_state_dict(not_state)


def test_missing_vision_packages_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    monkeypatch.setitem(sys.modules, "timm", None)
    for name in ("resnet50", "vit_small"):
        with pytest.raises(ImportError, match=r"pip install dmlkit\[vision\]") as err:
            create_model(name)
        assert name in str(err.value)
    assert create_model("bninception", embedding_dim=4).embedding_dim == 4  # needs neither
