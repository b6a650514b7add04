"""Retrieval and clustering metrics: hand-computed cases, ties, duplicates, lone queries, multi-label."""

from __future__ import annotations

import pytest
import torch

from dmlkit.evaluation import (
    clustering_f1,
    evaluate,
    first_relevant_rank,
    map_at_k,
    map_at_r,
    mrr,
    precision_at_k,
    r_precision,
    recall_at_k,
)


def test_per_query_metrics_by_hand() -> None:
    rel = torch.tensor([[True, False, True, False], [False, True, True, True], [False] * 4])
    r = torch.tensor([2, 3, 1])
    first = first_relevant_rank(rel)
    assert first.tolist() == [0, 1, -1]
    assert recall_at_k(first, 1).tolist() == [1.0, 0.0, 0.0]
    assert recall_at_k(first, 2).tolist() == [1.0, 1.0, 0.0]
    assert precision_at_k(rel, 4).tolist() == [0.5, 0.75, 0.0]
    assert r_precision(rel, r).tolist() == pytest.approx([0.5, 2 / 3, 0.0])
    # MAP@R row 1: relevant at ranks 2, 3 within R = 3: (1/2 + 2/3) / 3
    assert map_at_r(rel, r).tolist() == pytest.approx([0.5, (1 / 2 + 2 / 3) / 3, 0.0])
    # MAP@4 row 0: ranks 1 and 3: (1 + 2/3) / min(2, 4)
    assert map_at_k(rel, r, 4).tolist() == pytest.approx(
        [(1 + 2 / 3) / 2, (1 / 2 + 2 / 3 + 3 / 4) / 3, 0.0]
    )
    assert mrr(first).tolist() == [1.0, 0.5, 0.0]
    with pytest.raises(ValueError, match="k: expected 1 <= k <= 4"):
        precision_at_k(rel, 5)
    with pytest.raises(ValueError, match="k: expected k >= 1"):
        recall_at_k(first, 0)


def test_evaluate_on_points_on_a_line() -> None:
    # 1-D euclidean: items at positions, classes chosen so every ranking is known by hand
    pos = torch.tensor([[0.0], [1.0], [2.1], [3.3], [10.0], [10.5]])
    y = torch.tensor([0, 0, 1, 0, 1, 1])
    res = evaluate(
        pos,
        y,
        metrics=["recall", "precision@1", "r_precision", "map@r", "mrr"],
        ks=(1, 2),
        similarity="euclidean",
    ).to_dict()
    # leave-one-out neighbours, nearest first (class in brackets):
    #   0 -> 1(0) 2(1) 3(0) | 1 -> 0(0) 2(1) 3(0) | 2 -> 1(0) 3(0) 0(0)
    #   3 -> 2(1) 1(0) 0(0) | 4 -> 5(1) 3(0) 2(1) | 5 -> 4(1) 3(0) 2(1)
    # every class has 3 items, so R = 2 for every query
    assert res["precision@1"] == pytest.approx(4 / 6)  # queries 2 and 3 miss
    assert res["recall@1"] == pytest.approx(4 / 6)
    assert res["recall@2"] == pytest.approx(5 / 6)  # only query 2 has no hit in its top 2
    assert res["r_precision"] == pytest.approx((0.5 + 0.5 + 0 + 0.5 + 0.5 + 0.5) / 6)
    # MAP@R: query 3 has its hit at rank 2 -> (1/2)/2; the others (1)/2 or 0
    assert res["map@r"] == pytest.approx((0.5 + 0.5 + 0 + 0.25 + 0.5 + 0.5) / 6)
    # MRR over the full ranking: query 2's first relevant (class 1) is item 4 at rank 4
    assert res["mrr"] == pytest.approx((1 + 1 + 1 / 4 + 1 / 2 + 1 + 1) / 6)
    assert res["num_queries"] == 6 and res["num_excluded_queries"] == 0


def test_ties_are_broken_by_lower_reference_index() -> None:
    q = torch.tensor([[1.0, 0.0]])
    ref = torch.tensor([[0.0, 1.0], [1.0, 0.0], [2.0, 0.0], [1.0, 0.0]])  # 1, 2, 3 tie in cosine
    for labels, expected in (([0, 1, 0, 0], 1.0), ([0, 0, 1, 0], 0.0), ([0, 0, 0, 1], 0.0)):
        res = evaluate(q, torch.tensor([1]), ref, torch.tensor(labels), metrics=["precision@1"])
        assert res.to_dict()["precision@1"] == expected  # index 1 wins the tie


def test_duplicates_are_kept_and_self_removed_by_index() -> None:
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    y = torch.tensor([0, 0, 1, 1])
    res = evaluate(x, y, metrics=["precision@1", "map@r"]).to_dict()
    assert res["precision@1"] == 1.0 and res["map@r"] == 1.0


def test_lone_queries_are_reported_and_excluded() -> None:
    x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    y = torch.tensor([0, 0, 7])  # class 7 has one member: no relevant reference
    res = evaluate(x, y, metrics=["precision@1", "r_precision", "map@r"], ks=(1,))
    assert res.num_excluded_queries == 1 and res.num_queries == 2
    assert res.to_dict()["precision@1"] == 1.0
    # query/gallery: a query class absent from the gallery
    res = evaluate(
        x, torch.tensor([0, 1, 2]), x, torch.tensor([0, 0, 2]), metrics=["recall"], ks=(1,)
    )
    assert res.num_excluded_queries == 1
    assert res.to_dict()["recall@1"] == 1.0
    with pytest.raises(ValueError, match="no query has a relevant reference"):
        evaluate(x, torch.tensor([0, 1, 2]), metrics=["recall"], ks=(1,))


def test_multi_label_relevance() -> None:
    x = torch.tensor([[1.0, 0.0], [0.9, 0.2], [0.0, 1.0], [0.1, 0.9]])
    y = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1]])
    res = evaluate(x, y, metrics=["precision@1", "r_precision"], ks=(1,)).to_dict()
    # 0 -> 1 (shares label 0): hit. 1 -> 0 (shares 0): hit. 2 -> 3? sims: 2·3 = 0.9, 2·1 = 0.2
    # -> 3 shares nothing with 2: miss. 3 has no relevant reference: excluded.
    assert res["num_excluded_queries"] == 1
    assert res["precision@1"] == pytest.approx(2 / 3)


def test_per_class_average() -> None:
    x = torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.98, 0.2], [0.0, 1.0], [0.95, 0.3]])
    y = torch.tensor([0, 0, 0, 1, 1])
    micro = evaluate(x, y, metrics=["precision@1"]).to_dict()["precision@1"]
    macro = evaluate(x, y, metrics=["precision@1"], average="per_class").to_dict()["precision@1"]
    # class 0: 3/3 hits; class 1: item 3 -> nearest is 4? sims 3·4 = 0.3, 3·2 = 0.2: hit;
    # item 4 -> nearest 2 (class 0): miss -> class 1 mean 1/2
    assert micro == pytest.approx(4 / 5) and macro == pytest.approx((1 + 0.5) / 2)


def test_clustering_f1_by_hand() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1])
    clusters = torch.tensor([0, 0, 1, 1, 1])
    # same-cluster pairs: (0,1), (2,3), (2,4), (3,4) -> 4; true positives: (0,1), (3,4) -> 2
    # same-class pairs: 3 + 1 = 4 -> P = 2/4, R = 2/4, F1 = 0.5
    assert clustering_f1(labels, clusters) == pytest.approx(0.5)
    assert clustering_f1(labels, torch.arange(5)) == 0.0


def test_clustering_f1_matches_a_pair_loop() -> None:
    g = torch.Generator().manual_seed(5)
    labels = torch.randint(0, 5, (60,), generator=g)
    clusters = torch.randint(10, 16, (60,), generator=g)
    tp = fp = fn = 0
    for i in range(60):
        for j in range(i + 1, 60):
            same_class, same_cluster = labels[i] == labels[j], clusters[i] == clusters[j]
            tp += int(same_class and same_cluster)
            fp += int(same_cluster and not same_class)
            fn += int(same_class and not same_cluster)
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    expected = 2 * precision * recall / (precision + recall)
    assert clustering_f1(labels, clusters) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="two \\(N,\\) tensors"):
        clustering_f1(labels, clusters[:-1])


def test_per_k_keys_and_list_metrics() -> None:
    pos = torch.tensor([[0.0], [1.0], [2.1], [3.3], [10.0], [10.5]])
    y = torch.tensor([0, 0, 1, 0, 1, 1])
    res = evaluate(
        pos, y, metrics=["precision_at_k", "map_at_k", "f1"], ks=(1, 3), similarity="euclidean"
    ).to_dict()
    # top 3 per query (see test_evaluate_on_points_on_a_line): relevant flags
    #   0: 1 0 1 | 1: 1 0 1 | 2: 0 0 0 | 3: 0 1 1 | 4: 1 0 1 | 5: 1 0 1
    assert res["precision@1"] == pytest.approx(4 / 6)
    assert res["precision@3"] == pytest.approx((2 + 2 + 0 + 2 + 2 + 2) / 18)
    # MAP@3 with R = 2: rows "1 0 1" -> (1 + 2/3) / 2; row "0 1 1" -> (1/2 + 2/3) / 2
    row = (1 + 2 / 3) / 2
    assert res["map@3"] == pytest.approx((4 * row + 0 + (1 / 2 + 2 / 3) / 2) / 6)
    assert set(res) == {
        "precision@1", "precision@3", "map@1", "map@3", "f1", "num_queries",
        "num_excluded_queries",
    }  # fmt: skip


def test_recall_beyond_the_short_list_is_exact() -> None:
    # random labels: many queries find their first relevant item far down the ranking
    g = torch.Generator().manual_seed(6)
    x = torch.randn(200, 4, generator=g)
    y = torch.randint(0, 40, (200,), generator=g)
    ks = (1, 20, 60)
    res = evaluate(x, y, metrics=["recall", "mrr"], ks=ks, similarity="euclidean").to_dict()
    d = torch.cdist(x, x).fill_diagonal_(float("inf"))
    firsts = []
    for i in range(200):
        order = torch.argsort(d[i], stable=True)[:-1]
        firsts.append(int(torch.nonzero(y[order] == y[i])[0]) if (y[order] == y[i]).any() else -1)
    first = torch.tensor(firsts)
    valid = first >= 0
    for k in ks:
        assert res[f"recall@{k}"] == pytest.approx(float((first[valid] < k).double().mean()))
    assert res["mrr"] == pytest.approx(float((1.0 / (first[valid] + 1.0)).mean()))
    assert int(first.max()) > 20  # the full-ranking path was needed


def test_faiss_ranking_backend_agrees_and_refuses_mrr() -> None:
    pytest.importorskip("faiss")
    g = torch.Generator().manual_seed(7)
    x = torch.randn(300, 8, generator=g)
    y = torch.randint(0, 30, (300,), generator=g)
    names = ["recall", "precision@1", "r_precision", "map@r", "map_at_k"]
    ours = evaluate(x, y, metrics=names, ks=(1, 4, 16)).to_dict()
    faiss_res = evaluate(x, y, metrics=names, ks=(1, 4, 16), knn_backend="faiss").to_dict()
    assert faiss_res == pytest.approx(ours, abs=1e-12)
    with pytest.raises(ValueError, match="'mrr' needs the full ranking"):
        evaluate(x, y, metrics=["mrr"], knn_backend="faiss")


def test_bad_arguments() -> None:
    x, y = torch.randn(6, 3), torch.tensor([0, 0, 1, 1, 2, 2])
    multi = torch.tensor([[1, 0]] * 6)
    cases: list[tuple[dict, type[Exception], str]] = [
        ({"metrics": ["accuracy"]}, ValueError, "unknown \\['accuracy'\\]"),
        ({"metrics": []}, ValueError, "at least one metric"),
        ({"metrics": ["recall"], "ks": (10,)}, ValueError, "ks: expected k <= 5"),
        ({"ks": ()}, ValueError, "ks: expected one or more"),
        ({"ks": (0, 1)}, ValueError, "ks: expected one or more positive"),
        ({"ref_emb": x}, ValueError, "ref_labels: expected labels"),
        ({"ref_labels": y}, ValueError, "ref_labels: given without ref_emb"),
        ({"ref_emb": torch.randn(4, 5), "ref_labels": y[:4]}, ValueError, "dim D=3"),
        ({"ref_emb": x, "ref_labels": multi}, ValueError, "label form"),
        ({"average": "macro"}, ValueError, "average"),
        ({"metric": "manhattan"}, ValueError, "metric: expected one of"),
        ({"knn_backend": "annoy"}, ValueError, "knn_backend"),
        ({"kmeans_backend": "cuml"}, ValueError, "kmeans_backend"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            evaluate(x, y, **kwargs)
    with pytest.raises(TypeError, match="integer"):
        evaluate(x, y.float())
    with pytest.raises(ValueError, match="finite"):
        evaluate(x.clone().fill_(float("nan")), y)
    with pytest.raises(ValueError, match="per_class' needs class ids"):
        evaluate(x, multi, metrics=["precision@1"], average="per_class")
    with pytest.raises(ValueError, match="nmi/ami/f1 need class ids"):
        evaluate(x, multi, metrics=["nmi"])
    # a list metric alone does not care about ks larger than the set
    assert evaluate(x, y, metrics=["r_precision"], ks=(100,)).to_dict()["num_queries"] == 6


def test_collapsed_embeddings_rank_by_index() -> None:
    # an untrained model can map everything to one point: every score ties, so the ranking is
    # the reference order (own row removed), in every block
    x = torch.ones(30, 4)
    y = torch.arange(30) % 3
    res = evaluate(x, y, metrics=["precision@1", "r_precision", "mrr"], memory_bytes=8 * 30 * 4)
    firsts, hits1, rprec = [], [], []
    for i in range(30):
        order = [j for j in range(30) if j != i]
        rel = [bool(y[j] == y[i]) for j in order]
        firsts.append(rel.index(True))
        hits1.append(float(rel[0]))
        rprec.append(sum(rel[:9]) / 9)
    out = res.to_dict()
    assert out["precision@1"] == pytest.approx(sum(hits1) / 30)
    assert out["r_precision"] == pytest.approx(sum(rprec) / 30)
    assert out["mrr"] == pytest.approx(sum(1 / (f + 1) for f in firsts) / 30)
