"""The run report on synthetic run folders: files, page content, retrieval marks, notes for
missing parts, rebuilding the test split, and a real render in headless Chromium."""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from dmlkit.reporting import build_report
from dmlkit.reporting.figures import (
    CORRECT,
    QUERY,
    WRONG,
    png_bytes,
    retrieval_figure,
    trailing_mean,
)
from dmlkit.reporting.fonts import label_fonts
from dmlkit.reporting.neighbours import retrieve
from dmlkit.reporting.page import metrics_table
from dmlkit.reporting.run import read_log
from dmlkit.training.run_metrics import RunMetrics

FIGURES = ("curves.png", "recall_at_k.png", "embedding_map.png", "retrieval.png")
CHROMIUM = "/usr/bin/chromium"


class FakeDataset:
    """Images with one colour and one bar position per class, plus ``labels`` and names."""

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels
        self.class_names = [f"shape {c}" for c in range(int(labels.max()) + 1)]

    def image(self, i: int) -> Image.Image:
        c = int(self.labels[i])
        pixels = np.full((24, 24, 3), 235, dtype=np.uint8)
        pixels[:, 3 * c : 3 * c + 6] = (40 * c % 256, 90, 200 - 20 * c)
        pixels[i % 24, :] = 0
        return Image.fromarray(pixels)


def _metrics(before: float, final: float) -> dict[str, float]:
    return {
        "recall@1": final, "recall@2": min(1.0, final + 0.1), "recall@4": min(1.0, final + 0.15),
        "map@r": final / 2, "nmi": final - 0.05, "num_queries": 60, "num_excluded_queries": 0,
    } if final else {}  # fmt: skip


def make_run(
    root: Path, n: int = 60, classes: int = 6, embeddings: bool = True, log: bool = True
) -> tuple[Path, np.ndarray]:
    """A run folder as the trainer writes it: clustered embeddings (one class mislabelled
    half of the time, so some neighbours are wrong), a fake log, metrics and config."""
    run = root / "run-1"
    run.mkdir()
    rng = np.random.default_rng(0)
    labels = np.arange(n) % classes
    centres = rng.normal(size=(classes, 16))
    emb = centres[labels] + 0.6 * rng.normal(size=(n, 16))
    emb[labels == 0] = centres[1] + 0.6 * rng.normal(size=((labels == 0).sum(), 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    config = {"data": {"name": "fake", "root": None, "options": {}},
              "model": {"name": "small_cnn", "embedding_dim": 16}, "loss": {"name": "ms"},
              "eval": {"similarity": "cosine"}}  # fmt: skip
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    before = {k: v - 0.3 if k.startswith(("recall", "map", "nmi")) else v
              for k, v in _metrics(0, 0.8).items()}  # fmt: skip
    metrics = {"before": before, "final": _metrics(0, 0.8), "best": _metrics(0, 0.8125),
               "best_step": 40, "selected_on": "val", "selection_metric": "map@r",
               "dataset": "fake", "ks": [1, 2, 4], "steps": 60, "train_time_s": 12.0,
               "images_per_s": 300.0}  # fmt: skip
    (run / "metrics.json").write_text(json.dumps(metrics))
    if log:
        rows = [{"kind": "train", "step": s, "epoch": 0, "loss": 1 / s if s != 30 else "nan",
                 "lr": 1e-3, "images_per_s": 100.0} for s in range(1, 61)]  # fmt: skip
        for step in (0, 20, 40, 60):
            for split in ("val", "test") if step else ("test",):
                m = _metrics(0, 0.5 + step / 200)
                rows.append({"kind": "eval", "step": step, "epoch": 0, "split": split, **m})
        (run / "log.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    if embeddings:
        (run / "embeddings").mkdir()
        np.savez(run / "embeddings" / "test.npz", emb=emb.astype(np.float32),
                 labels=labels.astype(np.int64), index=np.arange(n, dtype=np.int64))  # fmt: skip
    return run, labels


def _data_uris(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One full report (every figure) shared by the page checks and the browser render."""
    run, labels = make_run(tmp_path_factory.mktemp("report"))
    index = build_report(run, dataset=FakeDataset(labels), top_k=4, num_queries=5)
    assert index == run / "report" / "index.html"
    return index


def test_report_files_page_and_table(report: Path) -> None:
    run, index = report.parent.parent, report
    pngs = [(run / "report" / name).read_bytes() for name in FIGURES]
    for name in FIGURES:
        with Image.open(run / "report" / name) as img:
            assert img.format == "PNG" and min(img.size) > 100, name
    page = index.read_text()
    assert _data_uris(page) == pngs  # every figure embedded, in order, byte-identical
    assert "http://" not in page and "https://" not in page  # self-contained
    assert re.search(r"<td>recall@1</td><td>50\.00</td><td>80\.00</td><td>81\.25</td>"
                     r'<td class="up">\+30\.00</td>', page)  # fmt: skip
    assert "<td>num_queries</td><td>60</td>" in page and "best (step 40)" in page
    assert "small_cnn" in page and "similarity: cosine" in page  # summary and config
    assert "Notes" not in page


def test_retrieval_is_the_exact_leave_one_out_ranking() -> None:
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(30, 5)).astype(np.float32)
    emb[7] = emb[4]  # an exact duplicate: it must be found, the query itself must not
    labels = rng.integers(0, 3, size=30)
    result = retrieve(emb, labels, num_queries=6, top_k=4, seed=1)
    x = torch.from_numpy(emb).double()
    x = x / x.norm(dim=1, keepdim=True)
    for row, q in enumerate(result.queries):
        sims = [(float(x[q] @ x[j]), j) for j in range(30) if j != q]
        order = [j for _, j in sorted(sims, key=lambda t: (-t[0], t[1]))[:4]]
        assert result.neighbours[row].tolist() == order
        np.testing.assert_allclose(
            result.scores[row], [float(x[q] @ x[j]) for j in order], atol=1e-6
        )
        assert result.correct[row].tolist() == [labels[j] == labels[q] for j in order]
    assert len(set(result.queries.tolist())) == 6
    if 4 in result.queries:
        assert result.neighbours[list(result.queries).index(4), 0] == 7
    same = retrieve(emb, labels, 6, 4, seed=1)
    assert np.array_equal(same.neighbours, result.neighbours)
    assert not np.array_equal(retrieve(emb, labels, 6, 4, seed=2).queries, result.queries)


def test_grid_frames_mark_correct_and_wrong_neighbours() -> None:
    from matplotlib.colors import to_hex

    labels = np.array([0, 0, 1, 1, 0, 1])
    emb = np.array([[1, 0], [0.9, 0.1], [0.8, 0.2], [0, 1], [0.1, 0.9], [0.2, 0.8]], np.float32)
    result = retrieve(emb, labels, num_queries=6, top_k=3, seed=0)
    assert result.correct.any() and not result.correct.all()
    fig = retrieval_figure(result, labels, FakeDataset(labels).image, str, ["sans-serif"])
    axes = np.array(fig.axes).reshape(6, 4)
    for r in range(6):
        assert to_hex(axes[r, 0].spines["top"].get_edgecolor()) == QUERY
        for j in range(3):
            expected = CORRECT if result.correct[r, j] else WRONG
            assert to_hex(axes[r, j + 1].spines["left"].get_edgecolor()) == expected


def test_cjk_class_names_are_drawn_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    import matplotlib.font_manager as fm

    names = ["中", "國", "字", "a"]
    fonts = label_fonts(names)
    has_cjk = any(
        "CJK" in e.name or "WenQuanYi" in e.name or "Gothic" in e.name
        for e in fm.fontManager.ttflist
    )
    if has_cjk:  # the glyph fonts are installed: a second family draws the ideographs
        assert len(fonts.families) >= 2 and fonts.missing == frozenset()
        assert fonts.printable("中 a") == "中 a"
    else:  # no font has them: code points instead of empty boxes
        assert fonts.missing == frozenset("中國字")
        assert fonts.printable("中 a") == "U+4E2D a"
    assert label_fonts(["abc"]).families == fonts.families[:1]  # Latin needs no second font
    labels = np.array([0, 0, 1, 1, 2, 2])
    emb = np.array([[1, 0], [0.9, 0.1], [0.8, 0.2], [0, 1], [0.1, 0.9], [0.2, 0.8]], np.float32)
    result = retrieve(emb, labels, num_queries=3, top_k=2, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = retrieval_figure(
            result, labels, FakeDataset(labels).image,
            lambda c: fonts.printable(names[c]), fonts.families,
        )  # fmt: skip
        png_bytes(fig)
    assert not [r for r in caplog.records if "missing from font" in r.getMessage()]


def test_missing_parts_are_left_out_with_notes(tmp_path: Path) -> None:
    run, _ = make_run(tmp_path, n=30, embeddings=False, log=False)
    page = build_report(run).read_text()
    assert (run / "report" / "recall_at_k.png").is_file()
    for name in ("curves.png", "embedding_map.png", "retrieval.png"):
        assert not (run / "report" / name).exists()
    assert "log.jsonl is missing" in page and "embeddings/test.npz is missing" in page
    assert len(_data_uris(page)) == 1


def test_a_dataset_that_does_not_match_is_refused_with_a_note(tmp_path: Path) -> None:
    run, labels = make_run(tmp_path, n=30)
    page = build_report(run, dataset=FakeDataset((labels + 1) % 6)).read_text()
    assert "labels differ from the saved embeddings" in page
    assert not (run / "report" / "retrieval.png").exists()
    assert (run / "report" / "embedding_map.png").is_file()


def test_unbuildable_config_gives_a_note(tmp_path: Path) -> None:
    run, _ = make_run(tmp_path, n=30)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"] = {"name": "cub", "root": str(tmp_path / "no-cub-here")}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    page = build_report(run).read_text()
    assert "could not be rebuilt from config.yaml" in page
    assert not (run / "report" / "retrieval.png").exists()


def test_the_test_split_is_rebuilt_from_the_config(tmp_path: Path) -> None:
    from dmlkit.config import config_to_dict, load_config
    from dmlkit.training.build import build_split

    config = load_config(None)  # the embedded digits demo: offline data
    test = build_split(config.data, "test", train=False)
    run, _ = make_run(tmp_path, log=False)
    (run / "config.yaml").write_text(yaml.safe_dump(config_to_dict(config)))
    n = 40
    rng = np.random.default_rng(0)
    np.savez(run / "embeddings" / "test.npz", emb=rng.normal(size=(n, 8)).astype(np.float32),
             labels=test.labels[:n], index=np.arange(n))  # fmt: skip
    build_report(run, top_k=3, num_queries=2)
    with Image.open(run / "report" / "retrieval.png") as img:
        assert img.size[1] > 200


def test_log_reading_and_table_edge_cases(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text('{"kind": "train", "step": 1, "loss": "nan"}\n\n{"kind": "eval", "step": 1}\n')
    train, evals = read_log(log)
    assert math.isnan(train[0]["loss"]) and evals == [{"kind": "eval", "step": 1}]
    log.write_text('{"kind": "train", "step": 1}\n{"kind": "tr')
    with pytest.raises(ValueError, match=r"log\.jsonl:2: not a JSON object"):
        read_log(log)
    table = metrics_table(RunMetrics(final={"map@r": 0.5}, best={"map@r": math.nan}), counts=())
    assert "<td>map@r</td><td>50.00</td><td>nan</td>" in table and "before" not in table
    np.testing.assert_allclose(trailing_mean(np.array([2.0, 4.0, math.nan, 8.0]), 2),
                               [2.0, 3.0, 4.0, 8.0])  # fmt: skip


def test_bad_arguments_and_folders(tmp_path: Path) -> None:
    run, _ = make_run(tmp_path)
    with pytest.raises(ValueError, match="top_k: expected a positive int"):
        build_report(run, top_k=0)
    with pytest.raises(FileNotFoundError, match=r"metrics\.json"):
        build_report(tmp_path / "empty")


def test_missing_matplotlib_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, _ = make_run(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install dmlkit\[plots\]"):
        build_report(run)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="headless Chromium is not installed")
def test_the_page_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    index = report
    shot = tmp_path / "shot.png"
    command = [
        shutil.which("chromium") or CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
        "--window-size=1200,2000", index.resolve().as_uri(),
    ]  # fmt: skip
    subprocess.run(command, check=True, timeout=120, capture_output=True)
    with Image.open(shot) as img:
        pixels = np.asarray(img.convert("L"), dtype=np.float64)
    assert pixels.shape == (2000, 1200)
    assert pixels.std() > 20  # text, tables and figures, not a blank page
    assert (pixels < 128).mean() > 0.01
