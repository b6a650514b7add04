"""Verification metrics over all pairs: scikit-learn's roc_auc_score / roc_curve on the same
scores, a hand-computed EER, exact ties, block-size invariance, query/gallery and multi-hot
pairs, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn.metrics import roc_auc_score, roc_curve

from dmlkit.evaluation import evaluate
from dmlkit.evaluation.verification import (
    equal_error_rate,
    pair_counts,
    rate_name,
    roc_auc,
    tar_at_far,
)
from dmlkit.evaluation.verification import roc_curve as our_roc_curve
from dmlkit.training.evaluate import metric_columns

VERIFICATION = ["roc_auc", "eer", "tar_at_far", "fnmr_at_fmr"]


def all_pairs(
    emb: torch.Tensor, labels: torch.Tensor, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """Every unordered pair's score and genuine flag, by an explicit loop."""
    x = F.normalize(emb, dim=1) if metric == "cosine" else emb
    scores, genuine = [], []
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            if metric == "euclidean":
                scores.append(-float(((x[i] - x[j]) ** 2).sum()))
            else:
                scores.append(float(x[i] @ x[j]))
            genuine.append(bool(labels[i] == labels[j]))
    return np.array(scores), np.array(genuine)


def sklearn_reference(
    scores: np.ndarray, genuine: np.ndarray, fmrs: list[float]
) -> dict[str, float]:
    fpr, tpr, _ = roc_curve(genuine, scores, drop_intermediate=False)
    out = {
        "roc_auc": roc_auc_score(genuine, scores),
        "eer": brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0, xtol=1e-14),
    }
    for f in fmrs:
        out[f"tar@far{rate_name(f)}"] = float(tpr[fpr <= f].max())
    return out


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
def test_equals_sklearn_on_the_same_scores(metric: str) -> None:
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 8, (120,), generator=g)
    emb = torch.randn(8, 6, generator=g)[labels] + 1.5 * torch.randn(120, 6, generator=g)
    # the metrics from the scores this function computes equal sklearn's on those scores
    counts = pair_counts(emb.double(), labels, similarity=metric)
    scores, genuine = all_pairs(emb.double(), labels, metric)
    assert counts.num_genuine == genuine.sum() and counts.num_impostor == (~genuine).sum()
    fmrs = [0.2, 1e-2, 1e-3]
    ref = sklearn_reference(scores, genuine, fmrs)
    ours = {"roc_auc": roc_auc(counts), "eer": equal_error_rate(counts)}
    ours.update({f"tar@far{rate_name(f)}": tar_at_far(counts, f)[0] for f in fmrs})
    assert ours == pytest.approx(ref, abs=1e-10)
    # and evaluate() reports them under their keys, FNMR = 1 - TAR
    result = evaluate(
        emb.double(), labels, metrics=VERIFICATION, similarity=metric, fmrs=fmrs
    ).metrics
    for f in fmrs:
        assert result[f"fnmr@fmr{rate_name(f)}"] == pytest.approx(1 - ref[f"tar@far{rate_name(f)}"])
    assert result["roc_auc"] == pytest.approx(ref["roc_auc"], abs=1e-12)


def test_roc_vertices_lie_on_sklearns_curve() -> None:
    g = torch.Generator().manual_seed(2)
    labels = torch.randint(0, 5, (60,), generator=g)
    emb = torch.randint(-2, 3, (60, 3), generator=g).double()  # integer scores: many ties
    counts = pair_counts(emb, labels, similarity="dot")
    scores, genuine = all_pairs(emb, labels, "dot")
    fpr, tpr, _ = roc_curve(genuine, scores, drop_intermediate=False)
    xs, ys = our_roc_curve(counts)
    ours = {(round(float(x), 12), round(float(y), 12)) for x, y in zip(xs, ys, strict=True)}
    theirs = {(round(float(x), 12), round(float(y), 12)) for x, y in zip(fpr, tpr, strict=True)}
    # sklearn has a vertex at every distinct score; ours are those where the slope changes
    # (at each genuine value and just above it), so ours are a subset on the same curve
    assert ours <= theirs
    assert roc_auc(counts) == pytest.approx(roc_auc_score(genuine, scores), abs=1e-12)
    assert roc_auc(counts) == pytest.approx(float(np.trapezoid(ys, xs)), abs=1e-12)


def test_hand_computed_eer_auc_and_tar() -> None:
    # 1-d embeddings, dot product: items 0,1 (class 0) = 1, 1; items 2,3 (class 1) = 2, -1
    emb = torch.tensor([[1.0], [1.0], [2.0], [-1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # genuine: (0,1)=1, (2,3)=-2; impostor: (0,2)=2, (0,3)=-1, (1,2)=2, (1,3)=-1
    counts = pair_counts(emb, labels, similarity="dot")
    assert counts.values.tolist() == [-2.0, 1.0]
    assert (counts.num_genuine, counts.num_impostor) == (2, 4)
    # P(gen > imp): gen 1 beats the two -1's, gen -2 beats none: 2 of 8
    assert roc_auc(counts) == pytest.approx(2 / 8)
    # ROC: (0,0) -> (0.5, 0) [the two 2's] -> (0.5, 0.5) [gen 1] -> (1, 0.5) [the -1's]
    #      -> (1, 1) [gen -2]; FMR = FNMR on the segment (0.5, 0)-(0.5, 0.5) at FNMR 0.5
    assert equal_error_rate(counts) == pytest.approx(0.5)
    assert tar_at_far(counts, 0.49) == (0.0, float("inf"))
    assert tar_at_far(counts, 0.5) == (0.5, 1.0)
    assert tar_at_far(counts, 1.0) == (1.0, -2.0)


def test_hand_computed_eer_on_a_sloped_segment() -> None:
    # a tie between a genuine and an impostor pair makes a diagonal ROC segment
    emb = torch.tensor([[3.0], [1.0], [3.0], [1.0], [0.0]])
    labels = torch.tensor([0, 0, 1, 2, 2])
    # genuine (0,1)=3, (3,4)=0; impostor (0,2)=9 (0,3)=3 (0,4)=0 (1,2)=3 (1,3)=1 (1,4)=0
    # (2,3)=3 (2,4)=0. ROC: (0,0) -> (1/8,0) [the 9] -> (4/8,1/2) [3 impostors and 1 genuine
    # tied at 3] -> (5/8,1/2) [the 1] -> (1,1) [3 impostors and 1 genuine tied at 0]
    counts = pair_counts(emb, labels, similarity="dot")
    fmr, tar = our_roc_curve(counts)
    assert fmr.tolist() == pytest.approx([0, 1 / 8, 4 / 8, 5 / 8, 1, 1])
    assert tar.tolist() == pytest.approx([0, 0, 1 / 2, 1 / 2, 1, 1])
    # on (1/8,0)->(4/8,1/2): FMR = 1/8 + 3s/8, FNMR = 1 - s/2, equal at s = 1: EER = 1/2
    assert equal_error_rate(counts) == pytest.approx(0.5)
    # AUC: genuine 3 beats 4 impostors and ties 3; genuine 0 beats none and ties 3
    assert roc_auc(counts) == pytest.approx(7 / 16)


def test_the_block_size_does_not_change_the_counts() -> None:
    g = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 6, (90,), generator=g)
    emb = torch.randint(-3, 4, (90, 4), generator=g).float()
    whole = pair_counts(emb, labels, similarity="dot")
    tiny = pair_counts(emb, labels, similarity="dot", memory_bytes=1)  # one row a block
    for name in ("values", "genuine", "impostor_below", "impostor_equal"):
        assert torch.equal(getattr(whole, name), getattr(tiny, name)), name


def test_query_gallery_and_multi_hot_pairs() -> None:
    g = torch.Generator().manual_seed(4)
    q, r = torch.randn(20, 5, generator=g), torch.randn(30, 5, generator=g)
    ql, rl = torch.randint(0, 4, (20,), generator=g), torch.randint(0, 4, (30,), generator=g)
    result = evaluate(q, ql, r, rl, metrics=["roc_auc"]).metrics
    s = (F.normalize(q, dim=1) @ F.normalize(r, dim=1).T).flatten().numpy()
    same = (ql[:, None] == rl[None, :]).flatten().numpy()
    assert result["roc_auc"] == pytest.approx(roc_auc_score(same, s), abs=1e-12)
    multi = torch.nn.functional.one_hot(ql, 4) | torch.nn.functional.one_hot((ql + 1) % 4, 4)
    emb = torch.randn(20, 5, generator=g)
    scores, _ = all_pairs(emb, ql, "cosine")
    share = np.array(
        [bool((multi[i] & multi[j]).any()) for i in range(20) for j in range(i + 1, 20)]
    )
    got = evaluate(emb, multi, metrics=["roc_auc"]).metrics["roc_auc"]
    assert got == pytest.approx(roc_auc_score(share, scores), abs=1e-12)


def test_metric_keys_and_columns() -> None:
    assert rate_name(1e-3) == "1e-3" and rate_name(0.05) == "0.05"
    columns = metric_columns(["recall", "roc_auc", "eer", "tar_at_far", "fnmr_at_fmr"], [1, 2])
    assert columns == [
        "recall@1", "recall@2", "roc_auc", "eer", "tar@far1e-2", "tar@far1e-3", "tar@far1e-4",
        "fnmr@fmr1e-2", "fnmr@fmr1e-3", "fnmr@fmr1e-4", "num_queries", "num_excluded_queries",
    ]  # fmt: skip
    emb = torch.randn(40, 4)
    labels = torch.arange(40) % 5
    keys = set(evaluate(emb, labels, metrics=["recall", *VERIFICATION], ks=(1, 2)).to_dict())
    assert keys == set(columns)


def test_errors_name_the_problem() -> None:
    emb = torch.randn(6, 3)
    with pytest.raises(ValueError, match="at least one genuine pair"):
        evaluate(emb, torch.arange(6), metrics=["eer"])
    with pytest.raises(ValueError, match="at least one impostor pair"):
        evaluate(emb, torch.zeros(6, dtype=torch.long), metrics=["roc_auc"])
    with pytest.raises(ValueError, match=r"fmrs: expected one or more rates in \(0, 1\)"):
        evaluate(emb, torch.arange(6) % 2, metrics=["tar_at_far"], fmrs=[1.5])
    with pytest.raises(ValueError, match=r"fmr: expected a rate in \[0, 1\]"):
        tar_at_far(pair_counts(emb, torch.arange(6) % 2), -0.1)
