"""What a new user meets first: a command that answers at once, files that cannot run code,
no silent substitution of one checkpoint for another, a run that always ends well after a
successful training, runs that can be started again, and a console that says what happens."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from tiny_demo import TINY_DEMO

from dmlkit.cli import main
from dmlkit.config import load_config, save_config
from dmlkit.evaluation import extract
from dmlkit.training import Trainer, load_checkpoint, save_checkpoint

FAST = [
    *TINY_DEMO,
    "train.steps=4",
    "train.eval_every=2",
    "train.checkpoint_every=2",
    "train.progress=false",
    "train.num_threads=1",
    "eval.metrics=[recall, map@r]",
    "eval.ks=[1]",
    "output.report=false",
]
MARKER_CODE = "import pathlib; pathlib.Path({path!r}).write_text('ran')"


def _sets(values: list[str]) -> list[str]:
    return [arg for value in values for arg in ("--set", value)]


class RunsCode:
    """Unpickling this object would write a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (exec, (MARKER_CODE.format(path=str(self.marker)),))


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny demo run (best.pt saved at step 2 or 4, last.pt at step 4)."""
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", *_sets([*FAST, f"output.dir={out}"])]) == 0
    (folder,) = out.glob("demo-*")
    return folder


def _heavy_modules_after(code: str) -> list[str]:
    """The heavy packages a fresh interpreter has loaded after running ``code``."""
    probe = (
        f"{code}\nimport sys\n"
        "print(sorted(m for m in ('torch', 'sklearn', 'scipy', 'matplotlib', 'timm', "
        "'torchvision') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300
    )
    return json.loads(done.stdout.strip().splitlines()[-1].replace("'", '"'))


def test_the_command_line_parser_imports_no_heavy_package() -> None:
    assert _heavy_modules_after("import dmlkit.cli; dmlkit.cli.build_parser()") == []


def test_help_and_argument_errors_answer_without_torch(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["train", "--help"], ["eval", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0
    assert "usage: dmlkit eval" in capsys.readouterr().out
    code = (
        "from dmlkit.cli import main\n"
        "try:\n    main(['frobnicate'])\nexcept SystemExit as e:\n    assert e.code == 2"
    )
    assert _heavy_modules_after(code) == []


def test_list_loads_torch_but_not_sklearn_matplotlib_timm_or_torchvision() -> None:
    loaded = _heavy_modules_after("from dmlkit.cli import main; main(['list'])")
    assert "torch" in loaded
    # torchvision alone costs about as much as torch (its models pull in torch._dynamo)
    assert not {"sklearn", "scipy", "matplotlib", "timm", "torchvision"} & set(loaded)


def test_a_missing_matplotlib_skips_the_report_with_a_notice_and_exits_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what a base install looks like
    values = [*FAST, "train.steps=2", "eval.before=false", "output.report=true"]
    assert main(["train", *_sets([*values, f"output.dir={tmp_path}"])]) == 0
    out = capsys.readouterr().out
    (folder,) = tmp_path.glob("demo-*")
    notice = f"report: skipped, it needs matplotlib (pip install 'dmlkit[plots]'); build it later with: dmlkit report {folder}"
    assert notice in out.splitlines()
    assert f"run folder: {folder}" in out and (folder / "metrics.json").is_file()


def _evil_checkpoint(path: Path, marker: Path) -> Path:
    box = {"format": "dmlkit", "version": 2, "kind": "checkpoint", "sha256": "0"}
    box["state"] = {"config": {}, "model": RunsCode(marker)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(box, path)
    return path


@pytest.mark.parametrize("command", ["eval", "embed", "resume", "pretrained", "convert"])
def test_a_checkpoint_that_would_run_code_is_refused_everywhere(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "marker"
    evil = _evil_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", marker)
    argv = {
        "eval": ["eval", str(evil)],
        "embed": ["embed", str(evil), "--out", str(tmp_path / "e.npy")],
        "resume": ["train", "--resume", str(tmp_path / "run"), *_sets(FAST)],
        "pretrained": ["train", *_sets([*FAST, f"model.pretrained={evil}"])],
        "convert": ["convert", str(evil), str(tmp_path / "new.pt")],
    }[command]
    if command == "resume":
        save_config(load_config(None, FAST), tmp_path / "run" / "config.yaml")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("dmlkit: error: ") and len(err.strip().splitlines()) == 1
    expected = "not a checkpoint of the old format" if command == "convert" else "refused"
    assert expected in err
    assert not marker.exists()


def test_eval_never_substitutes_the_previous_checkpoint(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    best = run / "checkpoints" / "best.pt"
    copy = tmp_path / "best.pt"
    copy.write_bytes(best.read_bytes()[:-50])
    (tmp_path / "best.pt.prev").write_bytes(best.read_bytes())
    assert main(["eval", str(copy)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dmlkit: error: unusable checkpoint: {copy}: truncated or corrupt")
    assert f"the checkpoint it replaced is {copy}.prev (pass that file to use it)" in err
    assert main(["eval", f"{copy}.prev", "--set", "train.progress=false"]) == 0


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("folder", "expected a checkpoint file, found a folder"),
        ("no_config", "expected a dmlkit training checkpoint with config and model"),
        ("weights", "a torch file, but not a dmlkit file"),
    ],
)
def test_odd_checkpoint_files_are_one_line_errors(
    setup: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "last.pt"
    if setup == "folder":
        path.mkdir()
    elif setup == "no_config":
        save_checkpoint({"model": {"w": torch.zeros(1)}}, path)
    else:
        torch.save({"w": torch.zeros(1)}, path)
    assert main(["eval", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dmlkit: error: ") and message in err
    assert len(err.strip().splitlines()) == 1


def test_a_run_that_stopped_before_its_first_checkpoint_blocks_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    named = _sets([*FAST, f"output.dir={tmp_path}", "output.name=fixed", "output.timestamp=false"])
    assert main(["train", *named, "--set", "loss.name=nope"]) == 2  # fails while building
    folder = tmp_path / "fixed"
    folder.mkdir(exist_ok=True)
    save_config(load_config(None, FAST), folder / "config.yaml")  # what a run that died leaves
    capsys.readouterr()
    assert main(["train", "--resume", str(folder), *named]) == 0
    assert f"{folder} has no checkpoint yet; starting it over" in capsys.readouterr().err
    assert load_checkpoint(folder / "checkpoints" / "last.pt")["step"] == 4
    assert main(["train", *named]) == 2  # now it holds a run: starting again is refused
    assert "already holds a run; resume it with --resume" in capsys.readouterr().err


def test_stale_temporary_checkpoints_are_removed_when_a_run_resumes(run: Path) -> None:
    stale = run / "checkpoints" / ".last.pt.99999.tmp"
    stale.write_bytes(b"a write that never finished")
    assert main(["train", "--resume", str(run), "--set", "output.report=false"]) == 0
    assert not stale.exists()


def test_ctrl_c_stops_after_the_step_with_a_checkpoint_and_says_how_to_continue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    advance = Trainer.advance

    def advance_then_ctrl_c(self: Trainer) -> None:
        advance(self)
        if self.step == 3 and not self.resume:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(Trainer, "advance", advance_then_ctrl_c)
    values = _sets([*FAST, "train.steps=6", "train.checkpoint_every=0", f"output.dir={tmp_path}"])
    assert main(["train", *values]) == 130
    (folder,) = tmp_path.glob("demo-*")
    err = capsys.readouterr().err
    assert "stopping after this step with a checkpoint (Ctrl-C again to stop now)" in err
    last = folder / "checkpoints" / "last.pt"
    assert (
        f"dmlkit: interrupted at step 3; {last} holds step 3; continue with: "
        f"dmlkit train --resume {folder}"
    ) in err
    assert load_checkpoint(last)["step"] == 3
    assert main(["train", "--resume", str(folder)]) == 0
    assert json.loads((folder / "metrics.json").read_text())["steps"] == 6


def test_the_console_shows_embedding_progress_and_every_evaluation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(extract, "LOG_INTERVAL_S", 0.0)  # every tenth, also for tiny splits
    values = _sets([*FAST, "train.progress=true", f"output.dir={tmp_path}"])
    assert main(["train", *values]) == 0
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith("embedding test (before training) ") for line in err)
    for when in ("before training test", "step 2 val", "step 2 test", "step 4 val"):
        (line,) = [line for line in err if line.startswith(f"{when}: ")]
        assert "map@r " in line and "recall@1 " in line
    metrics = json.loads(next(tmp_path.glob("demo-*/metrics.json")).read_text())
    (final,) = [line for line in err if line.startswith("step 4 test: ")]
    assert f"map@r {100 * metrics['final']['map@r']:.2f}" in final
