"""The miners of :mod:`dmlkit.losses.miners_more`: parity with pytorch-metric-learning's miners in
float64 (their index tuples turned into masks), explicit-loop references, edge cases, and use in a
pair loss."""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import miners as pml_miners

from dmlkit.core import relation_masks
from dmlkit.core.similarity import similarity_matrix
from dmlkit.losses import (
    MINERS,
    AngularMiner,
    BatchEasyHardMiner,
    HDCMiner,
    PairMarginMiner,
    UniformHistogramMiner,
    create,
)
from dmlkit.losses.chunks import row_chunks

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _batch(seed: int = 0, b: int = 16, classes: int = 4) -> Batch:
    """``emb (B, 5)``, ``labels``, the batch's own cosine ``S (B, B)``, ``pos``, ``neg``; float64."""
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(b, 5, generator=g, dtype=torch.float64)
    labels = torch.randint(0, classes, (b,), generator=g)
    sim = similarity_matrix(emb, emb, "cosine")
    pos, neg = relation_masks(labels, labels, self_index=torch.arange(b))
    return emb, labels, sim, pos, neg


def _ref_batch(seed: int = 1) -> tuple[Batch, torch.Tensor, torch.Tensor]:
    emb, labels, _, _, _ = _batch(seed, b=10)
    g = torch.Generator().manual_seed(seed + 100)
    ref = torch.randn(13, 5, generator=g, dtype=torch.float64)
    ref_labels = torch.randint(0, 4, (13,), generator=g)
    sim = similarity_matrix(emb, ref, "cosine")
    pos, neg = relation_masks(labels, ref_labels)
    return (emb, labels, sim, pos, neg), ref, ref_labels


def _masks(out: tuple[torch.Tensor, ...], shape: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    """PML's ``(a1, p, a2, n)`` or ``(a, p, n)`` as bool ``(pos, neg)`` masks."""
    a1, p, a2, n = out if len(out) == 4 else (out[0], out[1], out[0], out[2])
    pos, neg = torch.zeros(shape, dtype=torch.bool), torch.zeros(shape, dtype=torch.bool)
    pos[a1, p] = True
    neg[a2, n] = True
    return pos, neg


def _pml(
    miner: torch.nn.Module, emb: torch.Tensor, labels: torch.Tensor, ref=None, ref_labels=None
):
    out = miner(emb, labels, ref, ref_labels)
    shape = (emb.shape[0], (emb if ref is None else ref).shape[0])
    return _masks(out, shape)


COS = pml_distances.CosineSimilarity


# ---------------------------------------------------------------- pair margin


@pytest.mark.parametrize(("pm", "nm"), [(0.98, 0.68), (0.5, 0.1), (0.9, -0.2)])
def test_pair_margin_matches_pml_on_cosine(pm: float, nm: float) -> None:
    emb, labels, sim, pos, neg = _batch(2)
    ours = PairMarginMiner(pm, nm)(sim, pos, neg)
    theirs = _pml(pml_miners.PairMarginMiner(pm, nm, distance=COS()), emb, labels)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
    assert ours[0].any() and ours[1].any()


def test_pair_margin_defaults_are_pml_euclidean_defaults() -> None:
    """PML's defaults (Euclidean 0.2 / 0.8 on unit vectors) give the same pairs as ours."""
    emb, labels, sim, pos, neg = _batch(3, b=24, classes=2)
    emb = emb + 3.0 * torch.nn.functional.one_hot(labels, 5).double()  # close positives
    sim = similarity_matrix(emb, emb, "cosine")
    ours = PairMarginMiner()(sim, pos, neg)
    theirs = _pml(pml_miners.PairMarginMiner(), emb, labels)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])


def test_pair_margin_with_reference_matches_pml() -> None:
    (emb, labels, sim, pos, neg), ref, ref_labels = _ref_batch()
    ours = PairMarginMiner(0.3, 0.0)(sim, pos, neg)
    theirs = _pml(
        pml_miners.PairMarginMiner(0.3, 0.0, distance=COS()), emb, labels, ref, ref_labels
    )
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])


# ---------------------------------------------------------------- batch easy/hard

COMBOS = [
    (p, n)
    for p in ("easy", "semihard", "hard", "all")
    for n in ("easy", "semihard", "hard", "all")
    if not (p == n == "semihard") and {p, n} != {"semihard", "all"}
]


@pytest.mark.parametrize(("ps", "ns"), COMBOS)
@pytest.mark.parametrize("ranges", [None, ((-0.5, 0.9), (-0.2, 0.6))])
def test_batch_easy_hard_matches_pml(ps: str, ns: str, ranges) -> None:
    emb, labels, sim, pos, neg = _batch(4, b=18, classes=3)
    pr, nr = ranges or (None, None)
    ours = BatchEasyHardMiner(ps, ns, pr, nr)(sim, pos, neg)
    pml = pml_miners.BatchEasyHardMiner(ps, ns, pr, nr, distance=COS())
    theirs = _pml(pml, emb, labels)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
    assert ours[0].any() and ours[1].any()


@pytest.mark.parametrize(
    ("ps", "ns"), [("easy", "semihard"), ("hard", "hard"), ("semihard", "easy")]
)
def test_batch_easy_hard_with_reference_and_pml_euclidean(ps: str, ns: str) -> None:
    (emb, labels, sim, pos, neg), ref, ref_labels = _ref_batch(5)
    ours = BatchEasyHardMiner(ps, ns)(sim, pos, neg)
    theirs = _pml(pml_miners.BatchEasyHardMiner(ps, ns), emb, labels, ref, ref_labels)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])


def test_batch_easy_hard_loop_reference() -> None:
    """Default (easy positive, semihard negative) against a plain loop."""
    _, _, sim, pos, neg = _batch(6)
    kept_p, kept_n = BatchEasyHardMiner()(sim, pos, neg)
    for i in range(sim.shape[0]):
        ps = [j for j in range(sim.shape[1]) if pos[i, j]]
        p = max(ps, key=lambda j: sim[i, j]) if ps else None
        ns = [
            j for j in range(sim.shape[1]) if neg[i, j] and p is not None and sim[i, j] < sim[i, p]
        ]
        n = max(ns, key=lambda j: sim[i, j]) if ns else None
        want_p = {p} if n is not None else set()
        want_n = {n} if n is not None else set()
        assert set(torch.nonzero(kept_p[i]).flatten().tolist()) == want_p
        assert set(torch.nonzero(kept_n[i]).flatten().tolist()) == want_n


def test_batch_easy_hard_rejects_bad_strategies() -> None:
    with pytest.raises(ValueError, match="expected one of"):
        BatchEasyHardMiner("medium", "hard")
    with pytest.raises(ValueError, match="at most one 'semihard'"):
        BatchEasyHardMiner("semihard", "semihard")
    with pytest.raises(ValueError, match="not with 'all'"):
        BatchEasyHardMiner("all", "semihard")
    with pytest.raises(ValueError, match="low <= high"):
        BatchEasyHardMiner(pos_range=(0.5, 0.1))


# ---------------------------------------------------------------- HDC


@pytest.mark.parametrize("f", [0.1, 0.3, 0.5, 1.0])
def test_hdc_matches_pml_with_reference(f: float) -> None:
    (emb, labels, sim, pos, neg), ref, ref_labels = _ref_batch(7)
    ours = HDCMiner(f)(sim, pos, neg)
    theirs = _pml(pml_miners.HDCMiner(f, distance=COS()), emb, labels, ref, ref_labels)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
    assert int(ours[0].sum()) == math.ceil(f * int(pos.sum()))
    assert int(ours[1].sum()) == math.ceil(f * int(neg.sum()))


@pytest.mark.parametrize("f", [0.25, 0.5])
def test_hdc_on_the_batch_keeps_pml_values(f: float) -> None:
    """On the batch itself (i, j) and (j, i) tie; the kept similarities agree as multisets."""
    emb, labels, sim, pos, neg = _batch(8)
    ours = HDCMiner(f)(sim, pos, neg)
    theirs = _pml(pml_miners.HDCMiner(f), emb, labels)  # Euclidean: same order
    for a, b in zip(ours, theirs, strict=True):
        assert torch.allclose(sim[a].sort().values, sim[b].sort().values, atol=1e-12)


def test_hdc_ties_keep_the_lowest_flat_indices() -> None:
    sim = torch.zeros(4, 4, dtype=torch.float64)
    pos = ~torch.eye(4, dtype=torch.bool)
    kept, _ = HDCMiner(0.4)(sim, pos, torch.zeros_like(pos))  # ceil(0.4 * 12) = 5 of 12 ties
    flat = torch.nonzero(pos.reshape(-1)).squeeze(1)[:5]
    assert torch.equal(torch.nonzero(kept.reshape(-1)).squeeze(1), flat)


def test_hdc_rejects_bad_fraction() -> None:
    for f in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="filter_percentage"):
            HDCMiner(f)


# ---------------------------------------------------------------- angular


def _angular_loop(emb: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, angle: float):
    x = torch.nn.functional.normalize(emb, dim=1)
    kp, kn = torch.zeros_like(pos), torch.zeros_like(neg)
    for a in range(len(x)):
        for p in range(len(x)):
            for n in range(len(x)):
                if not (pos[a, p] and neg[a, n]):
                    continue
                c = (x[a] + x[p]) / 2
                ang = math.atan(float((x[a] - x[p]).norm() / (2 * (x[n] - c).norm())))
                if ang > math.radians(angle):
                    kp[a, p] = kn[a, n] = True
    return kp, kn


@pytest.mark.parametrize("angle", [10.0, 20.0, 35.0, 50.0])
def test_angular_matches_pml_and_loop(angle: float) -> None:
    emb, labels, sim, pos, neg = _batch(9, b=14, classes=3)
    ours = AngularMiner(angle)(sim, pos, neg)
    # PML measures the angle on the embeddings as given (its pairwise_distance skips the
    # distance's normalisation): unit rows are the matching setting
    unit = torch.nn.functional.normalize(emb, dim=1)
    theirs = _pml(pml_miners.AngularMiner(angle), unit, labels)
    loop = _angular_loop(emb, pos, neg, angle)
    for a, b, c in zip(ours, theirs, loop, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)
    assert ours[0].any()


def test_angular_larger_angles_keep_fewer_pairs() -> None:
    _, _, sim, pos, neg = _batch(9, b=14, classes=3)
    counts = [int(sum(m.sum() for m in AngularMiner(a)(sim, pos, neg))) for a in (10, 30, 50, 70)]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]


def test_angular_chunks_give_the_same_pairs() -> None:
    _, _, sim, pos, neg = _batch(10, b=12)
    whole = AngularMiner(25.0)(sim, pos, neg)
    import dmlkit.losses.miners_more as mm

    original = mm.row_chunks
    mm.row_chunks = lambda rows, per_row: row_chunks(rows, per_row, budget=1)  # type: ignore[assignment]
    try:
        one_row = AngularMiner(25.0)(sim, pos, neg)
    finally:
        mm.row_chunks = original
    assert torch.equal(whole[0], one_row[0]) and torch.equal(whole[1], one_row[1])


def test_angular_refuses_a_reference_and_bad_angles() -> None:
    (_, _, sim, pos, neg), _, _ = _ref_batch()
    with pytest.raises(ValueError, match="square S with unit diagonal"):
        AngularMiner()(sim, pos, neg)
    for a in (0.0, 90.0, -5.0):
        with pytest.raises(ValueError, match="angle"):
            AngularMiner(a)


# ---------------------------------------------------------------- uniform histogram


def _bin_counts(values: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Counts of ``values`` per bin of ``edges`` by PML's rule (``[e_i, e_i+1)``, last closed)."""
    last = len(edges) - 2
    return torch.stack(
        [
            (
                (edges[i] <= values)
                & ((values < edges[i + 1]) if i < last else (values <= edges[i + 1]))
            ).sum()
            for i in range(last + 1)
        ]
    )


@pytest.mark.parametrize(("bins", "per_bin"), [(10, 2), (5, 7), (100, 1), (3, 1000)])
def test_uniform_histogram_takes_min_of_size_and_per_bin_from_pml_bins(
    bins: int, per_bin: int
) -> None:
    emb, labels, sim, pos, neg = _batch(11, b=20)
    gen = torch.Generator().manual_seed(0)
    kept = UniformHistogramMiner(bins, per_bin, per_bin, generator=gen)(sim, pos, neg)
    torch.manual_seed(0)
    pml_miner = pml_miners.UniformHistogramMiner(bins, per_bin, per_bin, distance=COS())
    pml = _pml(pml_miner, emb, labels)
    for mask, k, theirs in zip((pos, neg), kept, pml, strict=True):
        assert not (k & ~mask).any() and not (theirs & ~mask).any()
        edges = pml_miner.get_bins(sim[mask])  # PML's edges on the side's values
        all_counts = _bin_counts(sim[mask], edges)
        assert int(all_counts.sum()) == int(mask.sum())
        assert torch.equal(_bin_counts(sim[k], edges), all_counts.clamp(max=per_bin))
        # PML draws with replacement: every non-empty bin gives at least one distinct pair
        theirs_counts = _bin_counts(sim[theirs], edges)
        assert torch.equal(theirs_counts > 0, all_counts > 0)
        assert bool((theirs_counts <= all_counts.clamp(max=per_bin)).all())


def test_uniform_histogram_is_reproducible_and_random() -> None:
    _, _, sim, pos, neg = _batch(12, b=20)
    draws = [
        UniformHistogramMiner(4, 2, 2, generator=torch.Generator().manual_seed(s))(sim, pos, neg)
        for s in (0, 0, 1)
    ]
    assert torch.equal(draws[0][1], draws[1][1]) and not torch.equal(draws[0][1], draws[2][1])


def test_uniform_histogram_equal_values_fall_in_the_last_bin() -> None:
    sim = torch.full((3, 3), 0.5, dtype=torch.float64)
    pos = ~torch.eye(3, dtype=torch.bool)
    kept, _ = UniformHistogramMiner(4, 2, 2, generator=torch.Generator().manual_seed(0))(
        sim, pos, torch.zeros_like(pos)
    )
    assert int(kept.sum()) == 2


# ---------------------------------------------------------------- all new miners


NEW = {
    "pair_margin": {},
    "batch_easy_hard": {},
    "hdc": {},
    "angular": {},
    "uniform_histogram": {"generator": torch.Generator().manual_seed(0)},
}


@pytest.mark.parametrize("name", sorted(NEW))
def test_subsets_no_grad_and_edge_cases(name: str) -> None:
    miner = MINERS.create(name, **NEW[name])
    _, labels, sim, pos, neg = _batch(13)
    s = sim.clone().requires_grad_(True)
    p, n = miner(s, pos, neg)
    assert p.dtype == n.dtype == torch.bool and not (p & ~pos).any() and not (n & ~neg).any()
    # one class: no negatives; nothing invented
    one = torch.zeros_like(labels)
    pos1, neg1 = relation_masks(one, one, self_index=torch.arange(len(one)))
    p, n = miner(sim, pos1, neg1)
    assert not n.any() and not (p & ~pos1).any()
    # all classes distinct: no positives
    pos2, neg2 = relation_masks(torch.arange(16), torch.arange(16), self_index=torch.arange(16))
    p, n = miner(sim, pos2, neg2)
    assert not p.any() and not (n & ~neg2).any()


@pytest.mark.parametrize("name", sorted(NEW))
def test_usable_in_any_pair_loss(name: str) -> None:
    emb, labels, _, _, _ = _batch(14)
    for loss_name in ("contrastive", "binomial", "lifted"):
        loss_fn = create(loss_name, miner=MINERS.create(name, **NEW[name]))
        x = emb.clone().requires_grad_(True)
        loss = loss_fn(x, labels)
        loss.backward()
        assert torch.isfinite(loss) and x.grad is not None and torch.isfinite(x.grad).all()


def test_every_miner_has_family_and_source() -> None:
    for name in MINERS.names():
        info = MINERS.info(name)
        assert info.family and info.source, name
