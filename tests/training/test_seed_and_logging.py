"""Seeding and RNG capture/restore; the run logs and their truncation on resume."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from dmlkit.core.progress import Progress
from dmlkit.training.logging import RunLogger
from dmlkit.training.seed import capture_rng_state, restore_rng_state, seed_everything


def _draws() -> tuple[list[float], list[float], float]:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random()


def test_same_seed_same_draws() -> None:
    seed_everything(5)
    first = _draws()
    seed_everything(5)
    assert _draws() == first
    seed_everything(6)
    assert _draws() != first


def test_restore_continues_the_exact_streams() -> None:
    seed_everything(1)
    _draws()
    state = capture_rng_state()
    expected = _draws()
    _draws()
    restore_rng_state(state)
    assert _draws() == expected


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_bad_seed(seed: object) -> None:
    with pytest.raises(ValueError, match="seed: expected an int >= 0"):
        seed_everything(seed)  # type: ignore[arg-type]


def _read(run_dir: Path) -> tuple[list[dict], list[dict]]:
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    rows = list(csv.DictReader((run_dir / "log.csv").open()))
    return [json.loads(line) for line in lines], rows


def test_records_go_to_jsonl_and_csv(tmp_path: Path) -> None:
    logger = RunLogger(tmp_path, ["map@r", "recall@1"])
    logger.log({"kind": "train", "step": 10, "epoch": 0, "loss": 0.5, "lr": 0.1,
                "images_per_s": 100.0})  # fmt: skip
    logger.log({"kind": "eval", "step": 10, "epoch": 0, "split": "val", "map@r": 0.25,
                "recall@1": 0.75, "num_queries": 8.0})  # fmt: skip
    logger.close()
    records, rows = _read(tmp_path)
    assert records[0] == {"kind": "train", "step": 10, "epoch": 0, "loss": 0.5, "lr": 0.1,
                          "images_per_s": 100.0}  # fmt: skip
    assert records[1]["split"] == "val" and records[1]["num_queries"] == 8.0
    assert list(rows[0]) == ["kind", "step", "epoch", "split", "loss", "lr", "images_per_s",
                             "map@r", "recall@1"]  # fmt: skip
    assert rows[0]["loss"] == "0.5" and rows[0]["map@r"] == ""
    assert rows[1]["map@r"] == "0.25" and rows[1]["loss"] == ""


def test_truncate_to_a_position_drops_later_records(tmp_path: Path) -> None:
    logger = RunLogger(tmp_path, ["map@r"])
    logger.log({"kind": "train", "step": 1, "epoch": 0, "loss": 1.0})
    position = logger.position()
    logger.log({"kind": "train", "step": 2, "epoch": 0, "loss": 2.0})
    logger.close()
    resumed = RunLogger(tmp_path, ["map@r"], position=position)
    resumed.log({"kind": "train", "step": 2, "epoch": 0, "loss": 3.0})
    resumed.close()
    records, rows = _read(tmp_path)
    assert [r["loss"] for r in records] == [1.0, 3.0]
    assert [r["loss"] for r in rows] == ["1.0", "3.0"]


def test_a_fresh_logger_starts_empty_files(tmp_path: Path) -> None:
    (tmp_path / "log.jsonl").write_text("old\n")
    RunLogger(tmp_path, []).close()
    assert (tmp_path / "log.jsonl").read_text() == ""
    assert (tmp_path / "log.csv").read_text().startswith("kind,step,epoch")


def test_progress_prints_tenths_when_not_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(total=100, enabled=True, stream=stream)
    for step in range(10, 101, 10):
        progress.update(step, {"loss": 1.0})
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("step 10/100 loss 1 eta")
    silent = io.StringIO()
    Progress(total=10, enabled=False, stream=silent).update(10, {"loss": 1.0})
    assert silent.getvalue() == ""


def test_tensorboard_scalars(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = RunLogger(tmp_path, ["map@r"], tensorboard=True)
    logger.log({"kind": "train", "step": 5, "epoch": 0, "loss": 0.5, "lr": 0.1})
    logger.log({"kind": "eval", "step": 5, "epoch": 0, "split": "val", "map@r": 0.25})
    logger.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {"train/loss", "train/lr", "val/map@r"}
    (point,) = events.Scalars("val/map@r")
    assert point.step == 5 and point.value == pytest.approx(0.25)


def test_tensorboard_missing_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match=r"pip install 'dmlkit\[tensorboard\]'"):
        RunLogger(tmp_path, [], tensorboard=True)
