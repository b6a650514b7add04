"""General pair weighting properties (Wang et al. 2019; research notes gpw.md section 7)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dmlkit.core import relation_masks
from dmlkit.losses import MultiSimilarityMiner, create, pair_weights


def _batch(seed: int, b: int = 12, d: int = 8, classes: int = 4):
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=1)
    y = torch.arange(b) % classes
    return x, y


seeds = st.integers(min_value=0, max_value=10_000)


@settings(max_examples=25, deadline=None)
@given(seed=seeds, paper=st.booleans())
def test_ms_gradient_equals_closed_form_weights(seed: int, paper: bool) -> None:
    """T2: dL/dS_ij = (w-_ij - w+_ij)/m with the closed-form MS weights, mined pairs only."""
    a, b, lam = (2.0, 50.0, 1.0) if paper else (2.0, 40.0, 0.5)
    x, y = _batch(seed)
    loss = create("ms", alpha=a, beta=b, threshold=lam)
    grad = pair_weights(loss, x, y)
    s = x @ x.T
    pos, neg = relation_masks(y, y, self_index=torch.arange(len(y)))
    pos, neg = MultiSimilarityMiner(0.1)(s, pos, neg)
    m = len(y)
    ep = torch.where(pos, torch.exp(-a * (s - lam)), torch.zeros_like(s))
    en = torch.where(neg, torch.exp(b * (s - lam)), torch.zeros_like(s))
    w_pos = ep / (1 + ep.sum(1, keepdim=True))
    w_neg = en / (1 + en.sum(1, keepdim=True))
    torch.testing.assert_close(grad, (w_neg - w_pos) / m, rtol=1e-9, atol=1e-12)
    # T3: weight mass per anchor below one on each side
    assert (w_pos.sum(1) < 1).all() and (w_neg.sum(1) < 1).all()


@settings(max_examples=20, deadline=None)
@given(seed=seeds)
def test_gpw_surrogate_has_the_same_gradient(seed: int) -> None:
    """T1: F = Σ_neg w S - Σ_pos w S with w = |dL/dS| detached has L's gradient."""
    x, y = _batch(seed)
    x = x.clone().requires_grad_(True)
    loss = create("ms_official")
    (g_loss,) = torch.autograd.grad(loss(x, y), x)
    w = pair_weights(loss, x.detach(), y)
    xn = torch.nn.functional.normalize(x, dim=1)
    s = xn @ xn.T
    surrogate = (w * s).sum()  # w carries the sign: + on negatives, - on positives
    (g_sur,) = torch.autograd.grad(surrogate, x)
    torch.testing.assert_close(g_loss, g_sur, rtol=1e-9, atol=1e-12)


def _negatives_only(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    same = a[:, None] == b[None, :]
    return torch.zeros_like(same), ~same


@settings(max_examples=20, deadline=None)
@given(seed=seeds, beta=st.sampled_from([50.0, 500.0, 5000.0, 1e4, 1e6]))
def test_beta_to_infinity_limit(seed: int, beta: float) -> None:
    """T5, through the MS preset (negative side only): per anchor
    [max_N S - λ]_+ <= (1/β) log(1 + Σ_N e^{β(S-λ)}) <= [max_N S - λ]_+ + log(1 + |N|)/β,
    finite at any β (the official log(1 + Σ exp) overflows beyond β ≈ 88/(1 - λ))."""
    x, y = _batch(seed)
    lam = 0.2
    loss = create("ms", beta=beta, threshold=lam, epsilon=None, relation_fn=_negatives_only)
    value = loss(x, y)
    assert torch.isfinite(value)
    s = x @ x.T
    neg = y[:, None] != y[None, :]
    hard = torch.stack([(s[i][neg[i]].max() - lam).clamp_min(0) for i in range(len(y))])
    slack = torch.log1p(neg.sum(1).double()) / beta
    assert hard.mean() - 1e-9 <= value <= (hard + slack).mean() + 1e-9


def test_one_negative_is_a_scaled_binomial_term() -> None:
    """T6: with |N̂_i| = 1 the MS negative term is softplus(β(S - λ))/β (no 1/|N| factor)."""
    x = torch.nn.functional.normalize(torch.randn(3, 4, dtype=torch.float64), dim=1)
    y = torch.tensor([0, 0, 1])  # anchors 0 and 1: one positive, one negative
    a, b, lam = 2.0, 40.0, 0.5
    s = x @ x.T
    sp = torch.nn.functional.softplus
    anchor = [sp(-a * (s[i, 1 - i] - lam)) / a + sp(b * (s[i, 2] - lam)) / b for i in (0, 1)]
    # anchor 2 has two negatives and no positive: (1/β) log(1 + e^{β(s20-λ)} + e^{β(s21-λ)})
    anchor.append(
        torch.logaddexp(
            torch.tensor(0.0, dtype=torch.float64),
            torch.logaddexp(b * (s[2, 0] - lam), b * (s[2, 1] - lam)),
        )
        / b
    )
    value = create("ms", alpha=a, beta=b, threshold=lam, epsilon=None)(x, y)
    torch.testing.assert_close(value, sum(anchor) / 3)


@settings(max_examples=20, deadline=None)
@given(seed=seeds, bump=st.floats(min_value=0.01, max_value=0.2))
def test_ms_negative_weight_monotonicity(seed: int, bump: float) -> None:
    """T7: w-_ij grows with S_ij (self-similarity) and shrinks when another negative S_ik grows
    (negative relative similarity); measured on the MS aggregator directly."""
    x, y = _batch(seed)
    loss = create("ms", beta=10.0, threshold=0.0, epsilon=None)  # weights well above underflow
    sim, pos, neg = loss.pairs(x, y)
    i = 0
    j, k = torch.nonzero(neg[i]).flatten()[:2].tolist()

    def weights(s: torch.Tensor) -> torch.Tensor:
        s = s.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(loss.from_similarity(s, pos, neg), s)
        return g

    base = weights(sim)
    own, other = sim.clone(), sim.clone()
    own[i, j] += bump
    other[i, k] += bump
    assert weights(own)[i, j] > base[i, j] > weights(other)[i, j] > 0


@settings(max_examples=15, deadline=None)
@given(seed=seeds)
def test_lifted_weights_are_per_anchor_softmaxes(seed: int) -> None:
    """T12: smooth lifted, active anchors: w+ = softmax_P(-S), w- = softmax_N(S) (divided by B)."""
    x, y = _batch(seed)
    w = pair_weights(create("lifted", pos_margin=1.0, neg_margin=0.0), x, y)
    s = x @ x.T
    pos, neg = relation_masks(y, y, self_index=torch.arange(len(y)))
    for i in range(len(y)):
        lp = torch.logsumexp(1.0 - s[i][pos[i]], 0)
        ln = torch.logsumexp(s[i][neg[i]], 0)
        if lp + ln <= 0:
            assert torch.equal(w[i], torch.zeros_like(w[i]))
            continue
        torch.testing.assert_close(-w[i][pos[i]] * len(y), torch.softmax(-s[i][pos[i]], 0))
        torch.testing.assert_close(w[i][neg[i]] * len(y), torch.softmax(s[i][neg[i]], 0))


@settings(max_examples=15, deadline=None)
@given(seed=seeds)
def test_npair_positive_weight_is_the_negative_mass(seed: int) -> None:
    """T14: with one positive per anchor, w+_ip = Σ_k w-_ik."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(12, 6, generator=g, dtype=torch.float64)
    y = torch.arange(6).repeat_interleave(2)
    w = pair_weights(create("npair"), x[0::2], y[0::2], x[1::2], y[1::2])
    pos = y[0::2, None] == y[None, 1::2]
    torch.testing.assert_close(-w[pos], torch.where(pos, 0.0, w).sum(1))


@settings(max_examples=30, deadline=None)
@given(seed=seeds, eps=st.sampled_from([-0.3, 0.0, 0.1, 0.5]))
def test_mined_positive_empty_iff_mined_negative_empty(seed: int, eps: float) -> None:
    """T17, for anchors that have raw positives and negatives."""
    x, y = _batch(seed, b=10, classes=3)
    s = x @ x.T
    pos, neg = relation_masks(y, y, self_index=torch.arange(len(y)))
    p, n = MultiSimilarityMiner(eps)(s, pos, neg)
    assert torch.equal(p.any(1), n.any(1))


@settings(max_examples=10, deadline=None)
@given(seed=seeds, shift=st.floats(min_value=-0.3, max_value=0.3))
def test_shift_of_negatives(seed: int, shift: float) -> None:
    """T8: weights that depend only on differences of negative similarities ignore a common shift.

    Lifted (per-anchor softmax over N) keeps its weights; N-pair keeps the distribution of its
    negative weights per anchor; multi-similarity's weights move (they also see S itself).
    """
    x, y = _batch(seed)
    _, neg = relation_masks(y, y, self_index=torch.arange(len(y)))

    def weights(name: str, s_shift: float) -> torch.Tensor:
        loss = {
            "lifted": create("lifted"),
            "npair": create("npair", similarity="cosine"),
            "ms": create("ms", epsilon=None),
        }[name]
        sim, pos, neg_mask = loss.pairs(x, y)
        s = (sim + s_shift * neg.double()).detach().requires_grad_(True)
        (g,) = torch.autograd.grad(loss.from_similarity(s, pos, neg_mask), s)
        return torch.where(neg, g, torch.zeros_like(g))

    torch.testing.assert_close(weights("lifted", shift), weights("lifted", 0.0))
    n0, n1 = weights("npair", 0.0), weights("npair", shift)
    torch.testing.assert_close(n1 / n1.sum(1, keepdim=True), n0 / n0.sum(1, keepdim=True))
    if abs(shift) > 1e-2:
        assert not torch.allclose(weights("ms", shift), weights("ms", 0.0), rtol=1e-3, atol=0.0)


def test_contrastive_weights_are_one_and_indicator() -> None:
    """T9 for the similarity form of contrastive (sum normalisation)."""
    x, y = _batch(7)
    w = pair_weights(create("contrastive", normalize="none"), x, y)
    s = x @ x.T
    pos, neg = relation_masks(y, y, self_index=torch.arange(len(y)))
    assert torch.equal(w[pos], -torch.ones_like(w[pos]))
    assert torch.equal(w[neg], (s[neg] > 0.5).double())
    assert torch.equal(w[~(pos | neg)], torch.zeros_like(w[~(pos | neg)]))


def test_binomial_weights_closed_form() -> None:
    """T13: w+ = (α/|P_i|) σ(α(λ - S)), w- = (β/|N_i|) σ(β(S - λ)), then averaged over anchors."""
    x, y = _batch(8)
    a, b, lam = 2.0, 40.0, 0.5
    w = pair_weights(create("binomial", alpha=a, beta=b, threshold=lam), x, y)
    s = x @ x.T
    pos, neg = relation_masks(y, y, self_index=torch.arange(len(y)))
    npos, nneg = pos.sum(1, keepdim=True).double(), neg.sum(1, keepdim=True).double()
    expect = torch.where(neg, b / nneg * torch.sigmoid(b * (s - lam)), torch.zeros_like(s))
    expect = expect - torch.where(pos, a / npos * torch.sigmoid(a * (lam - s)), torch.zeros_like(s))
    torch.testing.assert_close(w, expect / len(y), rtol=1e-9, atol=1e-12)


def test_pair_weights_rejects_non_pair_losses() -> None:
    with pytest.raises(TypeError, match="PairLoss"):
        pair_weights(torch.nn.MSELoss(), torch.randn(3, 2), torch.arange(3))  # type: ignore[arg-type]
