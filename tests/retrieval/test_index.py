"""EmbeddingIndex: build -> save -> load -> search equals the evaluation engine's exact kNN;
faiss flat equals exact, IVF and HNSW find most of it; add / remove; the on-disk format; errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dmlkit.core.serialization import CheckpointError, read_state
from dmlkit.evaluation import knn
from dmlkit.retrieval import EmbeddingIndex


def clustered(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(20, d, generator=g)[torch.arange(n) % 20] + 0.5 * torch.randn(
        n, d, generator=g
    )


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
def test_round_trip_search_equals_exact_knn(metric: str, tmp_path: Path) -> None:
    data, queries = clustered(500, 12, 0), clustered(40, 12, 1)
    index = EmbeddingIndex(12, metric)
    ids = index.add(data[:300], paths=[f"img{i}.png" for i in range(300)])
    index.add(data[300:], classes=[f"c{i % 3}" for i in range(200)])
    assert ids.tolist() == list(range(300)) and len(index) == 500
    index.save(tmp_path / "items.index")
    loaded = EmbeddingIndex.load(tmp_path / "items.index")
    rows, scores = loaded.search(queries, k=7)
    ref_rows, ref_scores = knn(queries, data, k=7, similarity=metric)
    assert torch.equal(rows, ref_rows)
    assert torch.allclose(scores, ref_scores, atol=1e-5)
    assert loaded.paths[5] == "img5.png" and loaded.classes[301] == "c1" and loaded.paths[301] == ""
    assert torch.equal(loaded.ids, index.ids) and loaded.metric == metric


def test_faiss_flat_equals_exact_and_approximate_indexes_find_most(tmp_path: Path) -> None:
    data, queries = clustered(2000, 16, 2), clustered(100, 16, 3)
    exact = EmbeddingIndex(16)
    exact.add(data)
    truth, _ = exact.search(queries, 10)
    for backend, options, floor in (
        ("flat", {}, 1.0),
        ("ivf", {"nlist": 32, "nprobe": 8}, 0.9),
        ("hnsw", {"hnsw_m": 16, "ef_search": 64}, 0.9),
    ):
        index = EmbeddingIndex(16, backend=backend, options=options)
        index.add(data[:1500])
        index.add(data[1500:])
        index.save(tmp_path / f"{backend}.index")
        rows, _ = EmbeddingIndex.load(tmp_path / f"{backend}.index").search(queries, 10)
        recall = (
            sum(len(set(a) & set(b)) for a, b in zip(rows.tolist(), truth.tolist(), strict=True))
            / truth.numel()
        )
        assert recall >= floor, (backend, recall)
        if backend == "flat":
            assert torch.equal(rows, truth)


@pytest.mark.parametrize("backend", ["exact", "flat", "ivf", "hnsw"])
def test_remove_then_search_skips_the_removed_items(backend: str) -> None:
    data = clustered(300, 8, 4)
    options = {"nlist": 8, "nprobe": 8} if backend == "ivf" else {}
    index = EmbeddingIndex(8, backend=backend, options=options)
    index.add(data, ids=range(1000, 1300))
    assert index.remove([1000, 1005, 1299]) == 3 and len(index) == 297
    rows, _ = index.search(data[:1], 3)
    found = index.ids[rows[0]].tolist()
    assert 1000 not in found and 1005 not in found
    keep = [i for i in range(300) if i not in (0, 5, 299)]
    ref, _ = knn(data[:1], data[keep], k=3)
    if backend in ("exact", "flat"):
        assert found == [1000 + keep[r] for r in ref[0].tolist()]
    more = index.add(data[:2])
    assert more.tolist() == [1299, 1300]  # numbered on from the largest id left


def test_the_file_holds_only_tensors_and_plain_values(tmp_path: Path) -> None:
    index = EmbeddingIndex(4, backend="hnsw")
    index.add(torch.randn(10, 4), thumbnails=[bytes([i]) * (i + 1) for i in range(10)])
    index.info["note"] = "kept"
    index.save(tmp_path / "a.index")
    kind, state = read_state(tmp_path / "a.index")  # weights_only=True
    assert kind == "index" and state["faiss"].dtype == torch.uint8
    loaded = EmbeddingIndex.load(tmp_path / "a.index")
    assert loaded.thumbnails[3] == bytes([3]) * 4 and loaded.info == {"note": "kept"}


def test_bad_inputs_give_clear_errors(tmp_path: Path) -> None:
    index = EmbeddingIndex(8)
    with pytest.raises(ValueError, match="the index is empty; add items before searching"):
        index.search(torch.randn(1, 8), 3)
    index.add(torch.randn(5, 8))
    with pytest.raises(ValueError, match=r"expected dimension 8 \(the index's\), got 6"):
        index.search(torch.randn(1, 6), 3)
    with pytest.raises(ValueError, match=r"expected dimension 8 \(the index's\), got 6"):
        index.add(torch.randn(2, 6))
    with pytest.raises(ValueError, match="ids already used"):
        index.add(torch.randn(1, 8), ids=[2])
    with pytest.raises(KeyError, match=r"no item with id \[42\]"):
        index.remove([42])
    with pytest.raises(ValueError, match=r"finite"):
        index.add(torch.full((1, 8), float("nan")))
    assert index.search(torch.randn(2, 8), k=50)[0].shape == (2, 5)  # k cut to the items
    path = index.save(tmp_path / "x.index")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "corrupt.index").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        EmbeddingIndex.load(tmp_path / "corrupt.index")
    (tmp_path / "text.index").write_text("not an index\n")
    with pytest.raises(CheckpointError, match=r"not a torch\.save file"):
        EmbeddingIndex.load(tmp_path / "text.index")
    with pytest.raises(ValueError, match="backend: expected one of"):
        EmbeddingIndex(8, backend="annoy")
