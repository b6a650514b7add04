"""Embedding extraction: order, dtypes, eval mode restored, no gradients, bad loaders."""

from __future__ import annotations

import pytest
import torch

from dmlkit.evaluation import extract, extract_embeddings


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Dropout())


def test_concatenates_in_order_in_eval_mode_and_restores_the_mode(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(extract, "LOG_INTERVAL_S", 0.0)
    model = _model().train()
    data = [
        (torch.randn(5, 4), torch.arange(5)),
        (torch.randn(2, 4), torch.tensor([7, 8]), "extra item"),
    ]
    emb, labels = extract_embeddings(model, data, progress="embedding test")
    assert emb.shape == (7, 3) and emb.dtype == torch.float32 and not emb.requires_grad
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 1, 2, 3, 4, 7, 8]
    assert model.training  # train mode restored
    model.eval()
    expected = torch.cat([model(data[0][0]), model(data[1][0])])
    torch.testing.assert_close(emb, expected)  # eval mode: BN running stats, no dropout
    assert "embedding test 2/2 batches" in capsys.readouterr().err
    model.eval()
    extract_embeddings(model, data)
    assert not model.training  # eval mode kept
    monkeypatch.setattr(extract, "LOG_INTERVAL_S", 3600.0)
    extract_embeddings(model, data, progress="embedding test")
    assert capsys.readouterr().err == ""  # a short embedding stays quiet in a log


def test_mode_is_restored_when_the_model_fails() -> None:
    model = _model().train()
    with pytest.raises(RuntimeError):
        extract_embeddings(model, [(torch.randn(2, 5), torch.arange(2))])  # wrong width
    assert model.training


def test_bad_loaders() -> None:
    model = _model()
    with pytest.raises(ValueError, match="at least one batch"):
        extract_embeddings(model, [])
    with pytest.raises(TypeError, match=r"batches \(images, labels, ...\), got Tensor"):
        extract_embeddings(model, [torch.randn(2, 4)])
