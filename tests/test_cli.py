"""The dmlkit command: the demo end to end (few steps), eval / embed / report / list, errors."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import dmlkit.reporting
from dmlkit.cli import main
from dmlkit.commands.train import ZERO_SHOT_HINT

FAST = [
    "--set", "train.steps=8",
    "--set", "train.eval_every=4",
    "--set", "train.checkpoint_every=4",
    "--set", "data.image_size=8",
    "--set", "data.options.test_fraction=0.2",
    "--set", "model.options.widths=[8, 16]",
    "--set", "model.embedding_dim=16",
    "--set", "train.progress=false",
    "--set", "train.num_threads=1",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    """``train.num_threads`` sets the process-wide torch thread count; give it back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``dmlkit train`` (the embedded demo) with a reduced step count and without the report
    (built once, by the report command's test); returns (run folder, stdout)."""
    tmp = tmp_path_factory.mktemp("cli")
    out = io.StringIO()
    threads = torch.get_num_threads()
    with contextlib.redirect_stdout(out):
        status = main(
            ["train", *FAST, "--set", f"output.dir={tmp}", "--set", "output.report=false"]
        )
    torch.set_num_threads(threads)
    assert status == 0
    (run,) = sorted(tmp.glob("demo-*"))
    return run, out.getvalue()


def test_demo_prints_the_table_the_note_and_writes_the_run(demo_run: tuple[Path, str]) -> None:
    run, stdout = demo_run
    assert "training digits" in stdout and "small_cnn, loss ms, 8 steps" in stdout
    assert ZERO_SHOT_HINT in stdout
    lines = stdout.splitlines()
    header = next(line for line in lines if line.startswith("metric"))
    assert "before" in header and "best (step" in header and "on val)" in header
    assert "final (step 8)" in header
    rows = {line.split()[0] for line in lines[lines.index(header) + 2 :] if line[:1].isalpha()}
    assert {"recall@1", "recall@2", "recall@4", "precision@1", "map@r", "nmi"} <= rows
    assert f"run folder: {run}" in stdout
    for name in ("config.yaml", "log.jsonl", "log.csv", "metrics.json", "embeddings/test.npz",
                 "checkpoints/last.pt", "checkpoints/best.pt"):  # fmt: skip
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    table_map_r = next(line for line in lines if line.startswith("map@r")).split()
    assert float(table_map_r[1]) == pytest.approx(100 * metrics["before"]["map@r"], abs=0.006)
    assert float(table_map_r[-1]) == pytest.approx(100 * metrics["final"]["map@r"], abs=0.006)


def test_eval_of_best_checkpoint_reproduces_the_best_metrics(
    demo_run: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, _ = demo_run
    out = tmp_path / "m.json"
    assert main(["eval", str(run / "checkpoints" / "best.pt"), "--json", str(out),
                 "--set", "train.progress=false"]) == 0  # fmt: skip
    metrics = json.loads((run / "metrics.json").read_text())
    assert json.loads(out.read_text()) == metrics["best"]
    printed = capsys.readouterr().out
    assert printed.startswith("digits test:") and "map@r" in printed


def test_embed_writes_the_selected_models_embeddings(
    demo_run: tuple[Path, str], tmp_path: Path
) -> None:
    run, _ = demo_run
    best = str(run / "checkpoints" / "best.pt")
    assert (
        main(["embed", best, "--out", str(tmp_path / "e.npy"), "--set", "train.progress=false"])
        == 0
    )
    assert (
        main(["embed", best, "--out", str(tmp_path / "e.npz"), "--set", "train.progress=false"])
        == 0
    )
    with np.load(run / "embeddings" / "test.npz") as saved:
        emb = np.load(tmp_path / "e.npy")
        assert emb.dtype == np.float32 and np.array_equal(emb, saved["emb"])
        assert np.array_equal(np.load(tmp_path / "e.labels.npy"), saved["labels"])
        with np.load(tmp_path / "e.npz") as npz:
            for key in ("emb", "labels", "index"):
                assert np.array_equal(npz[key], saved[key]), key


def test_train_builds_the_report_with_the_test_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[tuple[Path, Any]] = []

    def fake_report(run_dir: Path, dataset: Any = None) -> Path:
        calls.append((Path(run_dir), dataset))
        return Path(run_dir) / "report" / "index.html"

    monkeypatch.setattr(dmlkit.reporting, "build_report", fake_report)
    argv = ["train", *FAST, "--set", "train.steps=2", "--set", "train.eval_every=0",
            "--set", "eval.before=false", "--set", f"output.dir={tmp_path}"]  # fmt: skip
    assert main(argv) == 0
    ((run_dir, dataset),) = calls
    assert run_dir.parent == tmp_path and run_dir.name.startswith("demo-")
    with np.load(run_dir / "embeddings" / "test.npz") as saved:
        assert np.array_equal(dataset.labels, saved["labels"])
    assert f"report: {run_dir / 'report' / 'index.html'}" in capsys.readouterr().out


@pytest.mark.slow
def test_report_command_builds_the_report(
    demo_run: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    run, _ = demo_run
    assert main(["report", str(run)]) == 0
    assert (run / "report").is_dir() and any((run / "report").iterdir())
    assert "report:" in capsys.readouterr().out


def test_list_names_the_registered_components(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "datasets:" in out and "digits" in out and "glyphs" in out
    assert "losses:" in out and "ms_official" in out
    # losses by family, one per line with the source it follows
    assert "  proxy:\n" in out and "\n    proxy_anchor " in out and "Kim et al. 2020" in out
    assert "regularizers (loss.regularizers" in out and "\n    regular_face " in out
    assert "models:" in out and "small_cnn" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--set", "optimizer.lrr=1"], "optimizer: unknown key(s) 'lrr'; valid keys:"),
        (["train", "--set", "optimizer.lr"], "expected KEY.PATH=VALUE"),
        (["train", "missing.yaml"], "config file not found: "),
        (["train", "--set", "loss.name=nope"], "unknown loss 'nope'; registered: "),
        (["train", "--set", "loss.name=vicreg"], "'vicreg' takes two augmented views of each item"),
        (
            ["train", "--set", "model.options.width=3"],
            "model.options: unknown option(s) ['width'] for model 'small_cnn'; accepted: "
            "heads, widths",
        ),
        (
            ["train", "--set", "data.options.foo=3"],
            "data.options: unknown option(s) ['foo'] for dataset 'digits'; accepted: holdout, "
            "test_fraction, val_fraction",
        ),
        (["eval", "missing.pt"], "no checkpoint: "),
        (["embed", "x.pt", "--out", "e.txt"], "--out: expected a .npy or .npz file name"),
        (["report", "."], "expected a finished run folder with metrics.json"),
    ],
)
def test_errors_are_one_clear_line(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("dmlkit: error: ") and message in err
    assert len(err.strip().splitlines()) == 1


def test_resume_of_a_finished_run_reprints_its_metrics(
    demo_run: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    run, stdout = demo_run
    assert main(["train", "--resume", str(run), "--set", "output.report=false"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("resuming digits")

    def table(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.startswith(("metric", "map@r", "nmi"))]

    assert table(out) == table(stdout)


def test_eval_and_embed_of_a_two_head_run_use_the_methods_views(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sharing = [
        "model.embedding_dim=24",
        "model.options.heads={discriminative: 16, shared: 8}",
        "loss.name=margin",
        "method.name=sharing",
        "method.options.shared_dim=8",
        "method.options.hidden_dim=16",
        "method.options.combinations={concat: {discriminative: 1.0, shared: 1.0}}",
        "eval.metrics=[recall, map@r]",
        "eval.ks=[1]",
        f"output.dir={tmp_path}",
        "output.report=false",
    ]
    args = [arg for value in sharing for arg in ("--set", value)]
    assert main(["train", *FAST, *args]) == 0
    (run,) = sorted(tmp_path.glob("demo-*"))
    best = str(run / "checkpoints" / "best.pt")
    out = tmp_path / "m.json"
    assert main(["eval", best, "--json", str(out), "--set", "train.progress=false"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    evaluated = json.loads(out.read_text())
    assert {"recall@1", "shared/map@r", "concat/map@r"} <= set(evaluated)
    assert evaluated == pytest.approx(metrics["best"], abs=1e-6)
    assert (
        main(["embed", best, "--out", str(tmp_path / "e.npy"), "--set", "train.progress=false"])
        == 0
    )
    emb = np.load(tmp_path / "e.npy")
    assert emb.shape[1] == 16  # the discriminative head, not the 24-d model output
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    capsys.readouterr()
