"""Reading a run folder as the trainer writes it::

    config.yaml            resolved config
    log.jsonl              {"kind": "train", "step", "epoch", "loss", "lr", "images_per_s"} and
                           {"kind": "eval", "step", "epoch", "split", <metric>: value, ...} rows
    metrics.json           {"before", "final", "best", "best_step", "selected_on", "dataset", "ks", ...}
    embeddings/test.npz    emb (N, D) float32, labels (N,) int64, index (N,) int64

Only ``metrics.json`` is required (read as :class:`~dmlkit.training.run_metrics.RunMetrics`); a
missing log, config or embeddings file leaves the parts of the report that need it out, with a
note. Non-finite numbers, which the logs write as the strings ``"nan"``, ``"inf"`` and ``"-inf"``,
are read back as floats. Memory: the log rows and the embeddings, O(rows + N D).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dmlkit.training.run_metrics import RunMetrics, from_json_value


@dataclass
class TestEmbeddings:
    """The saved test embeddings: ``emb (N, D)``, ``labels (N,)``, ``index (N,)`` (dataset item of
    each row)."""

    emb: np.ndarray
    labels: np.ndarray
    index: np.ndarray


@dataclass
class RunFolder:
    """Everything the report reads from a run folder (module docstring)."""

    path: Path
    metrics: RunMetrics
    config: dict[str, Any] | None = None
    train_rows: list[dict[str, Any]] = field(default_factory=list)
    eval_rows: list[dict[str, Any]] = field(default_factory=list)
    embeddings: TestEmbeddings | None = None
    notes: list[str] = field(default_factory=list)


def read_log(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The train rows and the eval rows of ``log.jsonl``, in file order."""
    train: list[dict[str, Any]] = []
    evals: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: not a JSON object ({err.msg})") from err
        if not isinstance(row, dict) or row.get("kind") not in ("train", "eval"):
            raise ValueError(f"{path}:{number}: expected a record with kind 'train' or 'eval'")
        (train if row["kind"] == "train" else evals).append(from_json_value(row))
    return train, evals


def read_embeddings(path: Path) -> TestEmbeddings:
    """``embeddings/test.npz`` with its shapes checked."""
    with np.load(path) as data:
        missing = [k for k in ("emb", "labels", "index") if k not in data]
        if missing:
            raise ValueError(f"{path}: expected arrays emb, labels, index; missing {missing}")
        emb, labels, index = data["emb"], data["labels"], data["index"]
    n = len(emb)
    if emb.ndim != 2 or labels.shape != (n,) or index.shape != (n,):
        raise ValueError(
            f"{path}: expected emb (N, D), labels (N,), index (N,), got {emb.shape}, "
            f"{labels.shape}, {index.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer) or not np.issubdtype(index.dtype, np.integer):
        raise ValueError(
            f"{path}: expected integer labels and index, got {labels.dtype}, {index.dtype}"
        )
    return TestEmbeddings(emb.astype(np.float32), labels.astype(np.int64), index.astype(np.int64))


def load_run(run_dir: str | Path) -> RunFolder:
    """Read ``run_dir`` (module docstring)."""
    path = Path(run_dir)
    metrics_path = path / "metrics.json"
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{path}: expected a finished run folder with metrics.json")
    run = RunFolder(path, RunMetrics.read(metrics_path))
    config_path = path / "config.yaml"
    if config_path.is_file():
        config = yaml.safe_load(config_path.read_text())
        if not isinstance(config, dict):
            raise ValueError(f"{config_path}: expected a mapping, got {type(config).__name__}")
        run.config = config
    else:
        run.notes.append("config.yaml is missing: no configuration section.")
    log_path = path / "log.jsonl"
    if log_path.is_file():
        run.train_rows, run.eval_rows = read_log(log_path)
    else:
        run.notes.append("log.jsonl is missing: no training curves.")
    emb_path = path / "embeddings" / "test.npz"
    if emb_path.is_file():
        run.embeddings = read_embeddings(emb_path)
    else:
        run.notes.append(
            "embeddings/test.npz is missing (output.embeddings off?): no embedding map and no "
            "retrieval examples."
        )
    return run
