"""Triplet family: loop references, exact gradients, PML parity, invariances, edge cases, dtypes."""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning import reducers as pml_reducers

from dmlkit.core import relation_masks
from dmlkit.losses import create
from dmlkit.losses.triplet import BatchHardTripletLoss, TripletLoss
from tests.losses.grads import value_and_grad

COS = pml_distances.CosineSimilarity()
MINING_OF = {
    "triplet": "all",
    "triplet_semihard": "semihard",
    "triplet_hard_negatives": "hard",
    "triplet_semihard_nearest": "semihard_nearest",
    "triplet_batch_hard": "batch_hard",
}
TRIPLET_NAMES = sorted(MINING_OF)
REDUCTIONS = ["mean_active", "mean", "sum"]


def _batch(seed: int, b: int = 14, d: int = 5, classes: int = 4) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (b,), generator=g)
    return x, y


def _loss(name: str, margin: float = 0.1, reduction: str | None = None) -> torch.nn.Module:
    mining = MINING_OF[name]
    reduction = reduction or ("mean" if mining == "semihard_nearest" else "mean_active")
    if mining == "batch_hard":
        return BatchHardTripletLoss(margin, reduction=reduction)
    return TripletLoss(margin, mining, reduction=reduction)


def _selected_triplets(
    s: list[list[float]], ps: list[int], ns: list[int], a: int, mining: str, margin: float
) -> list[tuple[int, int]]:
    """(p, n) of anchor ``a`` chosen by ``mining``, by enumeration (PML / TensorFlow rules)."""
    if not ps or not ns:
        return []
    if mining == "batch_hard":
        return [(min(ps, key=lambda p: s[a][p]), max(ns, key=lambda n: s[a][n]))]
    chosen = []
    for p in ps:
        if mining == "semihard_nearest":
            farther = [n for n in ns if s[a][n] < s[a][p]]
            n = max(farther, key=lambda n: s[a][n]) if farther else min(ns, key=lambda n: s[a][n])
            chosen.append((p, n))
            continue
        for n in ns:
            gap = s[a][p] - s[a][n]  # PML's triplet_margin for a similarity
            keep = {"all": True, "semihard": 0 < gap <= margin, "hard": gap <= 0}[mining]
            if keep:
                chosen.append((p, n))
    return chosen


def loop_reference(
    sim: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
    margin: float,
    mining: str,
    reduction: str,
) -> float:
    """Enumerate every anchor, positive and negative explicitly."""
    s = sim.tolist()
    losses = []
    for a in range(len(s)):
        ps = [j for j in range(len(s[a])) if pos[a, j]]
        ns = [j for j in range(len(s[a])) if neg[a, j]]
        for p, n in _selected_triplets(s, ps, ns, a, mining, margin):
            losses.append(max(s[a][n] - s[a][p] + margin, 0.0))
    total = sum(losses)
    if reduction == "sum":
        return total
    count = len(losses) if reduction == "mean" else sum(v > 0 for v in losses)
    return total / max(count, 1)


def _cosine(x: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
    xn = x / x.norm(dim=1, keepdim=True)
    rn = xn if ref is None else ref / ref.norm(dim=1, keepdim=True)
    return xn @ rn.T


def test_hand_placed_points_every_variant() -> None:
    # unit circle, margin 0.3: anchor A at 0 deg and positive P at 60 deg (s_AP = 0.5); negatives
    # N1 at 30 deg, N2 at 75 deg, N3 at 180 deg. Seen from A: N1 is hard (0.866 >= 0.5), N2
    # semi-hard (0.2 <= 0.259 < 0.5), N3 easy. Seen from P: N1 (0.866) and N2 (0.966) are hard.
    deg = [0, 60, 30, 75, 180]
    x = torch.tensor(
        [[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in deg], dtype=torch.float64
    )
    y = torch.tensor([0, 0, 1, 2, 3])
    c = [math.cos(math.radians(a)) for a in (30, 75, 15)]  # s_A,N1 = s_P,N1; s_A,N2; s_P,N2
    a_n1, a_n2, p_n2 = (c[0] - 0.5 + 0.3, c[1] - 0.5 + 0.3, c[2] - 0.5 + 0.3)
    expected = {
        "triplet": (a_n1 + a_n2 + a_n1 + p_n2) / 4,
        "triplet_semihard": a_n2,
        "triplet_hard_negatives": (a_n1 + a_n1 + p_n2) / 3,
        "triplet_batch_hard": (a_n1 + p_n2) / 2,
        # nearest negative farther than the positive: N2 for A; N3 for P (hinge 0); mean over 2
        "triplet_semihard_nearest": a_n2 / 2,
    }
    for name, value in expected.items():
        assert create(name, margin=0.3)(x, y).item() == pytest.approx(value, rel=1e-12), name


@pytest.mark.parametrize("name", TRIPLET_NAMES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_loop_reference(name: str, reduction: str, seed: int) -> None:
    x, y = _batch(seed)
    for margin in (0.0, 0.1, 0.5):
        ours = _loss(name, margin, reduction)(x, y).item()
        pos, neg = relation_masks(y, y, self_index=torch.arange(len(y)))
        ref = loop_reference(_cosine(x), pos, neg, margin, MINING_OF[name], reduction)
        assert ours == pytest.approx(ref, rel=1e-10, abs=1e-14)


@pytest.mark.parametrize("name", TRIPLET_NAMES)
def test_memory_reference_set_matches_loop(name: str) -> None:
    x, y = _batch(2, b=6)
    ref, ref_y = _batch(3, b=17)
    ours = _loss(name, 0.2)(x, y, ref, ref_y).item()
    pos, neg = relation_masks(y, ref_y)
    reduction = "mean" if name == "triplet_semihard_nearest" else "mean_active"
    expected = loop_reference(_cosine(x, ref), pos, neg, 0.2, MINING_OF[name], reduction)
    assert ours == pytest.approx(expected, rel=1e-10)


def test_all_triplets_gradient_is_the_active_count() -> None:
    # GPW: dL/ds_ap = -#active negatives of (a, p) / A and dL/ds_an = #positives with (a, p, n)
    # active / A, where A is the number of active triplets.
    x, y = _batch(5, b=16)
    loss = TripletLoss(0.3)
    pos, neg = relation_masks(y, y, self_index=torch.arange(16))
    sim = _cosine(x).requires_grad_(True)
    (grad,) = torch.autograd.grad(loss.from_similarity(sim, pos, neg), sim)
    s = sim.detach()
    active = (s[:, None, :] - s[:, :, None] + 0.3 > 0) & pos[:, :, None] & neg[:, None, :]
    expected = active.sum(1).double() - active.sum(2).double()  # + as negative, - as positive
    torch.testing.assert_close(grad, expected / active.sum(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", TRIPLET_NAMES)
def test_gradcheck(name: str) -> None:
    x, y = _batch(4, b=9, d=3, classes=3)
    loss = create(name, margin=0.3)
    assert torch.autograd.gradcheck(lambda e: loss(e, y), (x.requires_grad_(True),), atol=1e-7)


def _pml_miner(mining: str) -> object | None:
    if mining == "batch_hard":
        return pml_miners.BatchHardMiner(distance=COS)
    if mining == "all_mined":
        return pml_miners.TripletMarginMiner(0.1, type_of_triplets="all", distance=COS)
    if mining == "all":
        return None
    return pml_miners.TripletMarginMiner(0.1, type_of_triplets=mining, distance=COS)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("mining", ["all", "all_mined", "semihard", "hard", "batch_hard"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_parity_with_pml(seed: int, mining: str, reduction: str) -> None:
    x, y = _batch(seed, b=40, d=16, classes=6)
    ours = (
        BatchHardTripletLoss(0.1, reduction=reduction)
        if mining == "batch_hard"
        else TripletLoss(0.1, "all" if mining == "all_mined" else mining, reduction=reduction)
    )
    if mining == "all_mined" and reduction == "mean":
        # PML's "all" miner keeps only triplets with a non-negative hinge, so its mean is ours
        # over active triplets (up to triplets exactly at the margin, which have none here)
        ours = TripletLoss(0.1, "all", reduction="mean_active")
    reducer = {
        "mean_active": pml_reducers.AvgNonZeroReducer(),
        "mean": pml_reducers.MeanReducer(),
        "sum": pml_reducers.SumReducer(),
    }[reduction]
    theirs = pml_losses.TripletMarginLoss(0.1, distance=COS, reducer=reducer)
    miner = _pml_miner(mining)
    v1, g1 = value_and_grad(lambda e: ours(e, y), x)
    v2, g2 = value_and_grad(lambda e: theirs(e, y, miner(e, y) if miner else None), x)
    torch.testing.assert_close(v1, v2, rtol=1e-4, atol=1e-12)
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-12)


@pytest.mark.parametrize("mining", ["all", "semihard", "hard"])
def test_parity_with_pml_against_a_reference_set(mining: str) -> None:
    x, y = _batch(6, b=12, d=8)
    ref, ref_y = _batch(7, b=30, d=8)
    miner = _pml_miner(mining)
    theirs = pml_losses.TripletMarginLoss(0.1, distance=COS)

    def pml(e: torch.Tensor) -> torch.Tensor:
        return theirs(e, y, miner(e, y, ref, ref_y) if miner else None, ref, ref_y)

    v1, g1 = value_and_grad(lambda e: TripletLoss(0.1, mining)(e, y, ref, ref_y), x)
    v2, g2 = value_and_grad(pml, x)
    torch.testing.assert_close(v1, v2, rtol=1e-4, atol=1e-12)
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-12)


def test_euclidean_forms_match_pml_and_the_unit_sphere_identity() -> None:
    x, y = _batch(3, b=30, d=8, classes=5)
    for power, kind in ((1, "neg_euclidean"), (2, "neg_sq_euclidean")):
        distance = pml_distances.LpDistance(normalize_embeddings=False, power=power)
        v1, g1 = value_and_grad(
            lambda e, k=kind: create("triplet", margin=0.2, similarity=k)(e, y), x
        )
        v2, g2 = value_and_grad(
            lambda e, d=distance: pml_losses.TripletMarginLoss(0.2, distance=d)(e, y), x
        )
        torch.testing.assert_close(v1, v2, rtol=1e-9, atol=0)
        torch.testing.assert_close(g1, g2, rtol=1e-6, atol=1e-12)
    # on unit vectors d² = 2 - 2s: squared L2 with margin m = 2 x cosine with margin m / 2
    xn = x / x.norm(dim=1, keepdim=True)
    sq = TripletLoss(0.4, similarity="neg_sq_euclidean", reduction="sum")(xn, y)
    torch.testing.assert_close(sq, 2 * TripletLoss(0.2, reduction="sum")(xn, y))


@pytest.mark.parametrize("name", TRIPLET_NAMES)
def test_permutation_renaming_and_reference_forms(name: str) -> None:
    x, y = _batch(5, b=16)
    loss = create(name)
    base = loss(x, y)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loss(x[perm], y[perm]), base)
    torch.testing.assert_close(loss(x, y * 3 + 5), base)
    torch.testing.assert_close(loss(x, y, x, y), base)  # ref_emb is emb: self excluded
    same = loss(x, y, x.clone(), y.clone(), self_index=torch.arange(16))
    torch.testing.assert_close(same, base)
    one_hot = torch.nn.functional.one_hot(y, 4)
    torch.testing.assert_close(loss(x, one_hot), base)  # multi-hot form of the same classes

    def relation(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        same_class = a[:, None] == b[None, :]
        return same_class, ~same_class

    torch.testing.assert_close(create(name, relation_fn=relation)(x, y), base)


def _separated(labels: list[int]) -> torch.Tensor:
    """Each class a tight cluster at its own pole: every triplet has a zero hinge."""
    poles = torch.eye(8, dtype=torch.float64)
    noise = 1e-3 * torch.randn(len(labels), 8, dtype=torch.float64)
    return poles[labels] + noise


@pytest.mark.parametrize("name", TRIPLET_NAMES)
@pytest.mark.parametrize(
    "case", ["no_positives", "one_class", "single_row", "one_per_class", "all_zero"]
)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_degenerate_batches_give_a_connected_zero(name: str, case: str, reduction: str) -> None:
    labels = {
        "no_positives": [0, 1, 2, 3],
        "one_class": [0, 0, 0, 0],
        "single_row": [5],
        "one_per_class": [3, 1, 4, 0, 2],
        "all_zero": [0, 0, 1, 1, 2, 2],
    }[case]
    x = (
        _separated(labels)
        if case == "all_zero"
        else torch.randn(len(labels), 3, dtype=torch.float64)
    )
    x.requires_grad_(True)
    value = _loss(name, 0.1, reduction)(x, torch.tensor(labels))
    assert value.ndim == 0 and value.requires_grad and value.item() == 0.0
    (grad,) = torch.autograd.grad(value, x)
    assert torch.equal(grad, torch.zeros_like(x))


@pytest.mark.parametrize("name", TRIPLET_NAMES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_stays_finite_and_close_to_float32(name: str, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    inputs, y = torch.randn(32, 16, generator=g), torch.randint(0, 6, (32,), generator=g)
    layer = torch.nn.Linear(16, 8)
    loss = create(name)
    reference = loss(layer(inputs), y)
    with torch.autocast("cpu", dtype=dtype):
        value = loss(layer(inputs), y)
    value.backward()
    assert value.dtype == torch.float32 and torch.isfinite(value)
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())
    torch.testing.assert_close(value, reference, rtol=0.05, atol=0.05)


def test_memory_is_quadratic_not_cubic() -> None:
    # B = 512: a B x B x B bool tensor alone is 128 MiB; the loss must stay within ~100 B² bytes
    from torch.profiler import ProfilerActivity, profile

    x = torch.randn(512, 32, requires_grad=True)
    y = torch.randint(0, 32, (512,))
    loss = create("triplet")
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        loss(x, y).backward()
    current = peak = 0
    events = sorted(
        (
            e.time_range.start,
            e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage,
        )
        for e in prof.events()
    )
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    assert 0 < peak < 100 * 512**2


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="mining"):
        TripletLoss(mining="easy")
    with pytest.raises(ValueError, match="reduction"):
        TripletLoss(reduction="mean_all")
    with pytest.raises(ValueError, match="margin"):
        create("triplet", margin=-0.1)
    with pytest.raises(ValueError, match="ref_labels"):
        create("triplet")(torch.randn(4, 3), torch.arange(4), torch.randn(5, 3))
    with pytest.raises(TypeError, match="integer"):
        create("triplet_hard")(torch.randn(4, 3), torch.zeros(4))


def test_registered_names() -> None:
    assert isinstance(create("triplet_hard"), BatchHardTripletLoss)
    assert create("triplet_semihard_nearest").reduction == "mean"
