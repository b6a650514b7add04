"""EmbeddingModel: head formula, parameter groups, frozen BatchNorm, autocast, channels-last."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dmlkit.models import EmbeddingModel, batchnorm_layers, create_model, freeze_batchnorm


def test_head_formula_with_and_without_normalisation() -> None:
    model = create_model("small_cnn", embedding_dim=6, head_bn=True).eval()
    x = torch.randn(5, 1, 8, 8)
    feat = model.forward_features(x)
    bn = model.head.bn
    raw = (
        feat @ model.head.linear.weight.T + model.head.linear.bias - bn.running_mean
    ) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    torch.testing.assert_close(model(x), raw / raw.norm(dim=1, keepdim=True))
    plain = create_model("small_cnn", embedding_dim=6, normalize=False).eval()
    out = plain(x)
    torch.testing.assert_close(out, F.linear(plain.forward_features(x), plain.head.linear.weight,
                                             plain.head.linear.bias))  # fmt: skip
    assert not torch.allclose(out.norm(dim=1), torch.ones(5))


def test_param_groups_split_backbone_and_head() -> None:
    model = create_model("small_cnn", embedding_dim=8, head_bn=True)
    groups = model.param_groups(backbone_lr=0.01, head_lr=0.1, weight_decay=1e-4)
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in groups] == [
        ("backbone", 0.01, 1e-4),
        ("head", 0.1, 1e-4),
    ]
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model.backbone.parameters()}
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.head.parameters()}


def test_a_second_head_joins_the_head_group_without_new_code() -> None:
    class TwoHeads(EmbeddingModel):
        def __init__(self, base: EmbeddingModel) -> None:
            super().__init__(base.backbone, base.pool, base.head)
            self.heads = nn.ModuleDict({"shared": nn.Linear(self.num_features, 4)})

    model = TwoHeads(create_model("small_cnn", embedding_dim=8))
    head_group = model.param_groups(1.0, 2.0)[1]["params"]
    assert {id(p) for p in model.heads.parameters()} <= {id(p) for p in head_group}
    feat = model.forward_features(torch.randn(3, 1, 8, 8))
    assert model.heads["shared"](feat).shape == (3, 4) and model.head(feat).shape == (3, 8)


def _running_stats(module: nn.Module) -> list[torch.Tensor]:
    return [t.clone() for m in batchnorm_layers(module) for t in (m.running_mean, m.running_var)]


def _one_step(model: EmbeddingModel) -> None:
    optimizer = torch.optim.SGD([g for g in model.param_groups(0.1, 0.1)], lr=0.1)
    model.train()
    loss = model(torch.randn(8, 1, 8, 8) * 3 + 1).sum(0)[0]
    loss.backward()
    optimizer.step()


@pytest.mark.parametrize("affine", [False, True])
def test_frozen_batchnorm_survives_train_and_a_step(affine: bool) -> None:
    model = create_model("small_cnn", embedding_dim=4, frozen_bn=True, freeze_bn_affine=affine)
    layers = batchnorm_layers(model.backbone)
    stats = _running_stats(model.backbone)
    gammas = [m.weight.detach().clone() for m in layers]
    conv = model.backbone[0].conv.weight.detach().clone()
    _one_step(model)
    assert all(not m.training for m in layers) and model.training and model.head.training
    for before, after in zip(stats, _running_stats(model.backbone), strict=True):
        assert torch.equal(before, after)
    assert not torch.equal(conv, model.backbone[0].conv.weight)
    changed = [not torch.equal(g, m.weight) for g, m in zip(gammas, layers, strict=True)]
    assert changed == [not affine] * len(layers)
    trained = {id(p) for g in model.param_groups(1.0, 1.0) for p in g["params"]}
    assert all((id(m.weight) in trained) == (not affine) for m in layers)


def test_unfrozen_batchnorm_does_update_and_frozen_train_equals_eval() -> None:
    free = create_model("small_cnn", embedding_dim=4)
    stats = _running_stats(free.backbone)
    _one_step(free)
    assert not any(
        torch.equal(a, b) for a, b in zip(stats, _running_stats(free.backbone), strict=True)
    )
    frozen = create_model("small_cnn", embedding_dim=4, frozen_bn=True)
    x = torch.randn(6, 1, 8, 8)
    torch.testing.assert_close(frozen.train()(x), frozen.eval()(x))


def test_freeze_batchnorm_on_any_module_until_its_next_train() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.BatchNorm1d(8))
    assert freeze_batchnorm(net, affine=True) == 2
    assert not net[1].training and not net[3].training and net[0].training
    assert not net[1].weight.requires_grad and net[0].weight.requires_grad
    net.train()
    assert net[1].training  # a plain module must be re-frozen after train() (documented)


def test_head_batchnorm_is_not_frozen() -> None:
    model = create_model("small_cnn", embedding_dim=4, head_bn=True, frozen_bn=True).train()
    assert model.head.bn.training


def test_bfloat16_autocast_gives_float32_unit_embeddings() -> None:
    model = create_model("small_cnn", embedding_dim=16, head_bn=True).eval()
    x = torch.randn(4, 1, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        emb = model(x)
    assert emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(4))
    torch.testing.assert_close(emb, model(x), atol=0.05, rtol=0)


def test_channels_last_gives_the_same_embeddings() -> None:
    model = create_model("bninception", embedding_dim=8).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-4)
