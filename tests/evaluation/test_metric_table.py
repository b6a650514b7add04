"""The metric table: the keys each metric reports, the config defaults and checks read from it,
and ``similarity=`` (with ``metric=``, its deprecated former keyword, giving the same results)."""

from __future__ import annotations

import pytest
import torch

from dmlkit.config import ConfigError, EvalConfig, config_from_dict
from dmlkit.evaluation import evaluate, knn, rank_references
from dmlkit.evaluation.metric_table import (
    DEFAULT_METRICS,
    METRIC_NAMES,
    METRICS,
    SIMILARITIES,
    metric_keys,
)
from dmlkit.evaluation.verification import pair_counts
from dmlkit.training.evaluate import metric_columns

# Written out by hand: the keys every metric reported before the table existed.
EXPECTED_KEYS = {
    "recall": ["recall@1", "recall@3"],
    "precision@1": ["precision@1"],
    "precision_at_k": ["precision@1", "precision@3"],
    "r_precision": ["r_precision"],
    "map@r": ["map@r"],
    "map_at_k": ["map@1", "map@3"],
    "mrr": ["mrr"],
    "nmi": ["nmi"],
    "ami": ["ami"],
    "f1": ["f1"],
    "roc_auc": ["roc_auc"],
    "eer": ["eer"],
    "tar_at_far": ["tar@far1e-2", "tar@far0.05"],
    "fnmr_at_fmr": ["fnmr@fmr1e-2", "fnmr@fmr0.05"],
}


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(30, 4, generator=g), torch.arange(30) % 5


def test_every_metric_reports_the_keys_of_its_row() -> None:
    assert list(METRIC_NAMES) == list(EXPECTED_KEYS)
    emb, labels = _data()
    for name, keys in EXPECTED_KEYS.items():
        assert metric_keys(name, (1, 3), (1e-2, 0.05)) == keys
        result = evaluate(emb, labels, metrics=[name], ks=(1, 3), fmrs=(1e-2, 0.05))
        assert list(result.metrics) == keys, name
    with pytest.raises(ValueError, match=r"metrics: unknown 'accuracy'"):
        metric_keys("accuracy", (1,))


def test_rows_name_themselves_and_per_k_rows_format_k() -> None:
    for name, row in METRICS.items():
        assert row.name == name and row.family in ("retrieval", "clustering", "verification")
        assert (row.per == "k") == ("{}" in row.key and row.family == "retrieval")
    columns = metric_columns(["recall", "precision_at_k", "precision@1"], [1, 2])
    assert columns == [
        "recall@1", "recall@2", "precision@1", "precision@2",
        "num_queries", "num_excluded_queries",
    ]  # fmt: skip


def test_the_config_reads_its_defaults_and_choices_from_the_table() -> None:
    assert EvalConfig().metrics == list(DEFAULT_METRICS)
    assert SIMILARITIES == ("cosine", "dot", "euclidean")
    for similarity in SIMILARITIES:
        assert config_from_dict({"eval": {"similarity": similarity}}).eval.similarity == similarity
    with pytest.raises(
        ConfigError, match=r"eval\.similarity: expected one of cosine, dot, euclidean"
    ):
        config_from_dict({"eval": {"similarity": "manhattan"}})
    with pytest.raises(ConfigError, match=r"eval\.metrics: unknown \['accuracy'\]"):
        config_from_dict({"eval": {"metrics": ["recall", "accuracy"]}})


@pytest.mark.parametrize("similarity", ["dot", "euclidean"])
def test_the_former_metric_keyword_warns_and_gives_the_same_results(similarity: str) -> None:
    emb, labels = _data()
    q, r = emb[:10], emb[10:]
    names = ["map@r", "eer"]
    result = evaluate(emb, labels, metrics=names, similarity=similarity).to_dict()
    found = knn(q, r, 4, similarity=similarity)
    ranking = rank_references(q, labels[:10], r, labels[10:], 3, similarity=similarity)
    counts = pair_counts(emb, labels, similarity=similarity)
    with pytest.warns(DeprecationWarning, match="metric= is deprecated"):
        old_result = evaluate(emb, labels, metrics=names, metric=similarity).to_dict()
        old_found = knn(q, r, 4, metric=similarity)
        old_ranking = rank_references(q, labels[:10], r, labels[10:], 3, metric=similarity)
        old_counts = pair_counts(emb, labels, metric=similarity)
    assert old_result == result
    assert torch.equal(old_found[0], found[0]) and torch.equal(old_found[1], found[1])
    assert torch.equal(old_ranking.index, ranking.index)
    assert torch.equal(old_ranking.first_rank, ranking.first_rank)
    assert torch.equal(old_counts.values, counts.values)
    assert torch.equal(old_counts.impostor_below, counts.impostor_below)
    # the cosine ranking differs from these, so the keyword is not ignored
    assert evaluate(emb, labels, metrics=names).to_dict() != result


def test_similarity_and_metric_together_are_refused() -> None:
    emb, labels = _data()
    with pytest.raises(TypeError, match="pass similarity= only"):
        evaluate(emb, labels, similarity="dot", metric="euclidean")
