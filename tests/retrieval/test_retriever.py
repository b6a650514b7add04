"""Retriever: from a checkpoint, add images (paths, PIL, bytes) and a dataset split, search equals
the evaluation engine's kNN of the run's embeddings, save / load, thresholds, bad inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dmlkit.core.serialization import CheckpointError
from dmlkit.data import DMLDataset
from dmlkit.evaluation import knn
from dmlkit.retrieval import EmbeddingIndex, Retriever
from dmlkit.training.build import model_from_checkpoint
from dmlkit.training.evaluate import embed_dataset
from tests.retrieval.conftest import write_folder


def test_split_index_search_equals_exact_knn_of_the_run_embeddings(
    checkpoint: Path, test_split: DMLDataset, tmp_path: Path
) -> None:
    retriever = Retriever.from_checkpoint(checkpoint)
    retriever.add_dataset(test_split)
    retriever.save(tmp_path / "test.index")
    loaded = Retriever.load(tmp_path / "test.index")
    model, _ = model_from_checkpoint(checkpoint)
    emb, _ = embed_dataset(model, test_split, 64, torch.device("cpu"))
    queries = [test_split.image(i) for i in range(0, 60, 3)]
    hits = loaded.search(queries, k=5)
    ref_rows, ref_scores = knn(emb[0:60:3], emb, k=5)
    ids = test_split.item_ids
    assert [[h.id for h in row] for row in hits] == [
        [int(ids[r]) for r in row] for row in ref_rows.tolist()
    ]
    scores = torch.tensor([[h.score for h in row] for row in hits])
    assert torch.allclose(scores, ref_scores, atol=1e-5)
    first = hits[0][0]  # the query itself, with its class name and no file
    assert first.id == int(ids[0]) and first.score == pytest.approx(1.0, abs=1e-5)
    assert first.class_name == test_split.class_names[int(test_split.labels[0])]
    assert first.path == "" and first.match is None
    assert loaded.thumbnail(first.id).startswith(b"\x89PNG")


def test_paths_bytes_and_images_embed_alike(
    checkpoint: Path, test_split: DMLDataset, tmp_path: Path
) -> None:
    paths = write_folder(test_split, tmp_path / "imgs", 6, size=8)
    retriever = Retriever.from_checkpoint(checkpoint)
    ids = retriever.add(paths, classes=["x"] * 6)
    assert ids.tolist() == list(range(6)) and retriever.index.paths[2] == str(paths[2])
    as_bytes = [p.read_bytes() for p in paths]
    as_images = [test_split.image(i) for i in range(6)]
    a, b, c = retriever.embed(paths), retriever.embed(as_bytes), retriever.embed(as_images)
    assert torch.allclose(a, b) and torch.allclose(a, c, atol=1e-6)
    assert [h[0].id for h in retriever.search(as_bytes, k=1)] == list(range(6))
    assert (
        retriever.thumbnail(2) == retriever.thumbnail(2)
        and retriever.thumbnail(2)[:4] == b"\x89PNG"
    )


def test_threshold_marks_matches_and_survives_save(
    checkpoint: Path, test_split: DMLDataset, tmp_path: Path
) -> None:
    retriever = Retriever.from_checkpoint(checkpoint)
    retriever.add([test_split.image(i) for i in range(20)])
    hits = retriever.search([test_split.image(0)], k=20)[0]
    middle = hits[10].score
    retriever.set_threshold({"threshold": middle, "fmr_target": 1e-3})
    retriever.save(tmp_path / "t.index")
    marked = Retriever.load(tmp_path / "t.index").search([test_split.image(0)], k=20)[0]
    assert [h.match for h in marked] == [h.score >= middle for h in hits]
    assert any(h.match for h in marked) and not all(h.match for h in marked)


def test_bad_inputs_give_clear_errors(
    checkpoint: Path, test_split: DMLDataset, tmp_path: Path
) -> None:
    retriever = Retriever.from_checkpoint(checkpoint)
    with pytest.raises(ValueError, match="the index is empty"):
        retriever.search([test_split.image(0)])
    retriever.add([test_split.image(0)])
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ValueError, match=r"cannot decode image .*broken\.png"):
        retriever.search([tmp_path / "broken.png"])
    with pytest.raises(ValueError, match="cannot decode image upload: not an image"):
        retriever.search([b"plain text"])
    with pytest.raises(FileNotFoundError, match="image file not found"):
        retriever.search([tmp_path / "missing.png"])
    # an index of another dimension than the model
    other = EmbeddingIndex(retriever.index.dim + 3)
    with pytest.raises(ValueError, match=r"the model and the index do not belong together"):
        Retriever(retriever.bundle, other)
    retriever.save(tmp_path / "ok.index")
    state_index = EmbeddingIndex.load(tmp_path / "ok.index")
    state_index.info["model"]["embedding_dim"] = 99
    state_index.save(tmp_path / "mismatch.index")
    with pytest.raises(ValueError, match="dimension 16, but the model embeds in dimension 99"):
        Retriever.load(tmp_path / "mismatch.index")
    bare = EmbeddingIndex(4)
    bare.add(torch.randn(2, 4))
    bare.save(tmp_path / "bare.index")
    with pytest.raises(CheckpointError, match="an index without a model"):
        Retriever.load(tmp_path / "bare.index")
    with pytest.raises(CheckpointError, match="not an index"):
        Retriever.load(checkpoint)
