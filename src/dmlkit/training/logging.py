"""Run logs: ``log.jsonl`` (one JSON object per line), ``log.csv`` and optional TensorBoard.

Records are ``{"kind": "train", "step", "epoch", "loss", "lr", "images_per_s"}`` and
``{"kind": "eval", "step", "epoch", "split", <metric>: value, ...}`` and, for a step with a
non-finite loss or gradient, ``{"kind": "nonfinite", "step", "epoch", "what", "items",
"policy"}``. The CSV has one fixed header
(the train fields, ``split`` and the metric columns); a field a record lacks is left empty. Every
record is flushed at once, so :meth:`RunLogger.position` (byte sizes of the two files) marks what
a checkpoint has seen; :meth:`RunLogger.truncate` cuts the files back to it on resume, so a
resumed run writes the same logs as an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from dmlkit.training.run_metrics import to_json_value

TRAIN_FIELDS = ("kind", "step", "epoch", "split", "loss", "lr", "images_per_s")


def _summary_writer() -> Any:
    """TensorBoard's ``SummaryWriter`` class, or an ``ImportError`` saying how to install it."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ImportError(
            "output.tensorboard needs the tensorboard package: pip install 'dmlkit[tensorboard]'"
        ) from err
    return SummaryWriter


class RunLogger:
    """Append-only JSONL + CSV (+ TensorBoard scalars) logs in ``run_dir``."""

    def __init__(
        self,
        run_dir: str | Path,
        metric_columns: Sequence[str],
        tensorboard: bool = False,
        position: dict[str, int] | None = None,
        tensorboard_step: int | None = None,
    ) -> None:
        """Open the logs; with ``position`` (resume) cut them back to it first."""
        writer = _summary_writer() if tensorboard else None
        run_dir = Path(run_dir)
        self.jsonl_path = run_dir / "log.jsonl"
        self.csv_path = run_dir / "log.csv"
        self.columns = [*TRAIN_FIELDS, *metric_columns]
        if position is None:
            for path in (self.jsonl_path, self.csv_path):
                path.write_bytes(b"")
        else:
            self.truncate(position)
        self._jsonl: TextIO = open(self.jsonl_path, "a", encoding="utf-8")  # noqa: SIM115
        self._csv: TextIO = open(self.csv_path, "a", encoding="utf-8", newline="")  # noqa: SIM115
        if self.csv_path.stat().st_size == 0:
            self._write_csv_row({c: c for c in self.columns})
        self._tb = None
        if writer is not None:
            self._tb = writer(str(run_dir / "tensorboard"), purge_step=tensorboard_step)

    def _write_csv_row(self, row: dict[str, Any]) -> None:
        buffer = io.StringIO()
        csv.DictWriter(buffer, self.columns, extrasaction="ignore").writerow(row)
        self._csv.write(buffer.getvalue())
        self._csv.flush()

    def log(self, record: dict[str, Any]) -> None:
        """Append ``record`` to every log."""
        self._jsonl.write(json.dumps(to_json_value(record)) + "\n")
        self._jsonl.flush()
        self._write_csv_row(record)
        if self._tb is not None:
            prefix = record["split"] if record["kind"] == "eval" else record["kind"]
            for key, value in record.items():
                if key not in ("kind", "step", "epoch", "split") and isinstance(value, float):
                    self._tb.add_scalar(f"{prefix}/{key}", value, record["step"])
            self._tb.flush()

    def position(self) -> dict[str, int]:
        """Byte sizes of the JSONL and CSV logs now."""
        return {"jsonl": self.jsonl_path.stat().st_size, "csv": self.csv_path.stat().st_size}

    def truncate(self, position: dict[str, int]) -> None:
        """Cut the logs back to ``position`` (what a checkpoint saw)."""
        for key, path in (("jsonl", self.jsonl_path), ("csv", self.csv_path)):
            with open(path, "ab") as f:
                f.truncate(min(position[key], path.stat().st_size))

    def close(self) -> None:
        self._jsonl.close()
        self._csv.close()
        if self._tb is not None:
            self._tb.close()
