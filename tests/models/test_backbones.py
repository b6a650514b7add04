"""Every registered backbone: construction without weights, output shapes, unit-norm embeddings."""

from __future__ import annotations

import pytest
import torch

from dmlkit.models import MODELS, create_model
from dmlkit.models.bninception import BLOCKS, BNInception


@pytest.mark.parametrize(
    ("name", "shape", "in_channels", "features"),
    [
        ("small_cnn", (3, 1, 8, 8), 1, 256),
        ("small_cnn", (3, 1, 28, 28), 1, 256),
        ("small_cnn", (3, 3, 32, 32), 3, 256),
        ("mlp", (3, 1, 8, 8), 1, 256),
        ("bninception", (2, 3, 32, 32), 3, 1024),
        ("resnet18", (2, 3, 32, 32), 3, 512),
        ("resnet50", (2, 3, 32, 32), 3, 2048),
        ("vit_small", (2, 3, 32, 48), 3, 384),
    ],
)
def test_shapes_and_unit_norm(
    name: str, shape: tuple[int, ...], in_channels: int, features: int
) -> None:
    model = create_model(name, embedding_dim=24, in_channels=in_channels).eval()
    with torch.no_grad():
        feat = model.forward_features(torch.randn(shape))
        emb = model.head(feat)
    assert emb.shape == (shape[0], 24) and emb.dtype == torch.float32
    assert feat.shape == (shape[0], features) == (shape[0], model.num_features)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(shape[0]))
    assert model.embedding_dim == 24


def test_registered_names() -> None:
    expected = {"small_cnn", "mlp", "resnet18", "resnet50", "bninception", "vit_small"}
    assert expected <= set(MODELS.names())


def test_small_cnn_size_and_minimum_input() -> None:
    model = create_model("small_cnn", embedding_dim=64)
    backbone_params = sum(p.numel() for p in model.backbone.parameters())
    # 4 x (3x3 conv without bias + BN affine): 1*32*9 + 32*64*9 + 64*128*9 + 128*256*9 + 2*480
    assert backbone_params == 9 * (32 + 32 * 64 + 64 * 128 + 128 * 256) + 2 * (32 + 64 + 128 + 256)
    with pytest.raises(ValueError, match="at least 8x8 px for 4 blocks"):
        model(torch.randn(2, 1, 4, 4))
    small = create_model("small_cnn", widths=[16, 32], in_channels=1)
    assert small.forward_features(torch.randn(2, 1, 2, 2)).shape == (2, 32)


def test_mlp_takes_flat_vectors_and_checks_their_size() -> None:
    model = create_model("mlp", in_features=10, hidden=[12], embedding_dim=5)
    assert model(torch.randn(4, 10)).shape == (4, 5)
    with pytest.raises(ValueError, match="expected 10 input features per item"):
        model(torch.randn(4, 11))
    assert create_model("mlp", in_channels=3, image_size=4)(torch.randn(2, 3, 4, 4)).shape[1] == 128


def test_bninception_table_and_geometry_on_meta() -> None:
    channels = [256, 320, 576, 576, 576, 608, 608, 1056, 1024, 1024]
    net = BNInception().eval()
    blocks = [getattr(net, f"inception_{row[0]}") for row in BLOCKS]
    assert [b.out_channels for b in blocks] == channels
    assert sum(p.numel() for p in net.parameters()) == 10_270_240
    with torch.device("meta"):
        meta = BNInception().eval()
        for side, out in ((224, 7), (227, 7), (256, 8), (32, 1)):
            assert meta(torch.empty(1, 3, side, side)).shape == (1, 1024, out, out)
        with pytest.raises(ValueError, match="block 3c needs an even feature map"):
            meta(torch.empty(1, 3, 200, 200))


def test_vit_tokens_and_pooling_choice() -> None:
    with torch.device("meta"):
        model = create_model("vit_small", embedding_dim=8)
        tokens = model.backbone(torch.empty(1, 3, 32, 64))
        assert tokens.shape == (1, 1 + 2 * 4, 384)
        assert model.pool.mode == "token" and model.pool.num_prefix_tokens == 1
        assert create_model("vit_small", pooling="avg+max").pool.mode == "avg+max"


def test_non_rgb_imagenet_backbones() -> None:
    with torch.device("meta"):
        model = create_model("resnet18", in_channels=1, embedding_dim=8)
        assert model.backbone.conv1.in_channels == 1
        assert model(torch.empty(2, 1, 32, 32)).shape == (2, 8)
        bninception = create_model("bninception", in_channels=1)
        assert bninception.backbone.conv1_7x7_s2.conv.in_channels == 1


def test_bad_arguments() -> None:
    with pytest.raises(KeyError, match="unknown model 'resnet7'"):
        create_model("resnet7")
    with pytest.raises(ValueError, match="never downloaded"):
        create_model("resnet18", weights="IMAGENET1K_V1")
    with pytest.raises(ValueError, match="embedding_dim: expected a positive int"):
        create_model("small_cnn", embedding_dim=0)
    with pytest.raises(ValueError, match="in_channels: expected a positive int"):
        create_model("small_cnn", in_channels=0)
    with pytest.raises(ValueError, match="expected one of \\('none',\\)"):
        create_model("mlp", pooling="avg")
    with pytest.raises(ValueError, match="got ''"):
        create_model("small_cnn", pooling="")
    with pytest.raises(TypeError, match="unexpected keyword argument 'depth'"):
        create_model("small_cnn", depth=3)
    model = create_model("small_cnn")
    with pytest.raises(TypeError, match=r"floating-point image tensor, got torch\.uint8"):
        model(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="4-D batch"):
        model(torch.zeros(1, 8, 8))
