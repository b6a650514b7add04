"""Query/gallery evaluation inside a run: a test split with a query mask (the glyph style shift)
reports its queries against its gallery beside the leave-one-out metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dmlkit.config import EvalConfig, load_config
from dmlkit.data.fonts import distinct_faces, font_files
from dmlkit.data.glyphs import FACE_GROUPS, FONT_DIR, held_out_faces
from dmlkit.evaluation import evaluate
from dmlkit.training import Trainer
from dmlkit.training.evaluate import score

ROOT = Path(__file__).resolve().parents[2]


def test_query_gallery_metrics_are_the_queries_against_the_gallery() -> None:
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(30, 4, generator=g)
    labels = torch.arange(6).repeat_interleave(5)
    query = torch.arange(30) % 3 == 0
    config = EvalConfig(metrics=["recall", "map@r", "precision@1"], ks=[1, 2])
    metrics = score(emb, labels, config, 0, query)
    loo = evaluate(emb, labels, metrics=config.metrics, ks=config.ks).to_dict()
    qg = evaluate(
        emb[query], labels[query], emb[~query], labels[~query], metrics=config.metrics, ks=[1, 2]
    ).to_dict()
    assert {k: metrics[k] for k in loo} == loo
    assert {k: metrics[f"query_gallery/{k}"] for k in qg} == qg
    assert metrics["query_gallery/num_queries"] == 10
    assert score(emb, labels, config, 0) == loo
    with pytest.raises(ValueError, match="query_mask"):
        score(emb, labels, config, 0, torch.ones(30, dtype=torch.bool))


@pytest.mark.filterwarnings("ignore:glyphs. skipped")  # some installed faces fail to render
def test_style_shift_run_reports_the_held_out_faces_against_the_others(tmp_path: Path) -> None:
    renderers, _ = distinct_faces(font_files(FONT_DIR), 16)
    names = np.array([r.face.name for r in renderers])
    if len(names) < 2:
        pytest.skip(f"fewer than 2 CJK font faces under {FONT_DIR}")
    try:
        held_out_faces(names, "serif")
    except ValueError:
        pytest.skip(f"the installed faces are not split by {FACE_GROUPS['serif']}")
    tiny = [
        "data.options.num_chars=12",
        "data.options.image_size=16",
        "data.options.holdout_faces=serif",
        "data.val_classes=2",
        "data.batch_size=16",
        "model.options.widths=[4, 8]",
        "model.embedding_dim=8",
        "train.steps=2",
        "train.eval_every=2",
        "train.progress=false",
        "schedule.warmup_steps=0",
        "eval.ks=[1]",
        "eval.metrics=[recall, map@r]",
        "output.report=false",
        f"output.dir={tmp_path}",
    ]
    config = load_config(ROOT / "configs" / "glyphs" / "ms.yaml", tiny)
    trainer = Trainer(config, tmp_path / "run")
    metrics = trainer.fit()
    for when in ("final", "best"):
        assert 0.0 < metrics[when]["query_gallery/map@r"] <= 1.0
        assert 0.0 < metrics[when]["map@r"] <= 1.0
    assert "query_gallery/map@r" not in metrics["best_val"]
    saved = np.load(tmp_path / "run" / "embeddings" / "test.npz")
    assert np.array_equal(saved["query"], trainer.splits.test.query_mask)
    emb, labels, query = (torch.from_numpy(saved[k]) for k in ("emb", "labels", "query"))
    expected = evaluate(
        emb[query], labels[query], emb[~query], labels[~query], metrics=["map@r"], ks=[1]
    )
    assert metrics["best"]["query_gallery/map@r"] == pytest.approx(expected.to_dict()["map@r"])
