"""metrics.json through RunMetrics: round trip with non-finite values, older files, bad files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dmlkit.training.run_metrics import RunMetrics


def test_round_trip_keeps_non_finite_values_as_json_markers(tmp_path: Path) -> None:
    metrics = RunMetrics(
        before={"map@r": 0.1},
        final={"map@r": math.nan, "recall@1": math.inf},
        best={"map@r": 0.5},
        best_step=4,
        selected_on="val",
        ks=[1, 2],
        steps=4,
        train_time_s=1.5,
    )
    path = metrics.write(tmp_path / "metrics.json")
    raw = json.loads(path.read_text())  # strict JSON: no NaN literals
    assert raw["final"] == {"map@r": "nan", "recall@1": "inf"} and raw["best_step"] == 4
    back = RunMetrics.read(path)
    assert back.final is not None and math.isnan(back.final["map@r"])
    assert back.final["recall@1"] == math.inf
    assert back.best == {"map@r": 0.5} and back.ks == [1, 2] and back.train_time_s == 1.5


def test_an_older_file_without_newer_fields_reads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"final": {"map@r": 0.3}, "best": {"map@r": 0.4}, "steps": 9}))
    metrics = RunMetrics.read(path)
    assert metrics.nonfinite_skipped == 0 and metrics.before is None and metrics.ks == []
    assert metrics.steps == 9


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"final": {}, "colour": 1}', r"unknown field\(s\) \['colour'\]"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"final": ', "not valid JSON"),
    ],
)
def test_bad_files_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "metrics.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        RunMetrics.read(path)
