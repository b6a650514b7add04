"""``loss.miner`` in the config: a registered pair miner given to pair losses that take
``miner=``, clear errors otherwise, a short training run, and miners in ``dmlkit list``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from tiny_demo import TINY_DEMO

from dmlkit.cli import main
from dmlkit.config import ConfigError, load_config
from dmlkit.losses import BatchEasyHardMiner, HDCMiner, PairLoss, PairMarginMiner
from dmlkit.training import Trainer
from dmlkit.training.build import build_loss


def _loss(*overrides: str) -> PairLoss:
    config = load_config(None, list(overrides))
    loss = build_loss(config.loss, 10, config.model.embedding_dim)
    assert isinstance(loss, PairLoss)
    return loss


def test_miner_from_config_reaches_the_pair_loss() -> None:
    loss = _loss(
        "loss.name=contrastive",
        "loss.options={}",
        "loss.miner={name: pair_margin, options: {pos_margin: 0.9, neg_margin: 0.3}}",
    )
    assert isinstance(loss.miner, PairMarginMiner)
    assert (loss.miner.pos_below, loss.miner.neg_above) == (0.9, 0.3)


def test_miner_set_by_dotted_overrides() -> None:
    loss = _loss(
        "loss.name=lifted",
        "loss.options={}",
        "loss.miner.name=uniform_histogram",
        "loss.miner.options.num_bins=7",
    )
    assert loss.miner.num_bins == 7  # type: ignore[union-attr]
    assert load_config(None, ["loss.miner={name: hdc}", "loss.miner=null"]).loss.miner is None


def test_miner_without_options_and_with_embedding_dim_context() -> None:
    assert isinstance(
        _loss("loss.name=binomial", "loss.options={}", "loss.miner={name: batch_easy_hard}").miner,
        BatchEasyHardMiner,
    )
    loss = _loss("loss.name=binomial", "loss.options={}", "loss.miner={name: distance_weighted}")
    assert loss.miner.dim == load_config(None).model.embedding_dim  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["loss.name=contrastive", "loss.options={}", "loss.miner={name: nope}"],
            r"loss\.miner\.name: expected a registered miner \(all, angular, .*\), got 'nope'",
        ),
        (
            ["loss.name=ms", "loss.options={}", "loss.miner={name: hdc}"],
            r"loss\.miner: loss 'ms' takes no miner; expected loss\.miner: null, or a loss that "
            r"takes one: .*contrastive",
        ),
        (
            ["loss.name=contrastive", "loss.options={}", "loss.miner={name: hdc, options: {f: 1}}"],
            r"loss\.miner\.options: unknown option\(s\) \['f'\] for miner 'hdc'; "
            r"accepted: filter_percentage",
        ),
        (
            ["loss.name=contrastive", "loss.options={miner: x}", "loss.miner={name: hdc}"],
            r"loss\.options: \['miner'\] are set by other config fields",
        ),
    ],
)
def test_bad_miner_config_is_a_clear_error(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _loss(*overrides)


def test_miner_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match=r"loss\.miner: expected MinerConfig \| null"):
        load_config(None, ["loss.miner=3"])


def test_training_with_a_configured_miner(tmp_path: Path) -> None:
    config = load_config(
        None,
        [
            *TINY_DEMO,
            "train.steps=3",
            "train.eval_every=3",
            "train.checkpoint_every=3",
            "train.progress=false",
            "eval.metrics=[recall]",
            "eval.select_metric=recall@1",
            "eval.ks=[1]",
            "output.report=false",
            f"output.dir={tmp_path}",
            "loss.name=contrastive",
            "loss.options={}",
            "loss.miner={name: hdc, options: {filter_percentage: 0.5}}",
        ],
    )
    trainer = Trainer(config, tmp_path / "run")
    loss_fn = trainer.loss_fn
    assert isinstance(loss_fn, PairLoss) and isinstance(loss_fn.miner, HDCMiner)
    metrics = trainer.fit()
    assert metrics["steps"] == 3 and metrics["nonfinite_skipped"] == 0
    assert math.isfinite(metrics["final"]["recall@1"])
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert saved.loss.miner is not None and saved.loss.miner.name == "hdc"


def test_list_shows_miners_by_family(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    miners = out[out.index("miners") :]
    assert "  hardness:\n" in miners and "\n    hdc " in miners and "Yuan et al. 2017" in miners
    assert "\n    uniform_histogram " in miners and "\n    angular " in miners
