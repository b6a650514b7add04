"""One torch thread for the training tests: on a busy 2-core machine two threads per process
make the small convolutions several times slower (threads wait for each other)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    """Every test of this folder runs with ``one_torch_thread`` (tests/conftest.py)."""
