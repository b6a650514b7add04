"""Architecture rule: each package imports only from the layers above it (ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dmlkit

SRC = Path(dmlkit.__file__).resolve().parent
LAYERS = [
    "core",
    "losses",
    "sampling",
    "evaluation",
    "methods",
    "data",
    "models",
    "training",
    "retrieval",
    "reporting",
    "protocol",
]
# The trainer, the retrieval layer, the report (which rebuilds a run's test split) and the
# protocol runner are driven by the typed config schema; everything else at the top level is free.
EXTRA_ALLOWED = {
    "training": {"config"},
    "retrieval": {"config"},
    "reporting": {"config"},
    "protocol": {"config"},
}


def _dmlkit_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "dmlkit" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("layer", LAYERS)
def test_layer_imports_only_layers_above(layer: str) -> None:
    allowed = set(LAYERS[: LAYERS.index(layer) + 1]) | EXTRA_ALLOWED.get(layer, set())
    offenders = {}
    for path in sorted((SRC / layer).rglob("*.py")):
        bad = _dmlkit_imports(path) - allowed
        if bad:
            offenders[str(path.relative_to(SRC))] = sorted(bad)
    assert offenders == {}, f"imports from lower layers: {offenders}"


def test_layer_rule_detects_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text("from dmlkit.training import trainer\nimport dmlkit.core.checks\n")
    assert _dmlkit_imports(bad) == {"training", "core"}


def test_package_ships_type_marker() -> None:
    assert (SRC / "py.typed").is_file()
