"""The shipped CCP configs build their loss and method, with the paper's per-dataset values."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dmlkit.config import load_config
from dmlkit.methods import CCPLoss, CCPMethod
from dmlkit.training.build import build_loss, build_method

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CCP_CONFIGS = sorted(CONFIGS.glob("*/ccp_*.yaml"))


@pytest.mark.parametrize("path", CCP_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_ccp_config_builds_its_loss_and_method(path: Path) -> None:
    config = load_config(path)
    dim = config.model.embedding_dim
    method = build_method(config.method, 7, dim, config.seed)
    assert isinstance(method, CCPMethod)
    loss = method.wrap_loss(build_loss(config.loss, 7, dim))
    assert isinstance(loss, CCPLoss) and loss.lipschitz
    assert (loss.pair_weight, loss.proxy_weight) == (0.1, 1.0)
    large = path.parent.name in ("sop", "inshop")
    assert loss.proxies.per_class == (4 if large else 8)
    assert method.options.pool == (7 if large else 12)
    assert method.options.lam == 2e-4 and method.options.patience == 3
    if path.parent.name != "glyphs":
        assert config.model.frozen_bn and config.model.freeze_bn_affine  # as the CCP code
        assert config.optimizer.name == "adam" and config.optimizer.lr == 1e-5
        assert config.schedule.name == "constant" and config.train.patience == 60
        assert config.model.name == "bninception" and dim == 128
        assert (config.data.batch_size, config.data.m) == (32, 4)
        assert config.train.eval_every == (250 if large else 25)


def test_ccp_config_model_trains_no_batchnorm_parameter() -> None:
    """The CCP configs freeze BatchNorm as the official Keras code (statistics and affine
    parameters): no BatchNorm weight or bias in the optimizer, none changes in a step, while the
    MLRC base config (statistics only) still trains them. A small CNN with BatchNorm stands in for
    BN-Inception (the same flags reach any backbone)."""
    from dmlkit.models.batchnorm import batchnorm_layers
    from dmlkit.training.build import build_model
    from dmlkit.training.optim import build_optimizer

    for name, frozen_affine in (("ccp_c2.yaml", True), ("mlrc_contrastive.yaml", False)):
        small = ["model.name=small_cnn", "model.pretrained=null", "model.embedding_dim=8"]
        config = load_config(CONFIGS / "cub" / name, [*small, "model.options={widths: [4, 8]}"])
        model = build_model(config.model)
        loss = build_loss(config.loss, 4, config.model.embedding_dim)
        optimizer = build_optimizer(config.optimizer, model, loss)
        layers = batchnorm_layers(model.backbone)
        bn_params = {id(p) for layer in layers for p in (layer.weight, layer.bias)}
        optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
        assert layers and bool(bn_params & optimized) != frozen_affine
        model.train()
        assert not any(layer.training for layer in layers)  # statistics frozen in both
        before = [p.detach().clone() for layer in layers for p in (layer.weight, layer.bias)]
        x = torch.randn(4, 1, 16, 16)
        emb = model(x)
        value = loss(emb, torch.tensor([0, 0, 1, 1]))
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        after = [p.detach() for layer in layers for p in (layer.weight, layer.bias)]
        unchanged = all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
        assert unchanged == frozen_affine


# SUPP p.5: C2 (m+, m-), MS (alpha, beta, lambda), triplet margin per dataset; C1 margin 0.5.
PAPER = {
    "cub": {"c2": (0.0, 0.3841), "ms": (2.0, 40.0, 0.5), "triplet": 0.0961},
    "cars": {"c2": (0.2652, 0.5409), "ms": (14.35, 75.83, 0.66), "triplet": 0.1190},
    "sop": {"c2": (0.2858, 0.5130), "ms": (2.0, 40.0, 0.5), "triplet": 0.0451},
    "inshop": {"c2": (0.2858, 0.5130), "ms": (8.49, 57.38, 0.41), "triplet": 0.0451},
}


@pytest.mark.parametrize("dataset", sorted(PAPER))
def test_per_dataset_loss_parameters_follow_the_supplementary_table(dataset: str) -> None:
    values = PAPER[dataset]
    c1 = load_config(CONFIGS / dataset / "ccp_c1.yaml").loss.options
    c2 = load_config(CONFIGS / dataset / "ccp_c2.yaml").loss.options
    ms = load_config(CONFIGS / dataset / "ccp_ms.yaml").loss.options
    tri = load_config(CONFIGS / dataset / "ccp_triplet.yaml").loss.options
    assert (c1["similarity"], c1["neg_margin"], c1["normalize"]) == ("dot", 0.5, "batch")
    assert (c2["similarity"], -c2["pos_margin"], -c2["neg_margin"]) == (
        "neg_euclidean",
        *values["c2"],
    )
    assert (ms["alpha"], ms["beta"], ms["threshold"], ms["epsilon"]) == (*values["ms"], None)
    assert (tri["similarity"], tri["margin"]) == ("neg_euclidean", values["triplet"])
