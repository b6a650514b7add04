"""``metrics.json``, the summary of a finished run, written and read through one class.

    RunMetrics(before, final, best, best_step, selected_on, selection_metric,
               best_selection_value, best_val, dataset, ks, steps, stopped_early,
               nonfinite_skipped, train_time_s, images_per_s)

``before``, ``final``, ``best`` and ``best_val`` are metric dicts (``{"map@r": 0.61, ...}``) of
the test split before training, of the final model and of the selected one, and of the
validation split at the selected step (``None`` when not evaluated). Non-finite values are
written as the strings ``"nan"``, ``"inf"`` and ``"-inf"`` (JSON has no such numbers) and read
back as floats. A file written by an earlier version may lack fields: they read as ``None``
(or the field's default); a field this version does not know is an error naming it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
Metrics = dict[str, float]


def to_json_value(value: Any) -> Any:
    """``value`` with non-finite floats as their string markers, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: to_json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json_value(v) for v in value]
    return value


def from_json_value(value: Any) -> Any:
    """``value`` with the non-finite markers turned back into floats, recursively."""
    if isinstance(value, str) and value in NON_FINITE:
        return NON_FINITE[value]
    if isinstance(value, dict):
        return {k: from_json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json_value(v) for v in value]
    return value


@dataclass
class RunMetrics:
    """The content of ``metrics.json`` (module docstring)."""

    before: Metrics | None = None
    final: Metrics | None = None
    best: Metrics | None = None
    best_step: int | None = None
    selected_on: str | None = None
    selection_metric: str | None = None
    best_selection_value: float | None = None
    best_val: Metrics | None = None
    dataset: str | None = None
    ks: list[int] = field(default_factory=list)
    steps: int | None = None
    stopped_early: bool = False
    nonfinite_skipped: int = 0
    train_time_s: float | None = None
    images_per_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (the shape of ``metrics.json``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, origin: str = "metrics") -> RunMetrics:
        """Read a dict of :meth:`to_dict`'s shape; ``ValueError`` naming ``origin`` for a value
        that is not an object or a field this version does not know."""
        if not isinstance(data, dict):
            raise ValueError(f"{origin}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{origin}: unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**from_json_value(data))

    def write(self, path: str | Path) -> Path:
        """Write ``metrics.json`` at ``path``; returns ``path``."""
        path = Path(path)
        path.write_text(json.dumps(to_json_value(self.to_dict()), indent=2) + "\n")
        return path

    @classmethod
    def read(cls, path: str | Path) -> RunMetrics:
        """Read the ``metrics.json`` at ``path``."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err
        return cls.from_dict(data, str(path))
