"""The Reality-Check protocol on tiny digits runs: class-disjoint folds covering the training
classes, selection on validation only, separated and concatenated results with t intervals."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from scipy import stats

from dmlkit.cli import main
from dmlkit.config import ConfigError
from dmlkit.evaluation import evaluate
from dmlkit.protocol.runner import run_protocol
from dmlkit.protocol.search import with_overrides
from dmlkit.protocol.settings import load_protocol
from dmlkit.protocol.stats import mean_ci, student_t_quantile
from dmlkit.training import Callback, Trainer

TINY: dict[str, Any] = {
    "data": {
        "name": "digits",
        "options": {"holdout": "classes", "test_fraction": 0.5},
        "image_size": 8,
        "batch_size": 12,
        "m": 4,
        "batches_per_epoch": 4,
    },
    "model": {"name": "small_cnn", "embedding_dim": 16, "options": {"widths": [8, 16]}},
    "loss": {"name": "ms"},
    "train": {
        "steps": 4,
        "eval_every": 2,
        "checkpoint_every": 4,
        "log_every": 2,
        "progress": False,
        "num_threads": 1,
    },
    "eval": {"metrics": ["precision@1", "r_precision", "map@r"], "ks": [1], "before": False},
    "output": {"name": "proto", "timestamp": False, "report": False},
    "protocol": {"folds": 4, "seeds": [0, 1]},
}


def write_config(tmp_path: Path, **protocol: Any) -> Path:
    data = json.loads(json.dumps(TINY))
    data["output"]["dir"] = str(tmp_path / "runs")
    data["protocol"].update(protocol)
    path = tmp_path / "protocol.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class SplitRecorder(Callback):
    """Records the class names of the splits and the evaluated splits of every trainer."""

    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []

    def on_train_start(self, trainer: Trainer) -> None:
        splits = trainer.splits
        assert splits.val is not None
        self.runs.append(
            {
                "seed": trainer.config.seed,
                "fold": trainer.config.data.val_fold,
                "train": set(splits.train.class_names),
                "val": set(splits.val.class_names),
                "test": set(splits.test.class_names),
                "evals": [],
            }
        )

    def on_eval(self, trainer: Trainer, split: str, metrics: dict[str, float]) -> None:
        self.runs[-1]["evals"].append(split)


@pytest.fixture(scope="module")
def protocol_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dict[str, Any], Path, SplitRecorder]:
    tmp_path = tmp_path_factory.mktemp("protocol")
    protocol, config = load_protocol(write_config(tmp_path))
    recorder = SplitRecorder()
    out_dir = tmp_path / "out"
    return run_protocol(protocol, config, out_dir, [recorder]), out_dir, recorder


def test_folds_are_class_disjoint_and_cover_the_training_classes(
    protocol_run: tuple[dict[str, Any], Path, SplitRecorder],
) -> None:
    _, _, recorder = protocol_run
    assert [(r["seed"], r["fold"]) for r in recorder.runs] == [
        (s, f) for s in (0, 1) for f in range(4)
    ]
    training = recorder.runs[0]["train"] | recorder.runs[0]["val"]
    assert len(training) == 5
    for seed in (0, 1):
        runs = [r for r in recorder.runs if r["seed"] == seed]
        vals = [r["val"] for r in runs]
        assert set().union(*vals) == training
        assert sum(len(v) for v in vals) == len(training)  # pairwise disjoint
        for r in runs:
            assert r["train"] == training - r["val"]
            assert len(r["val"]) in (1, 2)


def test_no_test_class_is_used_for_selection(
    protocol_run: tuple[dict[str, Any], Path, SplitRecorder],
) -> None:
    results, out_dir, recorder = protocol_run
    for r in recorder.runs:
        assert r["test"].isdisjoint(r["train"] | r["val"])
        assert len(r["test"]) == 5
        # every periodic evaluation scores val first; test only after it (never selecting)
        assert r["evals"][0] == "val" and r["evals"].count("val") == 2
    for seed in (0, 1):
        for fold in range(4):
            metrics = json.loads(
                (out_dir / f"seed{seed}" / f"fold{fold}" / "metrics.json").read_text()
            )
            assert metrics["selected_on"] == "val"
            assert metrics["best_selection_value"] == metrics["best_val"]["map@r"]
    assert results["config"]["train"]["select_on_test"] is False


def test_separated_and_concatenated_results(
    protocol_run: tuple[dict[str, Any], Path, SplitRecorder],
) -> None:
    results, out_dir, _ = protocol_run
    assert results["dims"] == {"separated": 16, "concatenated": 64}
    for run in results["runs"]:
        seed = run["seed"]
        assert run["separated"]["map@r"] == pytest.approx(
            np.mean([f["test"]["map@r"] for f in run["folds"]])
        )
        saved = [
            np.load(out_dir / f"seed{seed}" / f"fold{f}" / "embeddings" / "test.npz")
            for f in range(4)
        ]
        emb = torch.cat([F.normalize(torch.from_numpy(s["emb"]), dim=1) for s in saved], dim=1)
        expected = evaluate(
            F.normalize(emb, dim=1), torch.from_numpy(saved[0]["labels"]), metrics=["map@r"]
        )
        assert run["concatenated"]["map@r"] == pytest.approx(expected.to_dict()["map@r"])
    for mode in ("separated", "concatenated"):
        for metric in ("map@r", "r_precision", "precision@1"):
            values = [run[mode][metric] for run in results["runs"]]
            summary = results["summary"][mode][metric]
            assert summary["mean"] == pytest.approx(np.mean(values))
            half = stats.t.ppf(0.975, 1) * np.std(values, ddof=1) / math.sqrt(2)
            assert summary["half_width"] == pytest.approx(half, abs=1e-12)
            assert 0.0 <= summary["mean"] <= 1.0
    table = (out_dir / "results.md").read_text()
    assert "| separated | 16 |" in table and "| concatenated | 64 |" in table
    assert json.loads((out_dir / "results.json").read_text())["summary"] == results["summary"]
    resolved = yaml.safe_load((out_dir / "protocol.yaml").read_text())
    assert resolved["protocol"]["folds"] == 4 and resolved["data"]["name"] == "digits"


@pytest.mark.parametrize("n", [2, 3, 5, 10, 31])
@pytest.mark.parametrize("level", [0.8, 0.95, 0.99])
def test_interval_matches_scipy(n: int, level: float) -> None:
    values = np.random.default_rng(n).normal(0.5, 0.1, size=n).tolist()
    est = mean_ci(values, level)
    lo, hi = stats.t.interval(level, n - 1, loc=np.mean(values), scale=stats.sem(values))
    assert est.mean == pytest.approx(np.mean(values), abs=1e-15)
    assert est.half_width == pytest.approx((hi - lo) / 2, rel=1e-10)
    assert student_t_quantile((1 + level) / 2, n - 1) == pytest.approx(
        stats.t.ppf((1 + level) / 2, n - 1), rel=1e-11
    )


def test_interval_edge_cases() -> None:
    assert mean_ci([0.7]).half_width is None and mean_ci([0.7]).text() == "0.7000"
    assert mean_ci([0.5, 0.5, 0.5]).half_width == 0.0
    for bad, message in (([], "at least one"), ([0.1, math.nan], "finite")):
        with pytest.raises(ValueError, match=message):
            mean_ci(bad)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        mean_ci([0.1, 0.2], level=1.0)


@pytest.mark.parametrize(
    ("protocol", "message"),
    [
        ({"folds": 1}, "protocol.folds: expected an integer >= 2"),
        ({"seeds": [1, 1]}, "distinct seeds"),
        ({"confidence": 95}, r"protocol.confidence: expected a value in \(0, 1\)"),
        ({"search": {"trials": 2}}, "at least one parameter range"),
        ({"shuffle": True}, "unknown key"),
    ],
)
def test_bad_protocol_sections(tmp_path: Path, protocol: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_protocol(write_config(tmp_path, **protocol))


def test_selection_must_be_validation_map_r(tmp_path: Path) -> None:
    protocol, config = load_protocol(write_config(tmp_path), ["train.select_on_test=true"])
    with pytest.raises(ConfigError, match="selection is on validation map@r"):
        run_protocol(protocol, config, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_search_without_optuna_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)
    path = write_config(
        tmp_path, search={"trials": 2, "space": {"optimizer.lr": {"low": 1e-4, "high": 1e-2}}}
    )
    protocol, config = load_protocol(path)
    with pytest.raises(ConfigError, match=r"pip install 'dmlkit\[search\]'"):
        run_protocol(protocol, config, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_search_on_validation_then_protocol_via_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("optuna")
    space = {
        "optimizer.lr": {"low": 1e-4, "high": 1e-2, "log": True},
        "loss.options.alpha": {"choices": [1.0, 2.0]},
        "train.steps": {"low": 2, "high": 4},
    }
    path = write_config(tmp_path, folds=3, seeds=[0], search={"trials": 2, "space": space})
    assert main(["protocol", str(path), "--set", "train.eval_every=1"]) == 0
    out_dir = tmp_path / "runs" / "proto"
    results = json.loads((out_dir / "results.json").read_text())
    trials = results["search"]["trials"]
    assert len(trials) == 2 and all(len(t["overrides"]) == 3 for t in trials)
    best = max(trials, key=lambda t: t["value"])
    assert results["search"]["overrides"] == best["overrides"]
    chosen = dict(o.split("=", 1) for o in best["overrides"])
    assert results["config"]["optimizer"]["lr"] == pytest.approx(float(chosen["optimizer.lr"]))
    assert results["config"]["loss"]["options"]["alpha"] == float(chosen["loss.options.alpha"])
    assert results["config"]["train"]["steps"] == int(chosen["train.steps"])
    assert 2 <= results["config"]["train"]["steps"] <= 4
    for t in range(2):
        for f in range(3):
            trial = json.loads(
                (out_dir / "search" / f"trial{t}" / f"fold{f}" / "metrics.json").read_text()
            )
            assert trial["selected_on"] == "val"
    assert results["summary"]["separated"]["map@r"]["half_width"] is None
    assert "Search: 2 trials" in capsys.readouterr().out
    # seed 0 is the search's seed: the best trial's fold models are its runs, not trained again
    assert not (out_dir / "seed0").exists()
    number = results["search"]["number"]
    for f, fold in enumerate(results["runs"][0]["folds"]):
        metrics = json.loads(
            (out_dir / "search" / f"trial{number}" / f"fold{f}" / "metrics.json").read_text()
        )
        assert fold["test"] == metrics["best"] and fold["val"] == metrics["best_val"]


@pytest.mark.parametrize(
    "path", sorted(Path(__file__).parents[2].glob("configs/*/*protocol*.yaml")), ids=str
)
def test_shipped_protocol_configs_load(path: Path) -> None:
    protocol, config = load_protocol(path)
    assert protocol.folds == 4 and config.data.val_classes == 0
    assert config.eval.select_metric == "map@r" and not config.train.select_on_test


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:glyphs. skipped")  # some installed faces fail to render
def test_two_head_views_and_query_gallery_set(tmp_path: Path) -> None:
    """A two-head sharing model on the glyph style shift: every view (evaluated head, shared
    head, their concatenation) and the held-out faces' queries against the gallery are reported
    separated and concatenated; the concatenated shared view is the fold models' shared heads
    concatenated, scored queries against gallery."""
    from dmlkit.data.fonts import distinct_faces, font_files
    from dmlkit.data.glyphs import FONT_DIR, held_out_faces

    names = np.array([r.face.name for r in distinct_faces(font_files(FONT_DIR), 16)[0]])
    try:
        held_out_faces(names, "serif")
    except ValueError:
        pytest.skip(f"the faces under {FONT_DIR} are not split by the 'serif' group")
    data = json.loads(json.dumps(TINY))
    data["data"] = {
        "name": "glyphs",
        "options": {"num_chars": 20, "image_size": 16, "holdout_faces": "serif"},
        "batch_size": 16,
        "m": 4,
        "batches_per_epoch": 4,
    }
    data["model"] = {
        "name": "small_cnn",
        "embedding_dim": 12,
        "options": {"widths": [4, 8], "heads": {"discriminative": 8, "shared": 4}},
    }
    data["loss"] = {"name": "margin"}
    data["method"] = {"name": "sharing", "options": {"shared_dim": 4, "hidden_dim": 8}}
    data["protocol"] = {"folds": 2, "seeds": [0, 1], "metrics": ["map@r"]}
    data["output"]["dir"] = str(tmp_path / "runs")
    path = tmp_path / "protocol.yaml"
    path.write_text(yaml.safe_dump(data))
    protocol, config = load_protocol(path)
    results = run_protocol(protocol, config, tmp_path / "out")
    keys = [
        "map@r",
        "query_gallery/map@r",
        "shared/map@r",
        "shared/query_gallery/map@r",
        "concat/map@r",
        "concat/query_gallery/map@r",
    ]
    for mode in ("separated", "concatenated"):
        assert list(results["summary"][mode]) == keys
    assert results["view_dims"] == {"shared": 4, "concat": 12}
    run = results["runs"][0]
    saved = [
        np.load(tmp_path / "out" / "seed0" / f"fold{f}" / "embeddings" / "test.npz")
        for f in range(2)
    ]
    query = torch.from_numpy(saved[0]["query"])
    labels = torch.from_numpy(saved[0]["labels"])
    shared = torch.cat([F.normalize(torch.from_numpy(s["emb"])[:, 8:], dim=1) for s in saved], 1)
    shared = F.normalize(shared, dim=1)
    expected = evaluate(shared[query], labels[query], shared[~query], labels[~query], ["map@r"])
    got = run["concatenated"]["shared/query_gallery/map@r"]
    assert got == pytest.approx(expected.to_dict()["map@r"])
    assert run["separated"]["shared/map@r"] == pytest.approx(
        np.mean([f["test"]["shared/map@r"] for f in run["folds"]])
    )
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| concatenated | shared/query_gallery | 8 |" in table
    assert "| separated | query_gallery | 8 |" in table


def test_search_can_start_from_the_config_values(tmp_path: Path) -> None:
    """include_config: trial 0 is the config's own values of the space; the others are drawn.
    Paths without a value, or values outside their range, are refused."""
    pytest.importorskip("optuna")
    from dmlkit.protocol.search import config_values, run_search
    from dmlkit.protocol.settings import SearchConfig

    _, config = load_protocol(write_config(tmp_path))
    config = with_overrides(config, ["optimizer.lr=0.002", "loss.options={alpha: 2.0}"])
    space = {
        "optimizer.lr": {"low": 1e-4, "high": 1e-2, "log": True},
        "loss.options.alpha": {"choices": [1.0, 2.0, 4.0]},
    }
    seen: list[tuple[float, float]] = []

    def objective(trial_config: Any, trial_dir: Path) -> float:
        seen.append((trial_config.optimizer.lr, trial_config.loss.options["alpha"]))
        return -abs(trial_config.optimizer.lr - 0.005)

    search = SearchConfig(trials=3, seed=0, space=space, include_config=True)
    result = run_search(search, config, tmp_path / "search", objective)
    assert seen[0] == (0.002, 2.0) and len(seen) == 3
    assert result["trials"][0]["overrides"] == ["optimizer.lr=0.002", "loss.options.alpha=2.0"]
    assert len(set(seen)) == 3
    with pytest.raises(ConfigError, match="outside its space"):
        config_values(config, {"optimizer.lr": {"low": 0.01, "high": 0.1}})
    with pytest.raises(ConfigError, match=r"sets no value at 'loss\.options\.beta'"):
        config_values(config, {"loss.options.beta": {"low": 1.0, "high": 2.0}})
