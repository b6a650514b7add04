"""Shared test fixtures: deterministic seeds and small torch thread counts for the 2-core CI."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch thread for the test, the previous count restored after it (folders of small
    convolutions request it for all their tests: on a busy 2-core machine two threads per
    process make them several times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _write_files(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@pytest.fixture
def write_files() -> Callable[[Path, dict[str, str]], None]:
    """``write_files(root, {relative path: text})``: a tree of small text files (folders
    created), for tests that scan source trees."""
    return _write_files
