"""A run killed with SIGKILL and resumed with ``--resume`` (the real command, in subprocesses)
ends with the same metrics as an uninterrupted run (same seed, CPU, one thread)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dmlkit.cli import main
from dmlkit.training import load_checkpoint

CONFIG = """\
data:
  name: digits
  options: {holdout: images, test_fraction: 0.3, val_fraction: 0.1}
  image_size: 8
  batch_size: 40
  m: 4
model: {name: small_cnn, embedding_dim: 16, options: {widths: [8, 16]}}
loss: {name: ms}
optimizer: {name: adam, lr: 1.0e-3}
schedule: {name: cosine}
train: {steps: 40, eval_every: 10, checkpoint_every: 10, log_every: 5, progress: false,
        num_threads: 1}
eval: {metrics: [recall, precision@1, map@r], ks: [1, 2], periodic_test: false}
output: {timestamp: false, report: false}
"""


def _train(config: Path, out: Path, name: str, *extra: str) -> list[str]:
    return ["train", str(config), "--set", f"output.dir={out}", "--set", f"output.name={name}",
            *extra]  # fmt: skip


def _command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "dmlkit.cli", *args]


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_uninterrupted_metrics(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG)
    env = {**os.environ, "PYTHONHASHSEED": "0"}

    killed = subprocess.Popen(
        _command(_train(config, tmp_path, "killed")),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    last = tmp_path / "killed" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 300
    while not last.exists():
        assert killed.poll() is None, killed.stderr.read().decode() if killed.stderr else ""
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    assert not (tmp_path / "killed" / "metrics.json").exists()
    assert load_checkpoint(last)["step"] < 40

    resumed = subprocess.run(
        _command(_train(config, tmp_path, "killed", "--resume", str(tmp_path / "killed"))),
        env=env,
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith("resuming digits")
    assert main(_train(config, tmp_path, "full")) == 0  # uninterrupted, in this process

    a = json.loads((tmp_path / "full" / "metrics.json").read_text())
    b = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    for key in ("before", "final", "best", "best_step", "best_val", "best_selection_value"):
        assert a[key] == b[key], key
