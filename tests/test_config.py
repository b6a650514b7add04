"""Config schema: validation errors, overrides, base files, round trip, the shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dmlkit.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    config_diff,
    config_from_dict,
    config_to_dict,
    demo_config_path,
    load_config,
    parse_override,
    read_config_file,
    save_config,
)

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "configs").rglob("*.yaml"))


def test_defaults_are_a_valid_config() -> None:
    config = config_from_dict({})
    assert config == ExperimentConfig()
    assert config.loss.name == "ms" and config.optimizer.lr == 1e-3


def test_unknown_key_lists_the_valid_keys_of_its_section() -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict({"optimizer": {"lrr": 0.1}})
    message = str(err.value)
    assert message.startswith("optimizer: unknown key(s) 'lrr'; valid keys: name, lr, backbone_lr")
    assert "clip_grad_norm" in message


def test_unknown_section_lists_the_sections() -> None:
    with pytest.raises(ConfigError, match=r"config: unknown key\(s\) 'trian'; valid keys: data, "):
        config_from_dict({"trian": {}})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"train": {"steps": 1.5}}, r"train.steps: expected int, got 1.5 \(float\)"),
        ({"train": {"steps": True}}, r"train.steps: expected int, got True"),
        ({"train": {"progress": "no"}}, r"train.progress: expected bool, got 'no'"),
        ({"optimizer": {"lr": "fast"}}, r"optimizer.lr: expected float, got 'fast'"),
        ({"eval": {"ks": 4}}, r"eval.ks: expected a list"),
        ({"eval": {"ks": [1, "x"]}}, r"eval.ks\[1\]: expected int"),
        ({"loss": {"options": [1]}}, r"loss.options: expected a mapping"),
        ({"data": "digits"}, r"data: expected a mapping"),
        ({"data": {"root": 3}}, r"data.root: expected str \| null, got 3"),
    ],
)
def test_wrong_types_name_the_field(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_numbers_convert_where_the_schema_says_float() -> None:
    config = config_from_dict(
        {"optimizer": {"lr": "3e-5", "backbone_lr": 1, "loss_lr": None}, "data": {"val_classes": 5}}
    )
    assert config.optimizer.lr == 3e-5 and isinstance(config.optimizer.lr, float)
    assert config.optimizer.backbone_lr == 1.0 and isinstance(config.optimizer.backbone_lr, float)
    assert config.optimizer.loss_lr is None
    # float | int keeps an int count and a float fraction apart
    assert config.data.val_classes == 5 and isinstance(config.data.val_classes, int)
    assert config_from_dict({"data": {"val_classes": 0.25}}).data.val_classes == 0.25


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"optimizer": {"name": "lion"}}, "optimizer.name: expected one of adam, adamw, sgd"),
        ({"train": {"amp": "fp8"}}, "train.amp: expected one of none, bf16, fp16"),
        ({"schedule": {"name": "poly"}}, "schedule.name: expected one of constant, step"),
        ({"data": {"batch_size": 30, "m": 4}}, "data.batch_size: expected a multiple of data.m=4"),
        ({"train": {"steps": 0}}, "train.steps: expected a positive value, got 0"),
        ({"train": {"eval_every": -1}}, "train.eval_every: expected a value >= 0"),
        ({"eval": {"ks": []}}, "eval.ks: expected positive integers"),
    ],
)
def test_value_checks(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_parse_override_reads_yaml_values() -> None:
    assert parse_override("optimizer.lr=0.5") == (["optimizer", "lr"], 0.5)
    assert parse_override("eval.ks=[1, 10]") == (["eval", "ks"], [1, 10])
    assert parse_override("model.pretrained=null") == (["model", "pretrained"], None)
    assert parse_override("output.name=a=b") == (["output", "name"], "a=b")
    assert parse_override("output.name=") == (["output", "name"], "")
    for bad in ("optimizer.lr", "=3", "a..b=1"):
        with pytest.raises(ConfigError, match=r"expected KEY\.PATH=VALUE"):
            parse_override(bad)


def test_apply_overrides_sets_nested_values_without_touching_the_input() -> None:
    data = {"loss": {"name": "ms", "options": {"alpha": 2.0}}, "seed": 1}
    out = apply_overrides(data, ["loss.options.beta=40", "seed=7", "train.steps=5"])
    assert out == {
        "loss": {"name": "ms", "options": {"alpha": 2.0, "beta": 40}},
        "seed": 7,
        "train": {"steps": 5},
    }
    assert data == {"loss": {"name": "ms", "options": {"alpha": 2.0}}, "seed": 1}
    with pytest.raises(ConfigError, match="seed is a value, not a section"):
        apply_overrides(data, ["seed.x=1"])


def test_override_of_an_unknown_key_is_reported_by_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  steps: 10\n")
    assert load_config(path, ["train.steps=20"]).train.steps == 20
    with pytest.raises(ConfigError, match=r"train: unknown key\(s\) 'stepz'"):
        load_config(path, ["train.stepz=20"])


def test_base_file_is_replaced_field_by_field(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "base.yaml").write_text(
        "loss:\n  name: ms\n  options: {alpha: 2.0, beta: 50.0}\n"
        "optimizer:\n  lr: 0.01\n  weight_decay: 0.1\nseed: 3\n"
    )
    (tmp_path / "sub" / "child.yaml").write_text(
        "base: ../base.yaml\nloss:\n  name: triplet\n  options: {margin: 0.2}\n"
        "optimizer:\n  lr: 0.001\n"
    )
    config = load_config(tmp_path / "sub" / "child.yaml")
    assert config.loss.name == "triplet"
    assert config.loss.options == {"margin": 0.2}  # replaced as a whole, not merged
    assert config.optimizer.lr == 0.001 and config.optimizer.weight_decay == 0.1
    assert config.seed == 3


def test_base_loops_and_missing_files_are_reported(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="config base chain loops"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping of sections"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("train: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_saved_config_loads_back_equal(tmp_path: Path) -> None:
    config = config_from_dict(
        {"loss": {"name": "margin", "options": {"beta_init": 1.2}}, "optimizer": {"lr": 3e-5}}
    )
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == config_to_dict(config)


def test_config_diff_lists_changed_fields() -> None:
    a = config_from_dict({})
    b = config_from_dict({"optimizer": {"lr": 0.5}, "seed": 2, "loss": {"options": {"x": 1}}})
    assert config_diff(a, a) == []
    assert config_diff(a, b) == [
        "loss.options: {} != {'x': 1}",
        "optimizer.lr: 0.001 != 0.5",
        "seed: 0 != 2",
    ]


def test_packaged_demo_equals_the_repository_copy() -> None:
    assert demo_config_path().is_file()
    assert demo_config_path().read_text() == (REPO / "configs" / "demo.yaml").read_text()
    demo = load_config()
    assert demo.data.name == "digits" and demo.loss.name == "ms"
    assert demo.data.options["holdout"] == "images"


def test_there_are_shipped_configs() -> None:
    names = {str(p.relative_to(REPO / "configs")) for p in SHIPPED}
    assert {"demo.yaml", "glyphs/ms.yaml", "cub/ms_official.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_shipped_config_is_valid_and_names_registered_components(path: Path) -> None:
    from dmlkit.data import DATASETS, TRANSFORMS
    from dmlkit.losses import LOSSES
    from dmlkit.models import MODELS
    from dmlkit.protocol.settings import load_protocol

    # a protocol file is an experiment config plus its protocol section, checked by load_protocol
    config = load_protocol(path)[1] if "protocol" in read_config_file(path) else load_config(path)
    assert config.data.name in DATASETS
    assert config.data.transform in TRANSFORMS
    assert config.model.name in MODELS
    assert config.loss.name in LOSSES


@pytest.mark.parametrize(
    "overrides",
    [
        ["data.val_folds=1"],
        ["data.val_folds=4", "data.val_fold=4"],
        ["data.val_folds=4", "data.val_classes=0.25"],
        ["data.val_fold=2"],
    ],
)
def test_val_folds_are_checked(overrides: list[str]) -> None:
    with pytest.raises(ConfigError, match=r"data.val_folds: expected k >= 2"):
        load_config(None, overrides)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.image_size=0", "data.image_size: expected a positive value"),
        ("optimizer.clip_grad_norm=-1.0", "optimizer.clip_grad_norm: expected a positive value"),
        ("optimizer.loss_lr=0.0", "optimizer.loss_lr: expected a positive value"),
        ("train.num_threads=0", "train.num_threads: expected a positive value"),
        ("data.worker_threads=0", "data.worker_threads: expected a positive value, got 0"),
        (
            "data.worker_threads=2",
            r"data.worker_threads: sets the threads of loader workers, expected "
            r"data.num_workers > 0 with it, got worker_threads=2, num_workers=0",
        ),
        ("train.compile=maybe", "train.compile: expected bool, got 'maybe'"),
        ("train.channels_last=1", r"train.channels_last: expected bool \| null, got 1"),
        ("schedule.gamma=-0.1", "schedule.gamma: expected a value >= 0"),
        ("optimizer.betas=[0.9]", r"optimizer.betas: expected two values in \[0, 1\)"),
        ("optimizer.betas=[0.9, 1.0]", r"optimizer.betas: expected two values in \[0, 1\)"),
        ("schedule.min_factor=1.5", r"schedule.min_factor: expected a value in \[0, 1\]"),
        ("schedule.milestones=[20, 10]", "schedule.milestones: expected increasing positive"),
        ("schedule.milestones=[0]", "schedule.milestones: expected increasing positive"),
    ],
)
def test_range_checks_name_the_field_and_the_expectation(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])
