"""Pair engine parts: masked reductions, terms, aggregators (loop references), PairLoss contracts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dmlkit.losses import (
    AnchorLogSumExpAggregator,
    AnchorMeanAggregator,
    CircleTerm,
    HardestPairMiner,
    HingeTerm,
    LiftedSongAggregator,
    LinearTerm,
    PairAggregator,
    PairLoss,
    PairSumAggregator,
    PerPositiveSoftplusAggregator,
    SoftplusTerm,
    create,
    pair_weights,
)
from dmlkit.losses.reductions import (
    masked_logsumexp,
    masked_mean,
    masked_sum_count,
    offset_excluded,
    reduce_anchors,
)


def _random(seed: int, b: int = 6, r: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, r, generator=g, dtype=torch.float64)
    mask = torch.rand(b, r, generator=g) < 0.5
    mask[0] = False  # one empty row
    mask[1] = True  # one full row
    return x, mask


# ----------------------------------------------------------------------------- reductions


@pytest.mark.parametrize("add_one", [False, True])
@pytest.mark.parametrize("scale", [1.0, 3.0, 50.0])
def test_masked_logsumexp_values_and_softmax_gradient(add_one: bool, scale: float) -> None:
    x, mask = _random(0)
    x.requires_grad_(True)
    value, valid = masked_logsumexp(x, mask, add_one=add_one, scale=scale)
    assert valid.tolist() == mask.any(1).tolist()
    (grad,) = torch.autograd.grad(value.sum(), x)
    x = x.detach()
    for i in range(x.shape[0]):
        entries = [scale * float(x[i, j]) for j in range(x.shape[1]) if mask[i, j]]
        if add_one:
            entries.append(0.0)
        if not entries:
            assert value[i].item() == 0.0 and torch.equal(grad[i], torch.zeros_like(grad[i]))
            continue
        top = max(entries)
        total = sum(math.exp(e - top) for e in entries)
        assert value[i].item() == pytest.approx(top + math.log(total), rel=1e-12, abs=1e-12)
        for j in range(x.shape[1]):
            expected = scale * math.exp(scale * float(x[i, j]) - top) / total if mask[i, j] else 0
            assert grad[i, j].item() == pytest.approx(expected, rel=1e-9, abs=1e-30)


def test_masked_logsumexp_is_finite_at_extreme_scales_and_half_precision() -> None:
    x, mask = _random(1)
    for scale in (1e4, 1e6):
        value, _ = masked_logsumexp(x, mask, add_one=True, scale=scale)
        assert torch.isfinite(value).all()
        # the soft maximum tends to the hard one: value / scale -> [max_mask x]_+
        hard = x.masked_fill(~mask, -math.inf).amax(1).clamp_min(0).nan_to_num(neginf=0.0)
        torch.testing.assert_close(value / scale, hard, rtol=0, atol=20 / scale)
    half, _ = masked_logsumexp(x.half(), mask)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half.double(), masked_logsumexp(x, mask)[0], rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="scale"):
        masked_logsumexp(x, mask, scale=0.0)


def test_offset_excluded_keeps_masked_entries_exact() -> None:
    x, mask = _random(2)
    low = offset_excluded(x, mask, -1.0)
    assert torch.equal(low[mask], x[mask]) and (low[~mask] < -1e300).all()
    buf = torch.empty_like(x)
    high = offset_excluded(x, mask, 1.0, out=buf)
    assert high.data_ptr() == buf.data_ptr()
    assert torch.equal(high[mask], x[mask]) and (high[~mask] > 1e300).all()
    row_max = low.amax(1)
    for i in range(1, x.shape[0]):
        if mask[i].any():
            assert row_max[i] == x[i][mask[i]].max()


def test_masked_sums_means_and_counts() -> None:
    x, mask = _random(3)
    x.requires_grad_(True)
    total, count = masked_sum_count(x, mask)
    assert total.item() == pytest.approx(x[mask].sum().item()) and count.item() == mask.sum()
    (grad,) = torch.autograd.grad(total, x)
    assert torch.equal(grad, mask.double())
    _, nonzero = masked_sum_count(x, mask, nonzero=True)
    assert nonzero.item() == int((mask & (x > 0)).sum())
    mean, valid = masked_mean(x, mask)
    for i in range(x.shape[0]):
        expected = x[i][mask[i]].mean().item() if mask[i].any() else 0.0
        assert mean[i].item() == pytest.approx(expected) and bool(valid[i]) == bool(mask[i].any())


def test_reduce_anchors_each_reduction() -> None:
    per = torch.tensor([2.0, 0.0, 4.0, 7.0], requires_grad=True)
    valid = torch.tensor([True, True, True, False])
    assert reduce_anchors(per, valid, "sum").item() == 6.0
    assert reduce_anchors(per, valid, "mean_all").item() == 1.5
    assert reduce_anchors(per, valid, "mean_valid").item() == 2.0
    assert reduce_anchors(per, valid, "mean_nonzero").item() == 3.0
    none = reduce_anchors(per, torch.zeros(4, dtype=torch.bool), "mean_valid")
    assert none.item() == 0.0 and none.requires_grad
    with pytest.raises(ValueError, match="reduction: expected one of"):
        reduce_anchors(per, valid, "median")


# ----------------------------------------------------------------------------- terms


def test_terms_match_their_formulas() -> None:
    s = torch.linspace(-1, 1, 9, dtype=torch.float64)[None, :]
    lp, ln = LinearTerm(0.3, -0.2)(s)
    torch.testing.assert_close(lp, 0.3 - s)
    torch.testing.assert_close(ln, s + 0.2)
    lp, ln = HingeTerm(0.8, 0.1, power=2.0, pos_weight=0.5, neg_weight=3.0)(s)
    torch.testing.assert_close(lp, 0.5 * (0.8 - s).clamp_min(0) ** 2)
    torch.testing.assert_close(ln, 3.0 * (s - 0.1).clamp_min(0) ** 2)
    lp, ln = SoftplusTerm(2.0, 40.0, 0.5, pos_weight=0.25)(s)
    torch.testing.assert_close(lp, 0.25 * torch.log1p(torch.exp(2.0 * (0.5 - s))))
    torch.testing.assert_close(ln, F.softplus(40.0 * (s - 0.5)))
    lp, ln = CircleTerm(0.25, 10.0)(s)
    torch.testing.assert_close(lp, -10.0 * (1.25 - s).clamp_min(0) * (s - 0.75))
    torch.testing.assert_close(ln, 10.0 * (s + 0.25).clamp_min(0) * (s - 0.25))


def test_term_argument_errors() -> None:
    with pytest.raises(ValueError, match="power: expected a value >= 1"):
        HingeTerm(power=0.5)
    with pytest.raises(ValueError, match="power: expected a finite value"):
        HingeTerm(power=float("inf"))
    with pytest.raises(ValueError, match="neg_weight"):
        HingeTerm(neg_weight=-1.0)
    with pytest.raises(ValueError, match="scale_neg"):
        SoftplusTerm(scale_neg=0.0)
    with pytest.raises(ValueError, match="gamma"):
        CircleTerm(gamma=-1.0)


# ----------------------------------------------------------------------------- aggregators


def _sides(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lp = torch.randn(6, 6, generator=g, dtype=torch.float64).clamp_min(0)
    ln = torch.randn(6, 6, generator=g, dtype=torch.float64)
    pos = torch.rand(6, 6, generator=g) < 0.3
    neg = ~pos & (torch.rand(6, 6, generator=g) < 0.8)
    pos[2] = False  # an anchor with negatives only
    neg[3] = False  # an anchor with positives only
    pos[4] = neg[4] = False  # an anchor with nothing
    return lp, ln, pos, neg


def _rows(x: torch.Tensor, m: torch.Tensor, i: int) -> list[float]:
    return [float(v) for v in x[i][m[i]]]


@pytest.mark.parametrize(
    "normalize", ["pairs", "pairs_nonzero", "sides", "sides_nonzero", "batch", "none"]
)
def test_pair_sum_aggregator(normalize: str) -> None:
    lp, ln, pos, neg = _sides(0)
    p, n = lp[pos].tolist(), ln[neg].tolist()
    total = sum(p) + sum(n)
    expected = {
        "pairs": total / (len(p) + len(n)),
        "pairs_nonzero": total / sum(v > 0 for v in p + n),
        "sides": sum(p) / len(p) + sum(n) / len(n),
        "sides_nonzero": sum(p) / sum(v > 0 for v in p) + sum(n) / sum(v > 0 for v in n),
        "batch": total / 6,
        "none": total,
    }[normalize]
    assert PairSumAggregator(normalize)(lp, ln, pos, neg).item() == pytest.approx(expected)


@pytest.mark.parametrize("reduction", ["mean_valid", "mean_all", "sum"])
def test_anchor_mean_aggregator(reduction: str) -> None:
    lp, ln, pos, neg = _sides(1)
    per = []
    for i in range(6):
        p, n = _rows(lp, pos, i), _rows(ln, neg, i)
        if p or n:
            per.append((sum(p) / len(p) if p else 0.0) + (sum(n) / len(n) if n else 0.0))
    expected = {"mean_valid": sum(per) / len(per), "mean_all": sum(per) / 6, "sum": sum(per)}
    value = AnchorMeanAggregator(reduction)(lp, ln, pos, neg)
    assert value.item() == pytest.approx(expected[reduction])


@pytest.mark.parametrize("combine", ["sum", "hinge", "softplus"])
@pytest.mark.parametrize("add_one", [False, True])
def test_anchor_logsumexp_aggregator(combine: str, add_one: bool) -> None:
    lp, ln, pos, neg = _sides(2)
    a, b = 2.0, 5.0
    total, count = 0.0, 0
    for i in range(6):
        p, n = _rows(lp, pos, i), _rows(ln, neg, i)
        if not (p or n) or (not add_one and not (p and n)):
            continue
        extra = [0.0] if add_one else []
        side_p = math.log(sum(math.exp(a * v) for v in [*p, *extra])) / a if p or add_one else 0
        side_n = math.log(sum(math.exp(b * v) for v in [*n, *extra])) / b if n or add_one else 0
        v = side_p + side_n
        v = {"sum": v, "hinge": max(v, 0.0), "softplus": math.log1p(math.exp(v))}[combine]
        total, count = total + v, count + 1
    agg = AnchorLogSumExpAggregator(a, b, add_one=add_one, combine=combine, reduction="sum")
    assert agg(lp, ln, pos, neg).item() == pytest.approx(total)
    mean = AnchorLogSumExpAggregator(a, b, add_one, combine, reduction="mean_valid")
    assert mean(lp, ln, pos, neg).item() == pytest.approx(total / count)


def test_per_positive_softplus_aggregator() -> None:
    lp, ln, pos, neg = _sides(3)
    terms = []
    for i in range(6):
        n = _rows(ln, neg, i)
        if n:
            terms += [math.log1p(sum(math.exp(v + w) for w in n)) for v in _rows(lp, pos, i)]
    value = PerPositiveSoftplusAggregator()(lp, ln, pos, neg)
    assert value.item() == pytest.approx(sum(terms) / len(terms))


def test_lifted_song_aggregator_needs_a_square_matrix() -> None:
    lp, ln, pos, neg = _sides(4)
    with pytest.raises(ValueError, match="square"):
        LiftedSongAggregator()(lp[:, :5], ln[:, :5], pos[:, :5], neg[:, :5])


def test_aggregator_argument_errors() -> None:
    with pytest.raises(ValueError, match="normalize: expected one of"):
        PairSumAggregator("mean")
    with pytest.raises(ValueError, match="combine: expected"):
        AnchorLogSumExpAggregator(combine="max")
    with pytest.raises(ValueError, match="reduction: expected one of"):
        AnchorMeanAggregator("median")
    with pytest.raises(ValueError, match="scale_pos"):
        AnchorLogSumExpAggregator(scale_pos=0.0)


# ----------------------------------------------------------------------------- PairLoss


def test_pair_loss_checks_its_parts() -> None:
    with pytest.raises(TypeError, match="term: expected a PairTerm, got PairSumAggregator"):
        PairLoss(PairSumAggregator(), PairSumAggregator())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="aggregator: expected a PairAggregator"):
        PairLoss(LinearTerm(), LinearTerm())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="miner: expected a PairMiner"):
        PairLoss(LinearTerm(), PairSumAggregator(), LinearTerm())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="similarity: expected one of"):
        PairLoss(LinearTerm(), PairSumAggregator(), similarity="l1")


def test_from_similarity_checks_shapes_and_dtypes() -> None:
    loss = create("contrastive")
    s, m = torch.zeros(3, 4), torch.zeros(3, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="sim: expected a floating-point"):
        loss.from_similarity(torch.zeros(3, 4, dtype=torch.long), m, m)
    with pytest.raises(ValueError, match="pos: expected a bool mask of the shape of S"):
        loss.from_similarity(s, m.float(), m)
    with pytest.raises(ValueError, match=r"neg: expected a bool mask of the shape of S \(3, 4\)"):
        loss.from_similarity(s, m, m[:, :3])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"ref_labels": torch.arange(4)}, ValueError, "ref_labels: given without ref_emb"),
        ({"ref_emb": torch.randn(5, 3)}, ValueError, "ref_labels: expected labels for ref_emb"),
        (
            {"ref_emb": torch.randn(5, 2), "ref_labels": torch.arange(5)},
            ValueError,
            "expected embedding dim D=3",
        ),
        (
            {"ref_emb": torch.randn(5, 3), "ref_labels": torch.arange(4)},
            ValueError,
            "ref_labels: expected 5 rows",
        ),
        ({"self_index": torch.arange(3)}, ValueError, r"self_index: expected shape \(4,\)"),
    ],
)
def test_forward_reports_bad_references(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        create("ms")(torch.randn(4, 3), torch.tensor([0, 0, 1, 1]), **kwargs)


def test_forward_reports_bad_embeddings_and_labels() -> None:
    loss = create("binomial")
    with pytest.raises(TypeError, match="labels: expected integer"):
        loss(torch.randn(4, 3), torch.zeros(4))
    with pytest.raises(ValueError, match="emb: expected finite values"):
        loss(torch.tensor([[0.0, math.nan]] * 4), torch.arange(4))
    with pytest.raises(ValueError, match="labels: expected 4 rows"):
        loss(torch.randn(4, 3), torch.arange(5))


class _CountingAggregator(PairAggregator):
    """Returns the number of pairs it was given (a stand-in for a top-k over pairs)."""

    unique_pairs = True

    def forward(self, l_pos, l_neg, pos, neg):  # type: ignore[no-untyped-def]
        return (pos.sum() + neg.sum()).double() + 0.0 * l_pos.sum()


def test_unique_pairs_reach_an_aggregator_that_asks_for_them() -> None:
    x = torch.randn(6, 3, dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    counting = PairLoss(LinearTerm(), _CountingAggregator())
    assert counting(x, y).item() == 6 * 5 / 2  # each unordered pair once
    # a separate reference (even an equal copy): every entry, self included, is a pair of its own
    assert counting(x, y, x.clone(), y).item() == 6 * 6
    # an asymmetric miner: a unique pair counts when either anchor mined it
    mined = PairLoss(LinearTerm(), _CountingAggregator(), HardestPairMiner())
    sim, pos, neg = mined.pairs(x, y)
    p, n = HardestPairMiner()(sim, pos, neg)
    expected = torch.triu(p | p.T, 1).sum() + torch.triu(n | n.T, 1).sum()
    assert mined(x, y).item() == expected.item()
    # per-anchor aggregators keep both ordered copies
    assert not PairSumAggregator().unique_pairs


def test_pair_weights_with_a_memory_style_reference() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1])
    bank = torch.cat([x, torch.randn(3, 5, generator=g, dtype=torch.float64)])
    bank_y = torch.cat([y, torch.tensor([1, 2, 0])])
    self_index = torch.arange(4)
    loss = create("ms", epsilon=None)
    w = pair_weights(loss, x, y, bank, bank_y, self_index)
    assert w.shape == (4, 7)
    assert torch.equal(w[self_index, self_index], torch.zeros(4, dtype=torch.float64))
    # the weights are the gradient of the loss with respect to S
    s = F.normalize(x, dim=1) @ F.normalize(bank, dim=1).T
    s.requires_grad_(True)
    _, pos, neg = loss.pairs(x, y, bank, bank_y, self_index)
    (expected,) = torch.autograd.grad(loss.from_similarity(s, pos, neg), s)
    torch.testing.assert_close(w, expected)
    assert (w[pos] <= 0).all() and (w[neg] >= 0).all()


def test_pair_weights_of_a_triplet_loss_and_of_a_non_loss() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    w = pair_weights(create("triplet", margin=0.5), x, y)
    pos = (y[:, None] == y[None, :]) & ~torch.eye(8, dtype=torch.bool)
    assert (w[pos] <= 0).all() and (w[~pos] >= 0).all() and w.abs().sum() > 0
    with pytest.raises(TypeError, match="expected a dmlkit batch loss"):
        pair_weights(torch.nn.MSELoss(), x, y)  # type: ignore[arg-type]
