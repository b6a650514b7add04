"""MultiHeadEmbeddingModel through the registry: heads on one feature pass, concatenation, split."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dmlkit.models import EmbeddingModel, MultiHeadEmbeddingModel, batchnorm_layers, create_model

HEADS = {"discriminative": 6, "shared": 4}


def _model(**kwargs: object) -> MultiHeadEmbeddingModel:
    model = create_model("small_cnn", embedding_dim=10, heads=HEADS, widths=[4, 8], **kwargs)
    assert isinstance(model, MultiHeadEmbeddingModel)
    return model


def test_each_head_is_a_normalised_linear_map_of_the_shared_features() -> None:
    model = _model().eval()
    x = torch.randn(5, 1, 8, 8)
    feat = model.forward_features(x)
    heads = model.forward_heads(x)
    assert list(heads) == list(HEADS)
    for name, dim in HEADS.items():
        lin = model.heads[name].linear
        torch.testing.assert_close(heads[name], F.normalize(feat @ lin.weight.T + lin.bias, dim=1))
        assert heads[name].shape == (5, dim)
    out = model(x)
    assert out.shape == (5, 10) and model.embedding_dim == 10 and model.head_dims == HEADS
    torch.testing.assert_close(out, torch.cat([heads["discriminative"], heads["shared"]], 1))
    torch.testing.assert_close(out.norm(dim=1), torch.full((5,), 2**0.5))
    parts = model.split(out)
    assert torch.equal(parts["shared"], heads["shared"])


def test_heads_are_in_the_head_group_and_the_state_dict() -> None:
    model = _model()
    assert not hasattr(model, "head")
    groups = {g["name"]: g for g in model.param_groups(0.1, 1.0)}
    assert {id(p) for p in groups["head"]["params"]} == {id(p) for p in model.heads.parameters()}
    keys = model.state_dict().keys()
    assert "heads.shared.linear.weight" in keys and not any(k.startswith("head.") for k in keys)


def test_frozen_batchnorm_and_single_head_unchanged() -> None:
    model = _model(frozen_bn=True).train()
    assert all(not bn.training for bn in batchnorm_layers(model.backbone))
    single = create_model("small_cnn", embedding_dim=10, widths=[4, 8])
    assert type(single) is EmbeddingModel


def test_bad_heads() -> None:
    with pytest.raises(ValueError, match="add up to embedding_dim=12"):
        create_model("small_cnn", embedding_dim=12, heads=HEADS)
    with pytest.raises(ValueError, match=r"heads\.shared: expected a positive dimension"):
        create_model("small_cnn", embedding_dim=6, heads={"discriminative": 6, "shared": 0})
    with pytest.raises(ValueError, match="mapping of head names"):
        create_model("small_cnn", embedding_dim=6, heads=[6])
    with pytest.raises(ValueError, match=r"expected shape \(N, 10\)"):
        _model().split(torch.zeros(3, 8))
