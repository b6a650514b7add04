"""Imports of the optional vision packages (torchvision, timm) with an actionable message."""

from __future__ import annotations

import importlib
from types import ModuleType


def import_vision(module: str, model: str) -> ModuleType:
    """``module`` imported, or ``ImportError`` naming ``model`` and ``pip install dmlkit[vision]``."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = module.split(".")[0]
        raise ImportError(
            f"model {model!r} needs {package}, which is not installed: pip install dmlkit[vision]"
        ) from err
