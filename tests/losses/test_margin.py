"""Margin loss (Wu et al. 2017): loop references, PML parity, gradcheck, betas, edge cases."""

from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses

from dmlkit.core import relation_masks
from dmlkit.losses import create
from dmlkit.losses.margin import MarginLoss
from dmlkit.losses.triplet_sampling import DistanceWeightedSampler, cosine_to_distance


def _batch(seed: int, b: int = 14, d: int = 6, classes: int = 4) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (b,), generator=g)
    return x, y


def loop_reference(
    x: torch.Tensor,
    y: torch.Tensor,
    triplets: list[tuple[int, int, int]],
    beta: list[float],
    margin: float = 0.2,
    nu: float = 0.0,
    per_triplet: bool = False,
) -> float:
    """Sum the two hinges of every triplet one by one; divide by the number of non-zero hinges, or
    with ``per_triplet`` by the number of triplets with a non-zero hinge (the Revisiting-DML and
    DiVA code: ``sum((pos_loss > 0) + (neg_loss > 0))`` of two bool tensors, a logical OR)."""
    xn = x / x.norm(dim=1, keepdim=True)
    total, active = 0.0, 0
    for a, p, n in triplets:
        b = beta[int(y[a])] if len(beta) > 1 else beta[0]
        lp = max(float((xn[a] - xn[p]).norm()) - b + margin, 0.0)
        ln = max(b - float((xn[a] - xn[n]).norm()) + margin, 0.0)
        total += lp + ln + nu * b
        active += (lp > 0 or ln > 0) if per_triplet else (lp > 0) + (ln > 0)
    return total / max(active, 1)


def _all_triplets(y: torch.Tensor) -> list[tuple[int, int, int]]:
    n = len(y)
    return [
        (a, p, k)
        for a in range(n)
        for p in range(n)
        for k in range(n)
        if p != a and y[p] == y[a] and y[k] != y[a]
    ]


def _with_betas(loss: torch.nn.Module, values: torch.Tensor) -> torch.nn.Module:
    with torch.no_grad():
        loss.beta.copy_(values)
    return loss


@pytest.mark.parametrize("nu", [0.0, 0.05])
def test_all_triplets_match_loop(nu: float) -> None:
    x, y = _batch(0)
    betas = torch.tensor([0.9, 1.0, 1.1, 1.25])
    loss = _with_betas(MarginLoss(4, nu=nu, triplets="all"), betas).double()
    expected = loop_reference(x, y, _all_triplets(y), betas.tolist(), nu=nu)
    assert loss(x, y).item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("nu", [0.0, 0.05])
def test_active_triplets_normaliser_matches_loop(nu: float) -> None:
    """normalize='active_triplets' divides by the triplets with any active hinge (all triplets in
    closed form, sampled and given triplets one by one); the default by the active hinges."""
    x, y = _batch(3, b=16, classes=4)
    betas = torch.tensor([0.95, 1.0, 1.1, 1.2])
    every = _all_triplets(y)
    for triplets in ("all", "distance_weighted"):
        loss = MarginLoss(
            4, nu=nu, triplets=triplets, normalize="active_triplets", upper_cutoff=None
        )
        loss = _with_betas(loss, betas).double()
        if triplets == "distance_weighted":
            xn = x / x.norm(dim=1, keepdim=True)
            pos, neg = relation_masks(y, y, self_index=torch.arange(16))
            sampled = DistanceWeightedSampler(upper_cutoff=None)(
                cosine_to_distance(xn @ xn.T), pos, neg, 6
            )
            given = list(zip(*(t.tolist() for t in sampled), strict=True))
            value = loss(x, y, triplets=sampled).item()
        else:
            given, value = every, loss(x, y).item()
        expected = loop_reference(x, y, given, betas.tolist(), nu=nu, per_triplet=True)
        assert value == pytest.approx(expected, rel=1e-10)
        terms = loop_reference(x, y, given, betas.tolist(), nu=nu)
        assert terms < expected  # some triplets have both hinges active here
    with pytest.raises(ValueError, match="normalize"):
        MarginLoss(4, normalize="pairs")  # type: ignore[arg-type]


def test_hand_placed_normalisers() -> None:
    # a=(1,0): p=(0,1) at d = sqrt 2 (positive hinge sqrt2 - 1.2 + 0.2 active), n=(0.8,0.6) at
    # d = sqrt(0.4) (negative hinge 1.2 - 0.632 + 0.2 active): two active terms, one triplet
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1])
    trip = (torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    total = (2**0.5 - 1.2 + 0.2) + (1.2 - 0.4**0.5 + 0.2)
    for normalize, divisor in (("active_terms", 2), ("active_triplets", 1)):
        loss = _with_betas(MarginLoss(normalize=normalize).double(), torch.tensor([1.2]))
        assert loss(x, y, triplets=trip).item() == pytest.approx(total / divisor, rel=1e-12)


def test_per_anchor_triplets_one_per_anchor_uniform_positive() -> None:
    """per_anchor: every anchor with a positive and a negative gives one triplet; its positive is
    uniform over the anchor's positives (chi-square over many draws), its negative drawn by
    distance as per positive pair."""
    x, y = _batch(9, b=12, classes=3)
    xn = x / x.norm(dim=1, keepdim=True)
    pos, neg = relation_masks(y, y, self_index=torch.arange(12))
    dist = cosine_to_distance(xn @ xn.T)
    sampler = DistanceWeightedSampler(generator=torch.Generator().manual_seed(1), per_anchor=True)
    counts = torch.zeros(12, 12)
    for _ in range(600):
        a, p, n = sampler(dist, pos, neg, 6)
        assert a.tolist() == [i for i in range(12) if pos[i].any()]
        assert bool(pos[a, p].all()) and bool(neg[a, n].all())
        counts[a, p] += 1
    for i in range(12):
        row = counts[i][pos[i]]
        if row.numel() > 1:
            expected = row.sum() / row.numel()
            chi2 = float(((row - expected) ** 2 / expected).sum())
            assert chi2 < 25.0  # df <= 5: p < 1e-4 under uniformity
    loss = MarginLoss(3, per_anchor=True).double()
    assert loss.sampler.per_anchor


def test_hand_placed_triplet() -> None:
    # a=(1,0), p=(0,1) at d = sqrt 2, n=(-1,0) at d = 2; beta 1.2, margin 0.2:
    # positive hinge sqrt2 - 1.2 + 0.2 = 0.4142 (active), negative hinge 1.2 - 2 + 0.2 < 0
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1])
    loss = MarginLoss().double()
    trip = (torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    beta = loss.beta.item()  # 1.2 as stored in float32
    assert loss(x, y, triplets=trip).item() == pytest.approx(2**0.5 - beta + 0.2, rel=1e-12)


def test_sampled_triplets_match_loop() -> None:
    x, y = _batch(7, b=12, classes=3)
    loss = create("margin", num_classes=3, generator=torch.Generator().manual_seed(3)).double()
    value = loss(x, y)
    xn = x / x.norm(dim=1, keepdim=True)
    pos, neg = relation_masks(y, y, self_index=torch.arange(12))
    sampler = DistanceWeightedSampler(generator=torch.Generator().manual_seed(3))
    a, p, n = sampler(cosine_to_distance(xn @ xn.T), pos, neg, 6)
    triplets = list(zip(a.tolist(), p.tolist(), n.tolist(), strict=True))
    expected = loop_reference(x, y, triplets, loss.beta.tolist())
    assert value.item() == pytest.approx(expected, rel=1e-10)


def _pml_margin(num_classes: int | None, nu: float, betas: torch.Tensor) -> torch.nn.Module:
    theirs = pml_losses.MarginLoss(0.2, nu=nu, beta=1.2, learn_beta=True, num_classes=num_classes)
    return _with_betas(theirs.double(), betas.double())


@pytest.mark.parametrize(("num_classes", "nu"), [(5, 0.0), (5, 0.01), (None, 0.0)])
@pytest.mark.parametrize("given", [False, True])
def test_parity_with_pml(num_classes: int | None, nu: float, given: bool) -> None:
    # all triplets (PML's default without a miner) or the same given (a, p, n) for both
    x, y = _batch(6, b=30, d=8, classes=5)
    betas = torch.linspace(1.0, 1.3, 5) if num_classes else torch.tensor([1.1])
    ours = _with_betas(MarginLoss(num_classes, nu=nu, triplets="all"), betas).double()
    theirs = _pml_margin(num_classes, nu, betas)
    trip = None
    if given:
        xn = x / x.norm(dim=1, keepdim=True)
        pos, neg = relation_masks(y, y, self_index=torch.arange(30))
        trip = DistanceWeightedSampler(generator=torch.Generator().manual_seed(0))(
            cosine_to_distance(xn @ xn.T), pos, neg, 8
        )
    e1, e2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    v1, v2 = ours(e1, y, triplets=trip), theirs(e2, y, trip)
    torch.testing.assert_close(v1, v2, rtol=1e-9, atol=0)
    v1.backward()
    v2.backward()
    torch.testing.assert_close(e1.grad, e2.grad, rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(ours.beta.grad, theirs.beta.grad, rtol=1e-6, atol=1e-12)


def test_single_beta_regulariser_differs_from_pml_as_documented() -> None:
    # PML adds nu * beta once, undivided; here nu * sum_t beta is divided by #active (Wu et al.)
    x, y = _batch(8, b=20, classes=4)
    ours = MarginLoss(None, nu=0.1, triplets="all").double()
    theirs = _pml_margin(None, 0.1, torch.tensor([1.2]))
    beta = ours.beta.tolist()
    assert ours(x, y).item() == pytest.approx(
        loop_reference(x, y, _all_triplets(y), beta, nu=0.1), rel=1e-10
    )
    without = MarginLoss(None, triplets="all").double()(x, y)
    torch.testing.assert_close(theirs(x, y), without + 0.1 * beta[0])


def test_gradcheck_embeddings_and_betas() -> None:
    x, y = _batch(4, b=8, d=3, classes=3)
    loss = MarginLoss(3, nu=0.01, margin=0.3, triplets="all").double()
    beta = torch.tensor([0.9, 1.0, 1.1], dtype=torch.float64, requires_grad=True)

    def fn(e: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(loss, {"beta": b}, (e, y))

    assert torch.autograd.gradcheck(fn, (x.requires_grad_(True), beta), atol=1e-7)
    trip = (torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5]), torch.tensor([6, 7, 0]))
    sampled = MarginLoss(3, margin=0.3).double()
    assert torch.autograd.gradcheck(lambda e: sampled(e, y, triplets=trip), (x,), atol=1e-7)


def test_same_generator_same_loss_and_betas_stay_float32() -> None:
    x, y = _batch(8, b=20, classes=4)
    v1 = create("margin", num_classes=4, generator=torch.Generator().manual_seed(0))(x.float(), y)
    v2 = create("margin", num_classes=4, generator=torch.Generator().manual_seed(0))(x.float(), y)
    v3 = create("margin", num_classes=4, generator=torch.Generator().manual_seed(1))(x.float(), y)
    assert torch.equal(v1, v2) and not torch.equal(v1, v3)
    loss = create("margin", num_classes=4)
    layer = torch.nn.Linear(6, 6)
    for dtype in (torch.bfloat16, torch.float16):
        with torch.autocast("cpu", dtype=dtype):
            value = loss(layer(x.float()), y)
        value.backward()
        assert value.dtype == torch.float32 and torch.isfinite(value)
    assert loss.beta.dtype == torch.float32 and torch.isfinite(loss.beta.grad).all()
    groups = loss.param_groups(lr=5e-4)
    assert groups[0]["params"][0] is loss.beta and groups[0]["lr"] == 5e-4
    assert [p for p in loss.parameters()] == [loss.beta]


def test_autocast_close_to_float32() -> None:
    g = torch.Generator().manual_seed(0)
    inputs, y = torch.randn(32, 16, generator=g), torch.randint(0, 6, (32,), generator=g)
    layer = torch.nn.Linear(16, 8)
    loss = MarginLoss(6, triplets="all")
    reference = loss(layer(inputs), y)
    for dtype in (torch.bfloat16, torch.float16):
        with torch.autocast("cpu", dtype=dtype):
            value = loss(layer(inputs), y)
        torch.testing.assert_close(value, reference, rtol=0.05, atol=0.05)


def test_permutation_and_reference_forms() -> None:
    x, y = _batch(5, b=16)
    loss = MarginLoss(4, triplets="all").double()
    base = loss(x, y)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loss(x[perm], y[perm]), base)
    torch.testing.assert_close(loss(x, y, x, y), base)
    torch.testing.assert_close(loss(x, y, x.clone(), y, self_index=torch.arange(16)), base)
    # renaming classes renames the betas: the loss is the same with the betas permuted alike
    rename = torch.tensor([2, 0, 3, 1])
    renamed = MarginLoss(4, triplets="all").double()
    _with_betas(renamed, loss.beta.detach()[torch.argsort(rename)])
    torch.testing.assert_close(renamed(x, rename[y]), base)


@pytest.mark.parametrize("triplets", ["all", "distance_weighted"])
@pytest.mark.parametrize("case", ["no_positives", "one_class", "single_row", "all_zero"])
def test_degenerate_batches_give_a_connected_zero(triplets: str, case: str) -> None:
    labels = {
        "no_positives": [0, 1, 2, 3],
        "one_class": [0, 0, 0, 0],
        "single_row": [2],
        "all_zero": [0, 0, 1, 1],
    }[case]
    if case == "all_zero":  # d_ap ~ 0 < beta - margin and d_an = 2 > beta + margin
        x = torch.tensor([[1.0, 0.0], [1.0, 1e-3], [-1.0, 0.0], [-1.0, 1e-3]], dtype=torch.float64)
    else:
        x = torch.randn(len(labels), 3, dtype=torch.float64)
    x.requires_grad_(True)
    loss = MarginLoss(4, triplets=triplets).double()
    value = loss(x, torch.tensor(labels))
    assert value.ndim == 0 and value.requires_grad and value.item() == 0.0
    value.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    assert torch.equal(loss.beta.grad, torch.zeros_like(loss.beta))


def test_custom_sampler_is_used() -> None:
    x, y = _batch(9, b=10, classes=2)
    seen = []

    def first_negative(sim, pos, neg, dim):  # one triplet per anchor: first positive, negative
        seen.append(dim)
        rows = torch.nonzero(pos.any(1) & neg.any(1)).squeeze(1)
        return rows, pos[rows].int().argmax(1), neg[rows].int().argmax(1)

    loss = MarginLoss(2, triplets=first_negative).double()
    value = loss(x, y)
    xn = x / x.norm(dim=1, keepdim=True)
    pos, neg = relation_masks(y, y, self_index=torch.arange(10))
    trip = first_negative(xn @ xn.T, pos, neg, 6)
    triplets = list(zip(*(t.tolist() for t in trip), strict=True))
    expected = loop_reference(x, y, triplets, loss.beta.tolist())
    assert seen == [6, 6] and value.item() == pytest.approx(expected, rel=1e-10)


def test_bad_inputs() -> None:
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\)"):
        create("margin", num_classes=3)(x, y)
    with pytest.raises(ValueError, match="triplets"):
        MarginLoss(triplets="semihard")
    with pytest.raises(ValueError, match="num_classes"):
        MarginLoss(0)
    with pytest.raises(ValueError, match="nu"):
        MarginLoss(nu=-1.0)
    loss = MarginLoss(4)
    with pytest.raises(TypeError, match="tuple"):
        loss(x, y, triplets=torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="int64"):
        loss(x, y, triplets=(torch.tensor([0.0]), torch.tensor([1]), torch.tensor([2])))
    with pytest.raises(ValueError, match="one length"):
        loss(x, y, triplets=(torch.tensor([0, 1]), torch.tensor([1]), torch.tensor([2])))
    with pytest.raises(ValueError, match=r"n in \[0, 4\)"):
        loss(x, y, triplets=(torch.tensor([0]), torch.tensor([1]), torch.tensor([4])))
    with pytest.raises(TypeError, match="forward"):
        loss.from_similarity(torch.zeros(4, 4), torch.eye(4).bool(), ~torch.eye(4).bool())
    with pytest.raises(ValueError, match=r"class ids of shape \(B,\)"):
        loss(x, torch.eye(4, dtype=torch.long))
