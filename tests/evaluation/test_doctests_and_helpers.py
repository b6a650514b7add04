"""Docstring examples run as tests; k-means and embedding extraction behaviour."""

from __future__ import annotations

import doctest

import pytest
import torch

from dmlkit.evaluation import clustering, extract_embeddings, kmeans, retrieval


@pytest.mark.parametrize("module", [retrieval, clustering])
def test_docstring_examples(module: object) -> None:
    failures, attempted = doctest.testmod(module, raise_on_error=False)  # type: ignore[arg-type]
    assert failures == 0 and attempted >= 4


def _blobs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.eye(6, 8) * 5
    y = torch.arange(300) % 6
    return centers[y] + 0.3 * torch.randn(300, 8, generator=g), y


@pytest.mark.parametrize(("init", "n_init"), [("k-means++", 1), ("auto", 1), ("random", 10)])
def test_kmeans_recovers_separated_blobs_and_is_seeded(init: str, n_init: int) -> None:
    # random seeding can put two centers in one blob: it needs restarts, k-means++ does not
    x, y = _blobs()
    a = kmeans(x, 6, seed=1, n_init=n_init, init=init)
    b = kmeans(x, 6, seed=1, n_init=n_init, init=init)
    assert torch.equal(a, b)
    assert clustering.nmi(y, a) == pytest.approx(1.0)


def test_kmeans_arguments() -> None:
    x, _ = _blobs()
    with pytest.raises(ValueError, match="k: expected 1 <= k <= N=300"):
        kmeans(x, 301)
    with pytest.raises(ValueError, match="init"):
        kmeans(x, 3, init="forgy")
    with pytest.raises(ValueError, match="backend"):
        kmeans(x, 3, backend="cuml")
    # chunked assignment gives the same clustering as one block
    torch.testing.assert_close(kmeans(x, 6, memory_bytes=8 * 6 * 7), kmeans(x, 6))


def test_extract_embeddings_restores_mode_and_concatenates() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    model.train()
    data = [
        (torch.randn(5, 4), torch.arange(5)),
        (torch.randn(2, 4), torch.tensor([7, 8]), "extra"),
    ]
    emb, labels = extract_embeddings(model, data, progress=True)
    assert emb.shape == (7, 3) and emb.dtype == torch.float32
    assert labels.tolist() == [0, 1, 2, 3, 4, 7, 8]
    assert model.training  # mode restored
    model.eval()
    expected = model(data[0][0])
    torch.testing.assert_close(emb[:5], expected)
    with pytest.raises(ValueError, match="at least one batch"):
        extract_embeddings(model, [])
