"""Approximate kNN (faiss IVF / HNSW): exhaustive settings give the exact lists, the neighbour
recall equals an explicit-loop count, and every approximate evaluation reports it."""

from __future__ import annotations

import pytest
import torch

from dmlkit.config import ConfigError, load_config
from dmlkit.evaluation import evaluate, knn, neighbour_recall_depths
from dmlkit.evaluation.approximate import (
    approximate_knn,
    check_options,
    exact_sample,
    neighbour_recall,
)
from dmlkit.training.evaluate import check_eval_config, metric_columns, score

pytest.importorskip("faiss", reason="approximate search uses faiss (the faiss extra)")

METRICS = ["recall", "precision@1", "r_precision", "map@r"]


def _clusters(n_classes: int = 40, per_class: int = 6, dim: int = 16, noise: float = 0.8):
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    emb = torch.randn(n_classes, dim, generator=g)[labels]
    return emb + noise * torch.randn(len(labels), dim, generator=g), labels


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("leave_one_out", [True, False])
def test_exhaustive_settings_give_the_exact_lists(metric: str, leave_one_out: bool) -> None:
    emb, _ = _clusters()
    query, ref = (emb, None) if leave_one_out else (emb[:50], emb[50:])
    exact_idx, exact_val = knn(query, ref, 5, metric)
    # IVF probing every cell is a flat search
    idx, val = approximate_knn(query, ref, 5, metric, "faiss_ivf", {"nlist": 4, "nprobe": 4})
    assert torch.equal(idx, exact_idx)
    torch.testing.assert_close(val, exact_val, rtol=1e-4, atol=1e-4)
    # HNSW with a candidate list as long as the collection finds every neighbour
    idx, _ = approximate_knn(query, ref, 5, metric, "faiss_hnsw", {"ef_search": 256})
    assert torch.equal(idx, exact_idx)
    if leave_one_out:
        assert not (idx == torch.arange(len(emb))[:, None]).any()


def test_neighbour_recall_is_the_mean_overlap_at_each_depth() -> None:
    approx = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    exact = torch.tensor([[3, 1, 0], [6, 4, 5], [9, 8, 7]])
    depth = torch.tensor([3, 1, 2])
    # row 0: {1, 2, 3} & {3, 1, 0} = 2 of 3; row 1: {4} & {6} = 0 of 1; row 2: {7, 8} & {9, 8}
    assert neighbour_recall(approx, exact, depth) == pytest.approx((2 / 3 + 0 + 1 / 2) / 3)
    assert neighbour_recall(exact, exact, depth) == 1.0
    with pytest.raises(ValueError, match=r"expected approx and exact \(S, K\) and depth \(S,\)"):
        neighbour_recall(approx, exact[:2], depth)


def test_exact_sample_drops_only_the_own_row() -> None:
    emb, _ = _clusters()
    sample = torch.tensor([0, 7, 100])
    assert torch.equal(exact_sample(emb, None, 4, "cosine", sample), knn(emb, None, 4)[0][sample])
    ref = emb[60:]
    assert torch.equal(exact_sample(emb, ref, 4, "cosine", sample), knn(emb[sample], ref, 4)[0])


def test_approximate_evaluation_reports_the_neighbour_recall_of_every_metric() -> None:
    emb, labels = _clusters()
    exact = evaluate(emb, labels, metrics=METRICS, ks=(1, 4), knn_backend="faiss")
    assert exact.neighbour_recall == {}
    # one probed cell of 8: lists miss neighbours; every query sampled
    options = {"nlist": 8, "nprobe": 1, "sample_queries": 10_000}
    result = evaluate(
        emb, labels, metrics=METRICS, ks=(1, 4), knn_backend="faiss_ivf", knn_options=options
    )
    out = result.to_dict()
    keys = ["knn_recall@1", "knn_recall@4", "knn_recall@R", "knn_recall_queries"]
    assert list(result.neighbour_recall) == keys == list(neighbour_recall_depths(METRICS, (1, 4)))
    assert out["knn_recall_queries"] == len(labels)
    # explicit loops: the approximate lists against exact lists, per query and depth
    k_list = 5  # max(ks) = 4 and R = 5 (6 per class, leave-one-out)
    approx = approximate_knn(emb, None, k_list, "cosine", "faiss_ivf", options)[0]
    exact_idx = knn(emb, None, k_list)[0]
    for key, depth in (("knn_recall@1", 1), ("knn_recall@4", 4), ("knn_recall@R", 5)):
        overlap = [
            len(set(approx[i, :depth].tolist()) & set(exact_idx[i, :depth].tolist())) / depth
            for i in range(len(labels))
        ]
        assert out[key] == pytest.approx(sum(overlap) / len(overlap))
    assert out["knn_recall@4"] < 1.0  # the setting really is approximate
    # the metrics are those of the approximate lists
    relevant = labels[approx] == labels[:, None]
    assert out["precision@1"] == pytest.approx(float(relevant[:, 0].float().mean()))


def test_approximate_errors_name_what_was_expected() -> None:
    emb, labels = _clusters()
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['nprobe'\] for 'faiss_hnsw'"):
        evaluate(emb, labels, knn_backend="faiss_hnsw", knn_options={"nprobe": 3})
    with pytest.raises(ValueError, match=r"knn_options\.nlist: expected a positive int, got 0"):
        check_options("faiss_ivf", {"nlist": 0})
    with pytest.raises(ValueError, match="only the approximate backends"):
        evaluate(emb, labels, knn_options={"nlist": 3})
    with pytest.raises(ValueError, match="'mrr' needs the full ranking; knn_backend='faiss_ivf'"):
        evaluate(emb, labels, metrics=["mrr"], knn_backend="faiss_ivf")
    with pytest.raises(ValueError, match="knn_backend: expected one of"):
        evaluate(emb, labels, knn_backend="annoy")
    with pytest.raises(ValueError, match=r"knn_options\.nlist: expected at most 240"):
        approximate_knn(emb, None, 3, backend="faiss_ivf", options={"nlist": 500})


def test_the_eval_section_reaches_approximate_search() -> None:
    config = load_config(
        None,
        [
            "eval.knn_backend=faiss_hnsw",
            "eval.knn_options={ef_search: 64}",
            "eval.metrics=[recall, map@r]",
            "eval.ks=[1, 2]",
        ],
    )
    check_eval_config(config.eval)
    columns = metric_columns(config.eval.metrics, config.eval.ks, config.eval.knn_backend)
    assert columns[4:] == ["knn_recall@2", "knn_recall@R", "knn_recall_queries", "num_queries",
                           "num_excluded_queries"]  # fmt: skip
    emb, labels = _clusters()
    metrics = score(emb, labels, config.eval, seed=0)
    assert list(metrics) == columns
    with pytest.raises(ConfigError, match=r"eval\.knn_backend: expected one of torch, faiss"):
        load_config(None, ["eval.knn_backend=annoy"])
    bad = load_config(None, ["eval.knn_options={m: 8}"])
    with pytest.raises(ValueError, match=r"eval\.knn_options: only the approximate backends"):
        check_eval_config(bad.eval)
