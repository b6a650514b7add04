"""Distributionally robust pair losses (Qi et al., ECCV 2020, "A Simple and Effective Framework
for Pairwise Deep Metric Learning").

The loss of a batch is the worst case over pair weightings in an uncertainty set ``U``:

    L = max_{p ∈ U} Σ_{pairs} p_ij l(S_ij, y_ij) - r(p)

over the **unique** pairs of the batch: when the batch is its own reference, (i, j) and (j, i) are
one pair and only ``i < j`` is kept (the official code enumerates ordered pairs, so its ``K``
counts every pair twice; :func:`k_from_official` converts). With a separate reference set (a
memory bank) every (row, reference) entry is its own pair. The gradient with respect to each pair
loss is its weight ``p*`` (see :mod:`dmlkit.losses.uncertainty`).

Aggregators
-----------
- :class:`DROAggregator` (``U`` any :class:`~dmlkit.losses.uncertainty.UncertaintySet`): positive
  and negative pairs compete in one pool (DRO-TopK, DRO-KL).
- :class:`DROPNAggregator`: ``½ F(l+) + ½ F(l-)``, positives and negatives each get half the mass
  whatever the ratio (DRO-TopK-PN). Policy without positive (or negative) pairs: the other half
  alone, with full weight. ``short_side="match"`` is the official rule when ``k`` exceeds the
  positives.

Official-code presets: ``dro_topk(k=k_from_official(K))`` equals the official DRO-TopK;
``dro_topk_pn(k=K, short_side="match")`` the official DRO-TopK-PN; ``dro_kl_official`` the
official sampled DRO-KL (``dro_kl`` is the exact DRO-KL of the paper's formulation).

Policies: no pair at all gives 0 connected to the graph; ``k`` above the number of pairs is clamped
with a warning; all-zero losses give 0 with zero gradients. Memory O(B R).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dmlkit.core.relations import RelationFn
from dmlkit.losses.aggregators import PairAggregator
from dmlkit.losses.miners import PairMiner
from dmlkit.losses.pair_loss import PairLoss
from dmlkit.losses.registry import LOSSES
from dmlkit.losses.terms import HingeTerm, PairTerm, SoftplusTerm
from dmlkit.losses.uncertainty import (
    KLPenalty,
    SampledKL,
    TopK,
    UncertaintySet,
    Uniform,
    clamp_k,
)

SHORT_SIDE = ("clamp", "match")


def k_from_official(k_official: int) -> int:
    """Unique-pair ``k`` equal to the official scripts' ``K``.

    The official code lists every pair of the batch twice, as (i, j) and (j, i), and averages the
    ``4K`` largest of these ordered losses: that is the mean of the ``2K`` largest unique pairs. So
    the scripts' ``K = 80 ... 140`` (CUB) are ``k = 160 ... 280`` here; for DRO-TopK-PN the official
    ``K`` keeps ``K`` unique positives and ``K`` unique negatives, i.e. ``k = K`` per side.
    """
    if k_official < 1:
        raise ValueError(f"k_official: expected >= 1, got {k_official}")
    return 2 * int(k_official)


def unique_pair_masks(
    l_pos: Tensor, l_neg: Tensor, pos: Tensor, neg: Tensor
) -> tuple[Tensor, Tensor]:
    """Keep ``i < j`` when the pair matrix is the batch against itself (square, symmetric masks,
    losses symmetric up to float rounding: a matrix product need not be bitwise symmetric);
    otherwise every entry is a pair of its own."""
    if pos.shape[0] != pos.shape[1] or not (torch.equal(pos, pos.T) and torch.equal(neg, neg.T)):
        return pos, neg
    for losses in (l_pos.detach(), l_neg.detach()):
        if not torch.allclose(losses, losses.T, rtol=1e-5, atol=1e-6):
            return pos, neg
    upper = torch.ones_like(pos).triu(diagonal=1)
    return pos & upper, neg & upper


_POOLED = "the uncertainty set weighs the pairs of all rows together (over the whole batch)"


class DROAggregator(PairAggregator):
    """``L = F(l)`` over the unique positive and negative pairs pooled, ``F`` = ``uncertainty``."""

    chunk_blocker = _POOLED

    def __init__(self, uncertainty: UncertaintySet, unique: bool = True) -> None:
        super().__init__()
        self.uncertainty = uncertainty
        self.unique = unique

    def forward(self, l_pos: Tensor, l_neg: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        if self.unique:
            pos, neg = unique_pair_masks(l_pos, l_neg, pos, neg)
        losses = torch.cat([l_pos[pos], l_neg[neg]])
        return self.uncertainty(losses) + 0.0 * (l_pos.sum() + l_neg.sum())


class DROPNAggregator(PairAggregator):
    """``L = ½ F(l+) + ½ F(l-)`` over unique pairs; one side alone, with full weight, when the
    other has no pair (the official code returns NaN there).

    ``short_side`` (only with ``F = TopK(k)``) decides what happens when ``k`` exceeds the pairs
    of a side (|P| < k or |N| < k):

    - ``"clamp"`` (default, the uncertainty set of the paper with each side's ``k`` cut to what it
      has): ``½ mean(all positives) + ½ mean(top-k negatives)`` when positives are short;
    - ``"match"`` (the official ``DRO_TOPK`` fallback): ``½ mean(all positives) + ½ mean(the |P|
      hardest negatives)``, i.e. as many hardest negatives as there are positives (at most |N|),
      the official ``(Σ l+ + Σ topk(l-, |P|)) / (2|P|)`` in unique pairs.

    Both warn when ``k`` is cut.
    """

    chunk_blocker = _POOLED

    def __init__(
        self, uncertainty: UncertaintySet, unique: bool = True, short_side: str = "clamp"
    ) -> None:
        super().__init__()
        if short_side not in SHORT_SIDE:
            raise ValueError(f"short_side: expected one of {SHORT_SIDE}, got {short_side!r}")
        if short_side == "match" and not isinstance(uncertainty, TopK):
            raise ValueError(
                f"short_side: 'match' is the official DRO-TopK-PN fallback and needs a TopK "
                f"uncertainty set, got {type(uncertainty).__name__}"
            )
        self.uncertainty = uncertainty
        self.unique = unique
        self.short_side = short_side
        self.match_k = uncertainty.k if isinstance(uncertainty, TopK) else 0

    def forward(self, l_pos: Tensor, l_neg: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        if self.unique:
            pos, neg = unique_pair_masks(l_pos, l_neg, pos, neg)
        anchor = 0.0 * (l_pos.sum() + l_neg.sum())
        lp, ln = l_pos[pos], l_neg[neg]
        if self.short_side == "match" and lp.numel() and ln.numel():
            k = self.match_k
            if k > lp.numel() or k > ln.numel():
                clamp_k(k, min(lp.numel(), ln.numel()), "k")
                return anchor + 0.5 * lp.mean() + 0.5 * TopK(lp.numel())(ln)
        sides = [self.uncertainty(losses) for losses in (lp, ln) if losses.numel()]
        return anchor + (sum(sides) / len(sides) if sides else anchor)


def dro_term(base: str, **kwargs: float) -> PairTerm:
    """The DRO paper's base pair losses.

    ``margin``: ``l+ = [a + g - s]_+``, ``l- = [a - g + s]_+`` (official a = 0.2, g = 0.5).
    ``binomial``: ``l+ = (2/b) log(1 + e^{-b (s - g)})``, ``l- = (2/a) log(1 + e^{a (s - g)})``
    (official a = 40, b = 2, g = 0.5).
    """
    if base == "margin":
        a, g = kwargs.get("alpha", 0.2), kwargs.get("gamma", 0.5)
        return HingeTerm(pos_margin=a + g, neg_margin=g - a)
    if base == "binomial":
        a, b, g = kwargs.get("alpha", 40.0), kwargs.get("beta", 2.0), kwargs.get("gamma", 0.5)
        return SoftplusTerm(
            scale_pos=b, scale_neg=a, threshold=g, pos_weight=2 / b, neg_weight=2 / a
        )
    raise ValueError(f"base: expected 'margin' or 'binomial', got {base!r}")


def _dro(
    aggregator: PairAggregator,
    base: str,
    term_kwargs: dict[str, float],
    miner: PairMiner | None,
    similarity: str,
    relation_fn: RelationFn | None,
) -> PairLoss:
    return PairLoss(
        term=dro_term(base, **term_kwargs),
        aggregator=aggregator,
        miner=miner,
        similarity=similarity,
        relation_fn=relation_fn,
    )


@LOSSES.register(
    "dro_topk", family="distributionally robust pairs", source="Qi et al. 2020, DRO-TopK"
)
def dro_topk(
    k: int = 160,
    base: str = "margin",
    miner: PairMiner | None = None,
    similarity: str = "cosine",
    relation_fn: RelationFn | None = None,
    **term_kwargs: float,
) -> PairLoss:
    """DRO-TopK: the mean of the ``k`` largest unique-pair losses (default ``k = 160`` = the
    official CUB ``K = 80``). ``base="margin"`` is the paper's _M variant, ``"binomial"`` _B."""
    return _dro(DROAggregator(TopK(k)), base, term_kwargs, miner, similarity, relation_fn)


@LOSSES.register(
    "dro_mean", family="distributionally robust pairs", source="Qi et al. 2020, mean baseline"
)
def dro_mean(
    base: str = "margin",
    miner: PairMiner | None = None,
    similarity: str = "cosine",
    relation_fn: RelationFn | None = None,
    **term_kwargs: float,
) -> PairLoss:
    """The plain mean of all unique-pair losses (uniform weights, ``U = {1/M}``): the non-robust
    baseline of the DRO paper, with the same base losses as the DRO variants. Every positive pair
    weighs as much as every negative one, so its share of the loss falls with the
    positive/negative ratio of the batch."""
    return _dro(DROAggregator(Uniform()), base, term_kwargs, miner, similarity, relation_fn)


@LOSSES.register("dro_kl", family="distributionally robust pairs", source="Qi et al. 2020, DRO-KL")
def dro_kl(
    t: float = 0.1,
    base: str = "margin",
    miner: PairMiner | None = None,
    similarity: str = "cosine",
    relation_fn: RelationFn | None = None,
    **term_kwargs: float,
) -> PairLoss:
    """DRO-KL, exact: ``t log mean exp(l / t)`` over unique pairs, weights ``softmax(l / t)``
    (official λ = 0.1).

    Not what the official code trains: its ``DRO`` (``p_choice=1``) weights pairs by
    ``e^{l/t} - 1`` (zero-loss pairs never count), keeps only the ``4K + 1`` largest ordered
    entries (about ``2K + 1`` unique pairs) and averages ``4K`` draws from them. On a 16 x 5
    batch most of the exact softmax mass lies outside that kept set, so the two are different
    losses; :func:`dro_kl_official` is the official one."""
    return _dro(DROAggregator(KLPenalty(t)), base, term_kwargs, miner, similarity, relation_fn)


@LOSSES.register(
    "dro_topk_pn", family="distributionally robust pairs", source="Qi et al. 2020, DRO-TopK-PN"
)
def dro_topk_pn(
    k: int = 80,
    base: str = "margin",
    short_side: str = "clamp",
    miner: PairMiner | None = None,
    similarity: str = "cosine",
    relation_fn: RelationFn | None = None,
    **term_kwargs: float,
) -> PairLoss:
    """DRO-TopK-PN: ``½ mean(top-k positive losses) + ½ mean(top-k negative losses)``, ``k`` unique
    pairs per side (the official ``K`` directly; default 80). ``short_side="match"`` is the
    official code's rule when ``k`` exceeds a side's pairs (all positives and as many hardest
    negatives); the default ``"clamp"`` keeps the top-k negatives (:class:`DROPNAggregator`)."""
    aggregator = DROPNAggregator(TopK(k), short_side=short_side)
    return _dro(aggregator, base, term_kwargs, miner, similarity, relation_fn)


@LOSSES.register(
    "dro_kl_official",
    family="distributionally robust pairs",
    source="Qi et al. 2020, official sampled DRO-KL",
)
def dro_kl_official(
    k_official: int = 80,
    t: float = 0.1,
    generator: torch.Generator | None = None,
    base: str = "margin",
    similarity: str = "cosine",
    relation_fn: RelationFn | None = None,
    **term_kwargs: float,
) -> PairLoss:
    """The official code's sampled DRO-KL (``DRO`` with ``p_choice=1``), for reproduction: over
    *ordered* pairs (each unique pair twice, as the official code lists them), weights
    ``q ∝ exp(l/t) - 1``, truncated to the ``4K + 1`` largest (about the ``2K + 1`` hardest unique
    pairs), ``4K`` draws with replacement, loss = mean of the drawn pair losses (gradient through
    the drawn ones only). ``generator``: explicit randomness (``None``: torch's global generator,
    which a training run seeds).

    Differences from the official code, none of which changes a value it computes: ``q`` is
    computed as ``exp(l/t - max) (1 - exp(-l/t))`` (the official ``exp(l/t)`` overflows to NaN
    for ``l/t > 88`` in float32); ``4K + 1`` above the number of ordered pairs keeps them all with a
    warning (the official code raises ``IndexError``); all-zero losses give 0 with uniform weights
    (as the official fallback)."""
    uset = SampledKL(t, 4 * k_official, 4 * k_official + 1, generator)
    return _dro(DROAggregator(uset, unique=False), base, term_kwargs, None, similarity, relation_fn)
