"""A distributed run whose peer hangs (SIGSTOP) or dies (SIGKILL): the surviving rank ends within
``train.dist_timeout`` with one dmlkit error line, no traceback, and exit status 1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_demo import TINY_DEMO

TIMEOUT_S = 6.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_ranks(tmp_path: Path) -> list[subprocess.Popen[str]]:
    values = [
        *TINY_DEMO,
        "data.batch_size=20",
        "train.steps=100000",
        "train.eval_every=0",
        "train.checkpoint_every=0",
        "train.progress=false",
        "train.num_threads=1",
        "eval.before=false",
        "output.report=false",
        f"train.dist_timeout={TIMEOUT_S}",
        f"output.dir={tmp_path}",
    ]
    argv = [sys.executable, "-m", "dmlkit.cli", "train"]
    argv += [arg for value in values for arg in ("--set", value)]
    port = _free_port()
    ranks = []
    for rank in (0, 1):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        ranks.append(
            subprocess.Popen(
                argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    return ranks


def _wait_for_training(rank0: subprocess.Popen[str], tmp_path: Path) -> None:
    """Until rank 0 logs optimizer steps (both ranks are then inside the step loop)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        logs = list(tmp_path.glob("demo-*/log.jsonl"))
        if logs and logs[0].read_text().count('"kind": "train"') >= 2:
            return
        assert rank0.poll() is None, rank0.communicate()
        time.sleep(0.2)
    raise AssertionError("the two-process run did not start training in 240 s")


@pytest.mark.slow
@pytest.mark.parametrize("fault", [signal.SIGSTOP, signal.SIGKILL])
def test_a_hung_or_dead_peer_ends_the_run_with_one_line(
    tmp_path: Path, fault: signal.Signals
) -> None:
    rank0, rank1 = _start_ranks(tmp_path)
    try:
        _wait_for_training(rank0, tmp_path)
        os.kill(rank1.pid, fault)
        start = time.monotonic()
        _, err = rank0.communicate(timeout=TIMEOUT_S + 60)
        elapsed = time.monotonic() - start
    finally:
        for proc in (rank0, rank1):
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
    assert rank0.returncode == 1
    assert elapsed < TIMEOUT_S + 30
    if fault == signal.SIGSTOP:
        assert elapsed > TIMEOUT_S - 1  # it waited for the hung peer, then gave up
    errors = [line for line in err.splitlines() if line.startswith("dmlkit: error: ")]
    assert len(errors) == 1, err
    assert errors[0].startswith("dmlkit: error: rank 0 of 2: another process of the run died")
    assert f"train.dist_timeout = {TIMEOUT_S:g} s" in errors[0]
    assert "Traceback" not in err
