"""One torch thread for the protocol tests (small convolutions on a busy 2-core machine)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    """Every test of this folder runs with ``one_torch_thread`` (tests/conftest.py)."""
