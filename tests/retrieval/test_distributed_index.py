"""``dmlkit index build`` under two gloo processes (the torchrun environment): each rank embeds
its shard of a folder, rank 0 writes the index, which equals the one-process index."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import torch
import torch.multiprocessing as mp

from dmlkit.cli import main
from dmlkit.data import DMLDataset
from dmlkit.retrieval import EmbeddingIndex
from tests.retrieval.conftest import write_folder

WORLD = 2


def _worker(rank: int, checkpoint: str, data: str, out: str, port: int) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        status = main(
            ["index", "build", checkpoint, "--data", data, "--out", out, "--batch-size", "4"]
        )
    if status != 0:
        raise SystemExit(status)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_ranks_build_the_one_process_index(
    checkpoint: Path, test_split: DMLDataset, tmp_path: Path
) -> None:
    write_folder(test_split, tmp_path / "collection", 23)  # uneven shards: 12 + 11
    data, sharded = str(tmp_path / "collection"), tmp_path / "sharded.index"
    mp.spawn(
        _worker, args=(str(checkpoint), data, str(sharded), _free_port()), nprocs=WORLD, join=True
    )
    with contextlib.redirect_stdout(io.StringIO()):
        assert (
            main(
                [
                    "index",
                    "build",
                    str(checkpoint),
                    "--data",
                    data,
                    "--out",
                    str(tmp_path / "one.index"),
                ]
            )
            == 0
        )
    one, two = EmbeddingIndex.load(tmp_path / "one.index"), EmbeddingIndex.load(sharded)
    assert len(two) == 23 and torch.equal(one.ids, two.ids)
    assert one.paths == two.paths and one.classes == two.classes
    assert torch.allclose(one.vectors, two.vectors, atol=1e-6)
