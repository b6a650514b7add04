"""Named pair-loss presets, each a :class:`PairLoss` configuration registered in ``LOSSES``.

==================== ============================================================ =======================
name                 loss (per anchor i unless stated)                            source / defaults
==================== ============================================================ =======================
contrastive          Σ_P (1 - s) + Σ_N [s - λ]_+, divided by B                     GPW/XBM sim form, λ=0.5
contrastive_hadsell  ½ mean over pairs of d² (pos) and [m - d]_+² (neg)            Hadsell 2006, m=1
binomial             mean_P softplus(α(λ-s)) + mean_N softplus(β(s-λ))             Yi 2014 / MS paper form,
                                                                                  α=2, β=40, λ=0.5
lifted               [log Σ_P e^{λ-s} + log Σ_N e^{s}]_+, mean over anchors        smooth lifted (MS form),
                                                                                  λ=1
lifted_song          1/(2|P|) Σ_(i,j)∈P [log(Σ_{N_i}e^{α-d}+Σ_{N_j}e^{α-d}) + d]_+² Song 2016, α=1
npair                mean over (i,p) of log(1 + Σ_N e^{s_in - s_ip}), dot product   Sohn 2016
ms                   (1/α)log(1+Σ_P̂ e^{-α(s-λ)}) + (1/β)log(1+Σ_N̂ e^{β(s-λ)}),    MS paper: α=2, β=50,
                     ε-mining, summed and divided by B                            λ=1, ε=0.1
ms_official          same                                                         official code: α=2,
                                                                                  β=40, λ=0.5, ε=0.1
circle               softplus(LSE_P(-γα_p(s-Δp)) + LSE_N(γα_n(s-Δn))), mean over   Sun 2020: m=0.4, γ=80
                     anchors with a positive and a negative
==================== ============================================================ =======================

Differences from pytorch-metric-learning defaults are deliberate and documented per preset; the
tests check parity at matching settings.
"""

from __future__ import annotations

from dmlkit.core.relations import RelationFn
from dmlkit.losses.aggregators import (
    AnchorLogSumExpAggregator,
    AnchorMeanAggregator,
    LiftedSongAggregator,
    PairSumAggregator,
    PerPositiveSoftplusAggregator,
)
from dmlkit.losses.miners import MultiSimilarityMiner, PairMiner
from dmlkit.losses.pair_loss import PairLoss
from dmlkit.losses.registry import LOSSES
from dmlkit.losses.terms import CircleTerm, HingeTerm, LinearTerm, SoftplusTerm


@LOSSES.register(
    "contrastive",
    family="pair weighting",
    source="Hadsell et al. 2006; Wang et al. 2019 similarity form",
)
def contrastive(
    pos_margin: float = 1.0,
    neg_margin: float = 0.5,
    normalize: str = "batch",
    miner: PairMiner | None = None,
    similarity: str = "cosine",
    relation_fn: RelationFn | None = None,
) -> PairLoss:
    """Contrastive loss, similarity form: ``Σ_P [m+ - s]_+ + Σ_N [s - m-]_+`` normalised by
    ``normalize`` (default: the batch size, as the MS group's code). With cosine similarity and
    ``m+ = 1`` the positive term is ``1 - s``. PML's ``ContrastiveLoss(pos_margin=1,
    neg_margin=0.5, distance=CosineSimilarity())`` equals ``normalize="sides_nonzero"``.
    """
    term = HingeTerm(pos_margin, neg_margin)
    return PairLoss(term, PairSumAggregator(normalize), miner, similarity, relation_fn)


@LOSSES.register("contrastive_hadsell", family="pair weighting", source="Hadsell et al. 2006")
def contrastive_hadsell(
    margin: float = 1.0,
    normalize: str = "pairs",
    miner: PairMiner | None = None,
    relation_fn: RelationFn | None = None,
) -> PairLoss:
    """Hadsell et al. 2006, distance form: ``½ d²`` for positives and ``½ [m - d]_+²`` for negatives,
    averaged over pairs; ``d`` the Euclidean distance (similarity ``neg_euclidean``, ``s = -d``).
    """
    term = HingeTerm(pos_margin=0.0, neg_margin=-margin, power=2.0, pos_weight=0.5, neg_weight=0.5)
    return PairLoss(term, PairSumAggregator(normalize), miner, "neg_euclidean", relation_fn)


@LOSSES.register("binomial", family="pair weighting", source="Yi et al. 2014, binomial deviance")
def binomial(
    alpha: float = 2.0,
    beta: float = 40.0,
    threshold: float = 0.5,
    reduction: str = "mean_valid",
    miner: PairMiner | None = None,
    similarity: str = "cosine",
    relation_fn: RelationFn | None = None,
) -> PairLoss:
    """Binomial deviance (Yi et al. 2014) in the MS paper's form:
    ``mean_{P_i} log(1 + e^{α(λ - s)}) + mean_{N_i} log(1 + e^{β(s - λ)})``, averaged over anchors;
    defaults α=2, β=40, λ=0.5 from the MS first author's code.
    """
    term = SoftplusTerm(scale_pos=alpha, scale_neg=beta, threshold=threshold)
    return PairLoss(term, AnchorMeanAggregator(reduction), miner, similarity, relation_fn)


@LOSSES.register(
    "lifted", family="pair weighting", source="Song et al. 2016; Wang et al. 2019 smooth form"
)
def lifted(
    pos_margin: float = 1.0,
    neg_margin: float = 0.0,
    reduction: str = "mean_all",
    miner: PairMiner | None = None,
    similarity: str = "cosine",
    relation_fn: RelationFn | None = None,
) -> PairLoss:
    """Smooth per-anchor lifted structure: ``[log Σ_P e^{m+ - s} + log Σ_N e^{s - m-}]_+``.

    Equals PML's ``GeneralizedLiftedStructureLoss`` (distance ``d = -s``) with
    ``pos_margin = -m+`` and ``neg_margin = -m-`` on anchors that have both positives and negatives;
    an anchor missing a side contributes 0 here (PML still charges its negative side).
    """
    agg = AnchorLogSumExpAggregator(combine="hinge", reduction=reduction)
    return PairLoss(LinearTerm(pos_margin, neg_margin), agg, miner, similarity, relation_fn)


@LOSSES.register(
    "lifted_song", family="pair weighting", source="Song et al. 2016, lifted structure"
)
def lifted_song(
    margin: float = 1.0,
    miner: PairMiner | None = None,
    relation_fn: RelationFn | None = None,
) -> PairLoss:
    """Original lifted structure (Song et al. 2016) on Euclidean distances, margin α:
    ``1/(2|P|) Σ_{(i,j)∈P} [log(Σ_{N_i} e^{α - d} + Σ_{N_j} e^{α - d}) + d_ij]_+²``.
    Needs the batch as its own reference.
    """
    return PairLoss(
        LinearTerm(0.0, -margin), LiftedSongAggregator(), miner, "neg_euclidean", relation_fn
    )


@LOSSES.register("npair", family="pair weighting", source="Sohn 2016, N-pair")
def npair(
    similarity: str = "dot",
    miner: PairMiner | None = None,
    relation_fn: RelationFn | None = None,
) -> PairLoss:
    """N-pair loss (Sohn 2016): mean over positive pairs (i, p) of
    ``log(1 + Σ_{n∈N_i} e^{s_in - s_ip})`` with dot-product similarity. On a batch of one anchor
    and one positive per class (ref = the positives) it is PML's ``NPairsLoss`` (which normalises
    inside its dot product: compare with ``similarity="cosine"``); on an m-per-class batch every
    positive pair and every negative of the anchor take part. Sohn's L2 penalty on the embedding
    norms is a separate regulariser and is not part of this loss.
    """
    return PairLoss(
        LinearTerm(0.0, 0.0), PerPositiveSoftplusAggregator(), miner, similarity, relation_fn
    )


def _multi_similarity(
    alpha: float,
    beta: float,
    threshold: float,
    epsilon: float | None,
    reduction: str,
    similarity: str,
    relation_fn: RelationFn | None,
) -> PairLoss:
    miner = MultiSimilarityMiner(epsilon) if epsilon is not None else None
    agg = AnchorLogSumExpAggregator(alpha, beta, add_one=True, combine="sum", reduction=reduction)
    return PairLoss(LinearTerm(threshold, threshold), agg, miner, similarity, relation_fn)


@LOSSES.register("ms", family="pair weighting", source="Wang et al. 2019, multi-similarity")
def ms(
    alpha: float = 2.0,
    beta: float = 50.0,
    threshold: float = 1.0,
    epsilon: float | None = 0.1,
    reduction: str = "mean_all",
    similarity: str = "cosine",
    relation_fn: RelationFn | None = None,
) -> PairLoss:
    """Multi-similarity loss (Wang et al. 2019), paper defaults α=2, β=50, λ=1, ε=0.1:
    ``(1/α) log(1 + Σ_{P̂_i} e^{-α(s - λ)}) + (1/β) log(1 + Σ_{N̂_i} e^{β(s - λ)})`` over ε-mined
    pairs, summed over anchors and divided by B. ``epsilon=None`` disables mining. PML's
    ``MultiSimilarityLoss`` uses β=50, base λ=0.5 and no mining unless a miner is given.
    """
    return _multi_similarity(alpha, beta, threshold, epsilon, reduction, similarity, relation_fn)


@LOSSES.register(
    "ms_official", family="pair weighting", source="Wang et al. 2019, official code defaults"
)
def ms_official(
    alpha: float = 2.0,
    beta: float = 40.0,
    threshold: float = 0.5,
    epsilon: float | None = 0.1,
    reduction: str = "mean_all",
    similarity: str = "cosine",
    relation_fn: RelationFn | None = None,
) -> PairLoss:
    """Multi-similarity with the official code's values α=2, β=40, λ=0.5, ε=0.1 and its
    reduction (sum over anchors / B, skipped anchors counted). Deliberate differences from that
    code: ``log(1 + Σ e)`` is evaluated stably (the code overflows for large β); an anchor without
    positives contributes 0 (the code raises); self-pairs are removed by index, so exact duplicates
    stay positives (the code drops every positive with ``s >= 1 - 1e-5``); and a batch without any
    mined pair gives 0 connected to the graph (the code returns a new leaf).
    """
    return _multi_similarity(alpha, beta, threshold, epsilon, reduction, similarity, relation_fn)


@LOSSES.register("circle", family="pair weighting", source="Sun et al. 2020, circle loss")
def circle(
    m: float = 0.4,
    gamma: float = 80.0,
    reduction: str = "mean_valid",
    miner: PairMiner | None = None,
    relation_fn: RelationFn | None = None,
) -> PairLoss:
    """Circle loss (Sun et al. 2020), cosine similarity, defaults m=0.4, γ=80 (the paper's
    fine-grained retrieval setting): per anchor ``softplus(LSE_P(-γ α_p (s - 1 + m)) +
    LSE_N(γ α_n (s - m)))`` with ``α_p = [1 + m - s]_+``, ``α_n = [s + m]_+`` held constant (no
    gradient, as in the paper's analysis); averaged over anchors that have both sides. PML's
    ``CircleLoss`` averages over anchors with a non-zero loss (``reduction="mean_nonzero"``); the
    two differ only when an anchor's softplus underflows to exactly 0.
    """
    agg = AnchorLogSumExpAggregator(combine="softplus", reduction=reduction)
    return PairLoss(CircleTerm(m, gamma), agg, miner, "cosine", relation_fn)
