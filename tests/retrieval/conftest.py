"""A tiny trained digits model (the demo config, a few steps) shared by the retrieval tests, and
one torch thread for every test of the folder."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import torch

from dmlkit.cli import main
from dmlkit.data import DMLDataset
from dmlkit.training.build import build_split, model_from_checkpoint
from tests.tiny_demo import TINY_DEMO

TRAIN = [
    *TINY_DEMO,
    "data.options.val_fraction=0.2",
    "train.steps=12",
    "train.eval_every=0",
    "train.progress=false",
    "train.num_threads=1",
    "eval.metrics=[recall, map@r]",
    "eval.ks=[1]",
    "output.report=false",
    "output.timestamp=false",
]


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    """Every test of this folder runs with ``one_torch_thread`` (tests/conftest.py)."""


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``best.pt`` of the tiny digits demo trained for a few steps."""
    out = tmp_path_factory.mktemp("retrieval-run")
    threads = torch.get_num_threads()
    argv = ["train", *(a for value in [*TRAIN, f"output.dir={out}"] for a in ("--set", value))]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 0
    torch.set_num_threads(threads)
    return out / "demo" / "checkpoints" / "best.pt"


@pytest.fixture(scope="session")
def test_split(checkpoint: Path) -> DMLDataset:
    """The test split of the checkpoint's dataset (evaluation transform)."""
    _, config = model_from_checkpoint(checkpoint)
    return build_split(config.data, "test", train=False)


def write_folder(dataset: DMLDataset, root: Path, count: int, size: int = 16) -> list[Path]:
    """The first ``count`` images of ``dataset`` as PNG files in class subfolders of ``root``
    (upscaled to ``size`` px); returns the paths in item order."""
    paths = []
    for i in range(count):
        folder = root / dataset.class_names[int(dataset.labels[i])]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"item{i:03d}.png"
        dataset.image(i).resize((size, size)).save(path)
        paths.append(path)
    return paths
