"""Checkpoints: round trip, atomic replacement, checksum and truncation detection, fallback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from dmlkit.training import checkpoint
from dmlkit.training.checkpoint import (
    MAGIC,
    CheckpointError,
    load_checkpoint,
    previous_path,
    save_checkpoint,
)


def _state(value: float) -> dict:
    return {"step": int(value), "weights": torch.full((3, 4), value), "nested": {"a": [value]}}


def _same(a: dict, b: dict) -> bool:
    return (
        a["step"] == b["step"]
        and torch.equal(a["weights"], b["weights"])
        and a["nested"] == b["nested"]
    )


def test_round_trip_and_header(tmp_path: Path) -> None:
    path = save_checkpoint(_state(1.0), tmp_path / "ck" / "last.pt")
    raw = path.read_bytes()
    assert raw.startswith(MAGIC)
    lines = raw.split(b"\n", 3)
    assert lines[1].startswith(b"sha256 ") and len(lines[1]) == len(b"sha256 ") + 64
    assert int(lines[2][len(b"bytes ") :]) == len(lines[3])
    assert _same(load_checkpoint(path), _state(1.0))


def test_saving_again_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(_state(1.0), path)
    save_checkpoint(_state(2.0), path)
    assert _same(load_checkpoint(path), _state(2.0))
    assert _same(load_checkpoint(previous_path(path), fallback=False), _state(1.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "last.pt.prev"]


def test_a_failed_write_leaves_the_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(_state(1.0), path)
    before = path.read_bytes()

    def crash(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(_state(2.0), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert not previous_path(path).exists()  # nothing was rotated
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


def test_a_crash_while_encoding_leaves_the_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(_state(1.0), path)

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed")

    monkeypatch.setattr(checkpoint.torch, "save", crash)
    with pytest.raises(RuntimeError, match="killed"):
        save_checkpoint(_state(2.0), path)
    monkeypatch.undo()
    assert _same(load_checkpoint(path, fallback=False), _state(1.0))


def test_truncated_file_is_detected(tmp_path: Path) -> None:
    path = save_checkpoint(_state(1.0), tmp_path / "last.pt")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 10])
    with pytest.raises(CheckpointError, match="truncated, the header announces"):
        load_checkpoint(path, fallback=False)
    path.write_bytes(raw[: len(MAGIC) + 5])
    with pytest.raises(CheckpointError, match="truncated or malformed header"):
        load_checkpoint(path, fallback=False)


def test_flipped_byte_fails_the_checksum(tmp_path: Path) -> None:
    path = save_checkpoint(_state(1.0), tmp_path / "last.pt")
    raw = bytearray(path.read_bytes())
    raw[-20] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(path, fallback=False)


def test_foreign_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save({"x": 1}, path)
    with pytest.raises(CheckpointError, match="not a dmlkit checkpoint"):
        load_checkpoint(path, fallback=False)


def test_corrupt_latest_falls_back_to_the_previous_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(_state(1.0), path)
    save_checkpoint(_state(2.0), path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.warns(UserWarning, match="loaded the previous one"):
        state = load_checkpoint(path)
    assert _same(state, _state(1.0))


def test_missing_latest_falls_back_too(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(_state(1.0), path)
    save_checkpoint(_state(2.0), path)
    os.remove(path)
    with pytest.warns(UserWarning, match="not found"):
        assert _same(load_checkpoint(path), _state(1.0))


def test_nothing_usable_raises(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(path)
    save_checkpoint(_state(1.0), path)
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"no usable checkpoint.*not a dmlkit checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_run_resumes_from_the_previous_checkpoint_when_the_last_is_damaged(
    tmp_path: Path, damage: str
) -> None:
    from dmlkit.config import load_config
    from dmlkit.training import Trainer

    torch.set_num_threads(1)
    config = load_config(
        None,
        [
            "data.image_size=8",
            "model.options.widths=[8, 16]",
            "data.batch_size=40",
            "model.embedding_dim=16",
            "train.steps=4",
            "train.eval_every=2",
            "train.checkpoint_every=2",
            "train.progress=false",
            "eval.metrics=[map@r]",
            "eval.ks=[1]",
            "output.report=false",
        ],
    )
    run = tmp_path / "run"
    first = Trainer(config, run).fit()
    last = run / "checkpoints" / "last.pt"
    data = bytearray(last.read_bytes())
    if damage == "truncate":
        last.write_bytes(bytes(data[: len(data) - 100]))
    else:
        data[-100] ^= 0x10
        last.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated" if damage == "truncate" else "checksum"):
        load_checkpoint(last, fallback=False)
    resumed = Trainer(config, run, resume=True)
    with pytest.warns(UserWarning, match=r"unusable .*loaded the previous one"):
        again = resumed.fit()
    assert again["steps"] == 4
    assert again["final"] == first["final"] and again["best"] == first["best"]
    assert load_checkpoint(last, fallback=False)["step"] == 4  # rewritten whole
