"""Shared test fixtures: deterministic seeds and small torch thread counts for the 2-core CI."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
