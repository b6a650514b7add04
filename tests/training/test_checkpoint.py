"""Checkpoints: data-only files that plain ``torch.load(weights_only=True)`` opens, round trip,
atomic replacement, digest and truncation detection, explicit fallback, the old format refused
and converted without running code."""

from __future__ import annotations

import hashlib
import io
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from dmlkit.core import serialization
from dmlkit.core.serialization import (
    LEGACY_MAGIC,
    CheckpointError,
    plain_state,
    previous_path,
    remove_stale_tmp,
    state_digest,
)
from dmlkit.training.checkpoint import convert_legacy, load_checkpoint, save_checkpoint
from dmlkit.training.seed import capture_rng_state, restore_rng_state

MARKER_CODE = "import pathlib; pathlib.Path({path!r}).write_text('ran')"


class RunsCode:
    """Unpickling this object would run ``MARKER_CODE`` (a file appears when it does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (exec, (MARKER_CODE.format(path=str(self.marker)),))


def _state(value: float) -> dict:
    return {"step": int(value), "weights": torch.full((3, 4), value), "nested": {"a": [value]}}


def _same(a: dict, b: dict) -> bool:
    return (
        a["step"] == b["step"]
        and torch.equal(a["weights"], b["weights"])
        and a["nested"] == b["nested"]
    )


def _legacy_bytes(state: object) -> bytes:
    """A file of the old format: three-line header, then ``torch.save`` pickle bytes."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    digest = hashlib.sha256(payload).hexdigest()
    return LEGACY_MAGIC + f"sha256 {digest}\nbytes {len(payload)}\n".encode() + payload


def test_plain_torch_load_with_weights_only_opens_a_checkpoint(tmp_path: Path) -> None:
    path = save_checkpoint(_state(1.0), tmp_path / "ck" / "last.pt")
    box = torch.load(path, map_location="cpu", weights_only=True)
    assert set(box) == {"format", "version", "kind", "sha256", "state"}
    assert (box["format"], box["version"], box["kind"]) == ("dmlkit", 2, "checkpoint")
    assert box["sha256"] == state_digest(box["state"]) and len(box["sha256"]) == 64
    assert _same(box["state"], _state(1.0))
    assert _same(load_checkpoint(path), _state(1.0))


def test_the_digest_covers_types_keys_dtypes_and_values() -> None:
    base = state_digest({"a": [1, 2.0, "x", None, True, b"z"], "t": torch.zeros(2)})
    variants = [
        {"a": [1, 2.0, "x", None, True, b"z"], "t": torch.zeros(2, dtype=torch.float64)},
        {"a": [1, 2.0, "x", None, 1, b"z"], "t": torch.zeros(2)},
        {"a": (1, 2.0, "x", None, True, b"z"), "t": torch.zeros(2)},
        {"a": [1, 2.0, "x", None, True, b"z"], "t": torch.zeros(1, 2)},
        {"a": [1, 2.0, "x", None, True, b"z"], "t": torch.tensor([0.0, 1e-45])},
        {"b": [1, 2.0, "x", None, True, b"z"], "t": torch.zeros(2)},
        {"a": [1, 2.0, "x", None, True, b"z"], 0: torch.zeros(2)},
    ]
    digests = {state_digest(v) for v in variants}
    assert base not in digests and len(digests) == len(variants)
    bf16 = torch.randn(3, 5).to(torch.bfloat16)
    assert state_digest(bf16) == state_digest(bf16.t().contiguous().t())  # layout-free


def test_states_hold_only_tensors_and_plain_values() -> None:
    assert plain_state({"x": np.float32(0.5), "n": np.int64(3)}) == {"x": 0.5, "n": 3}
    with pytest.raises(TypeError, match=r"state\['a'\]\[1\]: a state holds tensors.*set"):
        plain_state({"a": [1, {2}]})
    with pytest.raises(TypeError, match=r"state\['rng'\].*numpy.ndarray"):
        save_checkpoint({"rng": np.zeros(3)}, Path("/nonexistent/never-written.pt"))


def test_rng_states_survive_a_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    np.random.standard_normal()  # a cached Gaussian in numpy's state
    save_checkpoint({"rng": capture_rng_state()}, tmp_path / "r.pt")
    expected = (torch.rand(3), np.random.standard_normal(4), random.random())
    restore_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"])
    again = (torch.rand(3), np.random.standard_normal(4), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1])
    assert expected[2] == again[2]


def test_saving_again_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(_state(1.0), path)
    save_checkpoint(_state(2.0), path)
    assert _same(load_checkpoint(path), _state(2.0))
    assert _same(load_checkpoint(previous_path(path)), _state(1.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "last.pt.prev"]


def test_a_failed_write_leaves_the_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(_state(1.0), path)
    before = path.read_bytes()

    def crash(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(serialization.os, "fsync", crash)
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

    monkeypatch.setattr(serialization.torch, "save", crash)
    with pytest.raises(RuntimeError, match="killed"):
        save_checkpoint(_state(2.0), path)
    monkeypatch.undo()
    assert _same(load_checkpoint(path), _state(1.0))


def test_stale_temporary_files_are_removed(tmp_path: Path) -> None:
    save_checkpoint(_state(1.0), tmp_path / "last.pt")
    stale = tmp_path / ".last.pt.4242.tmp"
    stale.write_bytes(b"half a checkpoint")
    assert remove_stale_tmp(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_truncated_file_is_detected(tmp_path: Path) -> None:
    path = save_checkpoint(_state(1.0), tmp_path / "last.pt")
    raw = path.read_bytes()
    for cut in (len(raw) - 10, len(raw) // 2, 30):
        path.write_bytes(raw[:cut])
        with pytest.raises(CheckpointError, match=r"last.pt: truncated or corrupt"):
            load_checkpoint(path)


def test_a_changed_weight_fails_the_digest(tmp_path: Path) -> None:
    path = save_checkpoint(_state(1.0), tmp_path / "last.pt")
    raw = path.read_bytes()
    one = torch.tensor(1.0).numpy().tobytes()
    at = raw.index(one * 12)  # the stored weights (3 x 4 ones); the zip archive has no CRC check
    changed = raw[:at] + torch.tensor(1.5).numpy().tobytes() + raw[at + 4 :]
    path.write_bytes(changed)
    with pytest.raises(CheckpointError, match="checksum mismatch, the file is corrupt"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"x": 1}, "a torch file, but not a dmlkit file"),
        (torch.ones(2), "a torch file, but not a dmlkit file"),
        (
            {"format": "dmlkit", "version": 9, "kind": "checkpoint", "sha256": "", "state": {}},
            "dmlkit file version 9, expected 2",
        ),
    ],
)
def test_foreign_files_are_refused(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "model.pt"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_a_folder_or_text_in_place_of_a_checkpoint_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "last.pt").mkdir()
    with pytest.raises(CheckpointError, match="expected a checkpoint file, found a folder"):
        load_checkpoint(tmp_path / "last.pt")
    (tmp_path / "notes.pt").write_text("hello\n" * 20)
    with pytest.raises(CheckpointError, match=r"notes\.pt: not a torch\.save file"):
        load_checkpoint(tmp_path / "notes.pt")


def test_a_file_that_would_run_code_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    box = {"format": "dmlkit", "version": 2, "kind": "checkpoint", "sha256": "0", "state": {}}
    box["state"] = {"model": RunsCode(marker)}
    torch.save(box, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"evil.pt: refused.*run as code \(.*GLOBAL exec\)"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_without_fallback_a_damaged_file_names_the_previous_one(tmp_path: Path) -> None:
    path = tmp_path / "best.pt"
    save_checkpoint(_state(1.0), path)
    save_checkpoint(_state(2.0), path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"truncated.*it replaced is .*best.pt.prev \(pass"):
        load_checkpoint(path)
    path.unlink()
    with pytest.raises(FileNotFoundError, match=r"best.pt: not found.*best.pt.prev"):
        load_checkpoint(path)


def test_with_fallback_a_damaged_latest_loads_the_previous_with_a_notice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(_state(1.0), path)
    save_checkpoint(_state(2.0), path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    assert _same(load_checkpoint(path, fallback=True), _state(1.0))
    err = capsys.readouterr().err
    assert err.startswith("dmlkit: notice: ") and "resuming from the previous one" in err
    assert len(err.strip().splitlines()) == 1
    os.remove(path)
    assert _same(load_checkpoint(path, fallback=True), _state(1.0))
    assert "last.pt: not found; resuming from the previous one" in capsys.readouterr().err


def test_nothing_usable_raises(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(path, fallback=True)
    save_checkpoint(_state(1.0), path)
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"no usable checkpoint.*not a torch.save file"):
        load_checkpoint(path, fallback=True)


def test_old_format_is_refused_with_the_conversion_command(tmp_path: Path) -> None:
    old = tmp_path / "old.pt"
    old.write_bytes(_legacy_bytes(_state(1.0)))
    with pytest.raises(CheckpointError, match=r"old format.*dmlkit convert .*old.pt NEW.pt"):
        load_checkpoint(old)


def test_convert_rewrites_an_old_checkpoint_with_its_rng_state(tmp_path: Path) -> None:
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    legacy_rng = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    old = tmp_path / "old.pt"
    old.write_bytes(_legacy_bytes({**_state(3.0), "rng": legacy_rng}))
    expected = (torch.rand(2), np.random.rand(2), random.random())
    new = convert_legacy(old, tmp_path / "new.pt")
    state = load_checkpoint(new)
    assert _same(state, _state(3.0))
    restore_rng_state(state["rng"])
    again = (torch.rand(2), np.random.rand(2), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1])
    assert expected[2] == again[2]


def test_convert_refuses_an_old_file_that_would_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    old = tmp_path / "old.pt"
    old.write_bytes(_legacy_bytes({"model": RunsCode(marker)}))
    with pytest.raises(CheckpointError, match="refused"):
        convert_legacy(old, tmp_path / "new.pt")
    assert not marker.exists() and not (tmp_path / "new.pt").exists()
    damaged = bytearray(_legacy_bytes(_state(1.0)))
    damaged[-5] ^= 0xFF
    old.write_bytes(bytes(damaged))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        convert_legacy(old, tmp_path / "new.pt")


@pytest.mark.parametrize("damage", ["truncate", "change"])
def test_a_run_resumes_from_the_previous_checkpoint_when_the_last_is_damaged(
    tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
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
    data = last.read_bytes()
    if damage == "truncate":
        last.write_bytes(data[: len(data) - 100])
    else:  # one weight changed, the file otherwise well-formed (the old digest kept)
        box = torch.load(last, weights_only=True)
        next(iter(box["state"]["model"].values())).view(-1)[0] += 1.0
        torch.save(box, last)
    with pytest.raises(CheckpointError, match="truncated" if damage == "truncate" else "checksum"):
        load_checkpoint(last)
    capsys.readouterr()
    again = Trainer(config, run, resume=True).fit()
    assert "resuming from the previous one" in capsys.readouterr().err
    assert again["steps"] == 4
    assert again["final"] == first["final"] and again["best"] == first["best"]
    assert load_checkpoint(last)["step"] == 4  # rewritten whole
