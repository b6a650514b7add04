"""DRO pair losses: closed forms vs brute-force maximisation, gradient = weights, properties,
recoveries, the official code's semantics, and the edge cases that break the official code."""

from __future__ import annotations

import math

import pytest
import torch
from dro_refs import (
    official_sampled_kl_expectation,
    official_topk,
    official_topk_pn,
    ordered_pair_losses,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog, minimize

from dmlkit.losses import create
from dmlkit.losses.dro import k_from_official
from dmlkit.losses.uncertainty import (
    ChiSquarePenalty,
    KLBall,
    KLPenalty,
    SampledKL,
    TopK,
    Uniform,
    project_to_simplex,
)

DRO_PRESETS = ["dro_topk", "dro_kl", "dro_topk_pn"]


def _losses(seed: int, m: int = 12) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(m, generator=g, dtype=torch.float64) * 2


def _batch(
    seed: int, classes: int = 4, m: int = 4, d: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(classes).repeat_interleave(m)
    return torch.randn(classes * m, d, generator=g, dtype=torch.float64), y


# ---------------------------------------------------------------- closed forms vs brute force


@pytest.mark.parametrize("k", [1, 3, 7, 12])
def test_topk_equals_the_linear_program(k: int) -> None:
    l = _losses(0)
    res = linprog(-l.numpy(), A_eq=[[1.0] * 12], b_eq=[1.0], bounds=[(0, 1 / k)] * 12)
    assert TopK(k)(l).item() == pytest.approx(-res.fun, rel=1e-9)


def _maximise(objective, m: int) -> float:
    """Maximise over the simplex with a softmax parametrisation (several starts)."""
    best = -math.inf
    for seed in range(3):
        z0 = torch.randn(m, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)

        def neg(z):
            p = torch.softmax(torch.tensor(z), 0)
            return -float(objective(p))

        best = max(best, -minimize(neg, z0.numpy(), method="BFGS", options={"gtol": 1e-10}).fun)
    return best


@pytest.mark.parametrize("t", [0.05, 0.3, 2.0])
def test_kl_penalty_equals_direct_maximisation(t: float) -> None:
    l = _losses(1, m=6)
    objective = lambda p: (p * l).sum() - t * (p * torch.log(p * 6)).sum()  # noqa: E731
    assert KLPenalty(t)(l).item() == pytest.approx(_maximise(objective, 6), abs=1e-6)


@pytest.mark.parametrize("rho", [0.05, 0.5])
def test_kl_ball_equals_constrained_maximisation(rho: float) -> None:
    l = _losses(2, m=5)
    cons = {
        "type": "ineq",
        "fun": lambda p: rho - float((torch.tensor(p) * torch.log(torch.tensor(p) * 5)).sum()),
    }
    res = minimize(
        lambda p: -float((torch.tensor(p) * l).sum()),
        [0.2] * 5,
        method="SLSQP",
        bounds=[(1e-9, 1)] * 5,
        constraints=[cons, {"type": "eq", "fun": lambda p: sum(p) - 1}],
        options={"ftol": 1e-12, "maxiter": 500},
    )
    assert KLBall(rho)(l).item() == pytest.approx(-res.fun, abs=1e-5)


@pytest.mark.parametrize("lam", [0.2, 1.0, 5.0])
def test_chi_square_equals_direct_maximisation(lam: float) -> None:
    l = _losses(3, m=6)
    objective = lambda p: (p * l).sum() - lam / 2 * ((6 * p - 1) ** 2).sum() / 6  # noqa: E731
    assert ChiSquarePenalty(lam)(l).item() == pytest.approx(_maximise(objective, 6), abs=1e-6)


def test_simplex_projection() -> None:
    v = torch.tensor([0.5, 2.0, -1.0, 0.1], dtype=torch.float64)
    p = project_to_simplex(v)
    assert p.sum().item() == pytest.approx(1.0) and (p >= 0).all()
    assert torch.equal(p, torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=torch.float64))


# ---------------------------------------------------------------- gradient = weights


def _grad(uset, l: torch.Tensor) -> torch.Tensor:
    l = l.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(uset(l), l)
    return g


def test_gradients_are_the_optimal_weights() -> None:
    l = _losses(4)
    g = _grad(TopK(4), l)
    top = torch.topk(l, 4).indices
    expected = torch.zeros_like(l)
    expected[top] = 0.25
    assert torch.equal(g, expected)
    torch.testing.assert_close(_grad(KLPenalty(0.3), l), torch.softmax(l / 0.3, 0))
    gb = _grad(KLBall(0.2), l)
    assert gb.sum().item() == pytest.approx(1.0) and (gb > 0).all()
    gc = _grad(ChiSquarePenalty(1.0), l)
    torch.testing.assert_close(gc, project_to_simplex(1 / 12 + l / 12))


@pytest.mark.parametrize("name", DRO_PRESETS)
@pytest.mark.parametrize("base", ["margin", "binomial"])
def test_gradcheck(name: str, base: str) -> None:
    x, y = _batch(5, classes=3, m=3, d=3)
    loss = create(name, base=base, **({"t": 0.5} if name == "dro_kl" else {"k": 4}))
    assert torch.autograd.gradcheck(lambda e: loss(e, y), (x.requires_grad_(True),), atol=1e-6)


# ---------------------------------------------------------------- properties (research notes §8)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), shift=st.floats(-3, 3), scale=st.floats(0.1, 5))
def test_shift_equivariance_homogeneity_and_bounds(seed: int, shift: float, scale: float) -> None:
    l = _losses(seed)
    for uset in (TopK(3), KLPenalty(0.2), KLBall(0.3), ChiSquarePenalty(0.5)):
        v = uset(l).item()
        assert l.mean().item() - 1e-9 <= v <= l.max().item() + 1e-9
        assert uset(l + shift).item() == pytest.approx(v + shift, abs=1e-6)
        assert uset(l[torch.randperm(12)]).item() == pytest.approx(v, abs=1e-9)
    assert TopK(3)(scale * l).item() == pytest.approx(scale * TopK(3)(l).item())


def test_limits_and_monotonicity() -> None:
    l = _losses(6)
    assert TopK(1)(l).item() == pytest.approx(l.max().item())
    assert TopK(12)(l).item() == pytest.approx(l.mean().item())
    assert KLPenalty(1e-4)(l).item() == pytest.approx(l.max().item(), abs=1e-3)
    assert KLPenalty(1e4)(l).item() == pytest.approx(l.mean().item(), abs=1e-4)
    tops = [TopK(k)(l).item() for k in range(1, 13)]
    kls = [KLPenalty(t)(l).item() for t in (0.01, 0.1, 1.0, 10.0)]
    assert tops == sorted(tops, reverse=True) and kls == sorted(kls, reverse=True)


def test_imbalance_robustness_easy_negatives_leave_topk_unchanged() -> None:
    """Adding many easy pairs (loss 0 <= the k-th largest) leaves TopK and TopK-PN unchanged,
    while the plain mean over pairs is diluted."""
    x, y = _batch(7, classes=4, m=4)
    padded = torch.cat([x, torch.zeros(len(y), 1, dtype=torch.float64)], dim=1)
    easy = torch.zeros(40, x.shape[1] + 1, dtype=torch.float64)
    easy[:, -1] = 1.0  # orthogonal to every original item: negative loss [0.2 - 0.5 + 0]_+ = 0
    x2 = torch.cat([padded, easy])
    y2 = torch.cat([y, torch.full((40,), 99)])  # one extra class: its positives have s = 1, loss 0
    for name in ("dro_topk", "dro_topk_pn"):
        before, after = create(name, k=8)(x, y), create(name, k=8)(x2, y2)
        torch.testing.assert_close(after, before)
    plain = create("dro_topk", k=10_000)
    with pytest.warns(UserWarning):
        diluted, original = plain(x2, y2), plain(x, y)
    assert diluted < 0.2 * original


# ---------------------------------------------------------------- recoveries


def test_recoveries_uniform_and_hardest_pair() -> None:
    x, y = _batch(8)
    pos_l, neg_l = ordered_pair_losses(x, y)
    unique = torch.cat([pos_l, neg_l])  # every unique pair twice, same mean and max
    n_unique = unique.numel() // 2
    assert create("dro_topk", k=n_unique)(x, y).item() == pytest.approx(unique.mean().item())
    assert create("dro_topk", k=1)(x, y).item() == pytest.approx(unique.max().item())
    assert create("dro_mean")(x, y).item() == pytest.approx(unique.mean().item())


def test_uniform_weights_every_pair_equally() -> None:
    losses = _losses(3).requires_grad_(True)
    value = Uniform()(losses)
    (g,) = torch.autograd.grad(value, losses)
    assert value.item() == pytest.approx(losses.mean().item())
    assert torch.allclose(g, torch.full_like(losses, 1 / losses.numel()))


def test_per_anchor_kl_with_t1_on_linear_terms_is_lifted_structure() -> None:
    x, y = _batch(9)
    s = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(x, dim=1).T
    lam = 1.0
    for i in range(len(y)):
        p = [j for j in range(len(y)) if j != i and y[j] == y[i]]
        lin = lam - s[i, p]
        assert torch.logsumexp(lin, 0).item() == pytest.approx(
            KLPenalty(1.0)(lin).item() + math.log(len(p))
        )


def test_per_anchor_subsimplex_entropy_dro_is_ms_weighting() -> None:
    """(1/α) log(1 + Σ e^{α l}) = max over {p >= 0, Σ p <= 1} of <p, l> - (1/α) Σ p log p
    - (1/α) p0 log p0 with the slack p0 = 1 - Σ p (a dummy pair of loss 0)."""
    l = _losses(10, m=5) - 1.0
    alpha = 2.0
    ms_term = math.log1p(torch.exp(alpha * l).sum().item()) / alpha
    ext = torch.cat([l, torch.zeros(1, dtype=torch.float64)])
    objective = lambda p: (p * ext).sum() - (p * torch.log(p)).sum() / alpha  # noqa: E731
    assert ms_term == pytest.approx(_maximise(objective, 6), abs=1e-6)


# ---------------------------------------------------------------- the official code's numbers


@pytest.mark.parametrize("k_code", [1, 5, 20, 80])
def test_topk_reproduces_official_with_k_equal_2K(k_code: int) -> None:
    x, y = _batch(11, classes=16, m=5, d=16)  # the official batch: 80 = 16 x 5
    ours = create("dro_topk", k=k_from_official(k_code))(x, y).item()
    assert ours == pytest.approx(official_topk(x, y, k_code), rel=1e-9)


@pytest.mark.parametrize("k_code", [1, 10, 80])
def test_topk_pn_reproduces_official(k_code: int) -> None:
    x, y = _batch(12, classes=16, m=5, d=16)
    ours = create("dro_topk_pn", k=k_code)(x, y).item()
    assert ours == pytest.approx(official_topk_pn(x, y, k_code), rel=1e-9)


@pytest.mark.parametrize("k_code", [25, 40, 100])
def test_topk_pn_match_reproduces_the_official_fallback(k_code: int) -> None:
    """k above the unique positives (24 here): the official code takes all positives and as many
    hardest negatives as there are positives; the default clamp keeps k negatives instead."""
    x, y = _batch(19, classes=8, m=3, d=16)  # 24 unique positives, 252 unique negatives
    with pytest.warns(UserWarning, match="exceeds"):
        ours = create("dro_topk_pn", k=k_code, short_side="match")(x, y).item()
    assert ours == pytest.approx(official_topk_pn(x, y, k_code), rel=1e-9)
    with pytest.warns(UserWarning, match="exceeds"):
        clamped = create("dro_topk_pn", k=k_code)(x, y).item()
    pos_l, neg_l = ordered_pair_losses(x, y)  # each unique pair twice: take every other sorted
    top_neg = torch.sort(neg_l, descending=True).values[::2][:k_code]
    assert clamped == pytest.approx(0.5 * pos_l.mean().item() + 0.5 * top_neg.mean().item())
    assert clamped != pytest.approx(ours)
    # below the positives both rules are the paper's (and the official) top-k per side
    assert create("dro_topk_pn", k=10, short_side="match")(x, y).item() == pytest.approx(
        official_topk_pn(x, y, 10), rel=1e-9
    )


def test_topk_pn_short_side_needs_topk() -> None:
    from dmlkit.losses.dro import DROPNAggregator

    with pytest.raises(ValueError, match="short_side"):
        create("dro_topk_pn", short_side="official")
    with pytest.raises(ValueError, match="TopK"):
        DROPNAggregator(KLPenalty(0.1), short_side="match")


def test_topk_pn_one_sided_batch_gets_full_weight() -> None:
    """All labels distinct: no positive pair, so the negative half alone is the loss, with weight
    1 (not 1/2), and every selected negative pair gets gradient weight 1/k."""
    x = torch.tensor(
        [[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-0.6, 0.8], [-1.0, 0.0]], dtype=torch.float64
    )
    y = torch.arange(5)
    s = x @ x.T
    neg = sorted(
        (max(float(s[i, j]) - 0.3, 0.0) for i in range(5) for j in range(i + 1, 5)),
        reverse=True,
    )
    for short_side in ("clamp", "match"):
        loss = create("dro_topk_pn", k=3, short_side=short_side)
        assert loss(x, y).item() == pytest.approx(sum(neg[:3]) / 3, rel=1e-12)
    assert sum(neg[:3]) / 3 == pytest.approx((0.5 + 0.5 + 0.3) / 3)  # cosines 0.8, 0.8, 0.6
    wide = create("dro_topk_pn", k=100)
    with pytest.warns(UserWarning, match="exceeds"):
        assert wide(x, y).item() == pytest.approx(sum(neg) / len(neg), rel=1e-12)


def test_sampled_kl_expectation_matches_official() -> None:
    x, y = _batch(13, classes=8, m=4, d=8)
    expected = official_sampled_kl_expectation(x, y, k_code=5, lam=0.1)
    pos_l, neg_l = ordered_pair_losses(x, y)
    losses = torch.cat([pos_l, neg_l])  # row-major ordered pairs, as the aggregator lists them
    # the truncated weights equal the oracle's exactly
    q = SampledKL(0.1, 20, 21).weights(losses)
    assert (q * losses).sum().item() == pytest.approx(expected, rel=1e-9)
    # many draws average to the expectation
    many = SampledKL(0.1, 200_000, 21, torch.Generator().manual_seed(0))(losses)
    assert many.item() == pytest.approx(expected, rel=0.01)
    # the preset draws from the same distribution with the same generator stream
    preset = create(
        "dro_kl_official", k_official=5, t=0.1, generator=torch.Generator().manual_seed(1)
    )
    direct = SampledKL(0.1, 20, 21, torch.Generator().manual_seed(1))(losses)
    assert preset(x, y).item() == pytest.approx(direct.item(), rel=1e-9)


def test_same_generator_same_sampled_loss() -> None:
    x, y = _batch(14)
    a = create("dro_kl_official", generator=torch.Generator().manual_seed(3))(x, y)
    b = create("dro_kl_official", generator=torch.Generator().manual_seed(3))(x, y)
    assert torch.equal(a, b)


# ---------------------------------------------------------------- edge cases (notes §7)


@pytest.mark.parametrize("name", [*DRO_PRESETS, "dro_kl_official"])
def test_no_positive_pairs(name: str) -> None:
    x = torch.randn(8, 4, dtype=torch.float64, requires_grad=True)
    value = create(name)(x, torch.arange(8))  # official PN returns NaN here
    assert torch.isfinite(value) and value.item() > 0
    (g,) = torch.autograd.grad(value, x)
    assert torch.isfinite(g).all()


@pytest.mark.parametrize("name", [*DRO_PRESETS, "dro_kl_official"])
def test_k_larger_than_the_pairs_and_single_class(name: str) -> None:
    x, y = _batch(15, classes=2, m=2)  # 6 unique pairs (12 ordered)
    kwargs = {"k_official": 50} if name == "dro_kl_official" else {"k": 50}
    if name == "dro_kl":  # no k: every pair is weighted
        value = create(name)(x, y)
    else:
        with pytest.warns(UserWarning, match="exceeds"):
            value = create(name, **kwargs)(x, y)
    assert torch.isfinite(value)
    one = create(name)(x.requires_grad_(True), torch.zeros(4, dtype=torch.long))
    assert torch.isfinite(one)


@pytest.mark.parametrize("name", [*DRO_PRESETS, "dro_kl_official"])
def test_all_losses_zero_gives_connected_zero(name: str) -> None:
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    x.requires_grad_(True)
    value = create(name)(x, torch.tensor([0, 0, 1, 1]))  # margin hinges all inactive
    assert value.item() == 0.0 and value.requires_grad
    (g,) = torch.autograd.grad(value, x)
    assert torch.equal(g, torch.zeros_like(x))


@pytest.mark.parametrize("t", [1e-4, 1e-3])
def test_small_temperature_does_not_overflow(t: float) -> None:
    x, y = _batch(16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        emb = torch.nn.Linear(8, 8).double()(x).float().to(torch.bfloat16)
        value = create("dro_kl", t=t)(emb, y)
    assert torch.isfinite(value)
    sampled = create("dro_kl_official", t=t, generator=torch.Generator().manual_seed(0))(
        x.float(), y
    )
    assert torch.isfinite(sampled)


def test_k_from_official_and_bad_arguments() -> None:
    assert [k_from_official(k) for k in (80, 100, 120, 140)] == [160, 200, 240, 280]
    with pytest.raises(ValueError, match="k_official"):
        k_from_official(0)
    with pytest.raises(ValueError, match="k: expected"):
        TopK(0)
    with pytest.raises(ValueError, match="base"):
        create("dro_topk", base="hinge")
    with pytest.raises(ValueError, match="t: expected"):
        KLPenalty(0.0)


def test_every_entry_is_a_pair_against_a_separate_reference() -> None:
    """Against a separate reference set (a memory bank) each (row, reference) entry is one pair;
    against itself the batch counts (i, j) and (j, i) once."""
    x, y = _batch(17)
    ref, ref_y = _batch(18)
    loss = create("dro_topk", k=10_000)
    with pytest.warns(UserWarning):
        ref_value = loss(x, y, ref, ref_y)
    xn = torch.nn.functional.normalize(x, dim=1)
    s = xn @ torch.nn.functional.normalize(ref, dim=1).T
    same = y[:, None] == ref_y[None, :]
    entries = torch.where(same, (0.7 - s).clamp_min(0), (s - 0.3).clamp_min(0))
    assert ref_value.item() == pytest.approx(entries.mean().item())
    with pytest.warns(UserWarning):
        batch_value = loss(x, y)
    pos_l, neg_l = ordered_pair_losses(x, y)
    assert batch_value.item() == pytest.approx(torch.cat([pos_l, neg_l]).mean().item())
