"""kNN: exactness against brute force, chunking invariance, memory bound, self removal, faiss."""

from __future__ import annotations

import pytest
import torch

from benchmarks.common import peak_memory_bytes
from dmlkit.evaluation import kmeans, knn, rank_references
from dmlkit.evaluation.knn import chunk_rows


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
def test_knn_matches_brute_force(metric: str) -> None:
    g = torch.Generator().manual_seed(0)
    q, r = torch.randn(50, 8, generator=g), torch.randn(80, 8, generator=g)
    idx, val = knn(q, r, 5, similarity=metric)
    if metric == "cosine":
        s = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(r, dim=1).T
    elif metric == "dot":
        s = q @ r.T
    else:
        s = -(torch.cdist(q, r) ** 2)
    expect_val, expect_idx = torch.topk(s, 5, dim=1)
    assert torch.equal(idx, expect_idx)
    torch.testing.assert_close(val, expect_val, rtol=1e-4, atol=1e-4)


def test_chunked_equals_unchunked_and_self_removed() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, 16, generator=g)
    x[10] = x[20]  # a duplicate: must stay retrievable
    full = knn(x, None, 7)
    for budget in (8 * 300 * 1, 8 * 300 * 13, 1 << 20):
        chunked = knn(x, None, 7, memory_bytes=budget)
        assert torch.equal(chunked[0], full[0])  # identical neighbours and order
        # scores agree to float rounding (BLAS blocks differ with the chunk shape)
        torch.testing.assert_close(chunked[1], full[1], rtol=1e-6, atol=1e-6)
    assert not (full[0] == torch.arange(300)[:, None]).any()
    assert full[0][10, 0] == 20 and full[0][20, 0] == 10


@pytest.mark.parametrize("name", ["knn", "rank_references", "kmeans"])
def test_scratch_memory_stays_under_the_bound(name: str) -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1500, 16, generator=g)
    y = torch.randint(0, 300, (1500,), generator=g)  # random labels: many full-ranking rows
    runs = {
        "knn": lambda budget: knn(x, None, 10, memory_bytes=budget),
        "rank_references": lambda budget: rank_references(
            x, y, None, None, 10, memory_bytes=budget
        ),
        "kmeans": lambda budget: kmeans(x, 600, max_iter=5, memory_bytes=budget),
    }
    budget = 1 << 20  # 1 MiB of scratch for a 1500 x 1500 problem (9 MB unchunked)
    assert chunk_rows(1500, budget) * 1500 * 8 <= budget
    inputs_and_outputs = 2 * x.numel() * 4 + 1500 * 10 * 16  # normalised copy, norms, results
    assert peak_memory_bytes(lambda: runs[name](budget)) < budget + inputs_and_outputs
    # without the bound the same call takes several times more: the bound is what limits it
    assert peak_memory_bytes(lambda: runs[name](1 << 40)) > 3 * budget


def test_faiss_backend_agrees() -> None:
    pytest.importorskip("faiss")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(200, 16, generator=g)
    for metric in ("cosine", "euclidean"):
        a, _ = knn(x, None, 5, similarity=metric)
        b, _ = knn(x, None, 5, similarity=metric, backend="faiss")
        assert torch.equal(a, b)


def test_faiss_missing_message(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def fake(name: str, *args: object, **kwargs: object):
        if name == "faiss":
            raise ImportError("no faiss")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match=r"pip install 'dmlkit\[faiss\]'"):
        knn(torch.randn(5, 3), None, 2, backend="faiss")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="k: expected 1 <= k <= 4"):
        knn(torch.randn(5, 3), None, 5)
    with pytest.raises(ValueError, match="similarity: expected one of"):
        knn(torch.randn(5, 3), None, 1, similarity="manhattan")
    with pytest.raises(ValueError, match="backend"):
        knn(torch.randn(5, 3), None, 1, backend="annoy")
