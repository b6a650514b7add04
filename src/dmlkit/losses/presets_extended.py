"""More named pair-engine presets: softmax-over-neighbours, tuplet and regulariser losses.

=================== ============================================== ==============================
name                what it penalises                              source, defaults
=================== ============================================== ==============================
supcon              per anchor, the mean log-softmax of positives  Khosla 2020; τ = 0.1
ntxent              per positive pair, its softmax against N_i     Chen 2020; τ = 0.07
nca                 per anchor, -log of the positives' softmax     Goldberger 2005; c = 1
instance            cross-entropy over the batch columns           Zheng 2020 (PML form); γ = 64
intra_pair_variance pairs far from their side's batch mean         Yu & Tao 2019; ε = 0.01
snr_contrastive     contrastive on the signal-to-noise distance    Yuan 2019; m+ = 0, m- = 1
tuplet_margin       N-pair softmax with an angular slack margin    Yu & Tao 2019; β = 5.73°, γ = 64
tcm                 pairs beyond two similarity thresholds         Zhang 2023; m+ = 0.9, m- = 0.5
=================== ============================================== ==============================

Each is a :class:`~dmlkit.losses.pair_loss.PairLoss`: ``loss(emb (B, D), labels (B,) or multi-hot
(B, C), ref_emb (R, D) = None, ref_labels = None) -> 0-dim``, similarities in float32 (float64
for float64 input) also under autocast. Every preset whose aggregator is a sum over anchors can
run in row blocks: ``create(name).chunked(256)`` or the config's ``loss.chunk_size``.
Differences from pytorch-metric-learning's defaults are stated per preset; the tests check parity
at matching settings. The angular loss (Wang 2017) is a triplet form and lives in
:mod:`dmlkit.losses.angular`.
"""

from __future__ import annotations

import math

from dmlkit.core.relations import RelationFn
from dmlkit.losses.aggregators import PairSumAggregator, PerPositiveSoftplusAggregator
from dmlkit.losses.instance import InstanceLoss, class_rank_relation
from dmlkit.losses.miners import PairMiner
from dmlkit.losses.pair_loss import PairLoss
from dmlkit.losses.registry import LOSSES
from dmlkit.losses.softmax_aggregator import AnchorSoftmaxAggregator
from dmlkit.losses.terms import AngularMarginTerm, HingeTerm, LinearTerm
from dmlkit.losses.variance_aggregator import PairVarianceAggregator


def _temperature(value: float) -> float:
    if not float(value) > 0.0 or math.isinf(float(value)):
        raise ValueError(f"temperature: expected a finite value > 0, got {value!r}")
    return float(value)


@LOSSES.register("supcon", family="contrastive", source="Khosla et al. 2020, SupCon")
def supcon(
    temperature: float = 0.1,
    reduction: str = "mean_valid",
    miner: PairMiner | None = None,
    similarity: str = "cosine",
    relation_fn: RelationFn | None = None,
) -> PairLoss:
    """Supervised contrastive loss (Khosla et al. 2020, the "L_out" form): per anchor i with
    positives P_i and negatives N_i (self excluded)::

        L_i = log Σ_{j ∈ P_i ∪ N_i} e^{s_ij / τ} - (1 / |P_i|) Σ_{p ∈ P_i} s_ip / τ

    averaged over anchors that have a positive (``reduction="mean_valid"``); cosine similarity,
    τ = 0.1 (PML's default). PML's ``SupConLoss`` averages over anchors with a non-zero loss
    (``reduction="mean_nonzero"``, equal unless an anchor's loss is exactly 0) and returns 0 for
    a batch without any negative pair, where ours still pulls the positives together.
    Shapes: ``emb (B, D)``, ``labels (B,)`` or multi-hot ``(B, C)``. Memory O(B R).
    """
    term = LinearTerm(scale=1.0 / _temperature(temperature))
    agg = AnchorSoftmaxAggregator("mean", reduction)
    return PairLoss(term, agg, miner, similarity, relation_fn)


@LOSSES.register("ntxent", family="contrastive", source="Chen et al. 2020, SimCLR NT-Xent")
def ntxent(
    temperature: float = 0.07,
    miner: PairMiner | None = None,
    similarity: str = "cosine",
    relation_fn: RelationFn | None = None,
) -> PairLoss:
    """NT-Xent / InfoNCE (Chen et al. 2020) with labels defining the positives, as PML's
    ``NTXentLoss``: for every positive pair (i, p)::

        L_ip = -log( e^{s_ip/τ} / (e^{s_ip/τ} + Σ_{n ∈ N_i} e^{s_in/τ}) )
             = log(1 + Σ_{n ∈ N_i} e^{(s_in - s_ip)/τ})

    averaged over the positive pairs whose anchor has a negative; cosine similarity, τ = 0.07
    (PML's default). PML also counts, with a loss of 0, positive pairs whose anchor has no
    negative (possible only with ``ref_emb`` or a relation function), which lowers its mean.
    For SimCLR, label the two views of an image alike. Memory O(B R).
    """
    term = LinearTerm(scale=1.0 / _temperature(temperature))
    agg = PerPositiveSoftplusAggregator()
    return PairLoss(term, agg, miner, similarity, relation_fn)


@LOSSES.register("nca", family="neighbourhood softmax", source="Goldberger et al. 2005, NCA")
def nca(
    scale: float = 1.0,
    similarity: str = "neg_sq_euclidean",
    reduction: str = "mean_valid",
    miner: PairMiner | None = None,
    relation_fn: RelationFn | None = None,
) -> PairLoss:
    """Neighbourhood components analysis (Goldberger et al. 2005): the probability that anchor i
    picks a positive as its stochastic neighbour, ``p_ij = softmax_{j ∈ P_i ∪ N_i}(c s_ij)``::

        L_i = -log Σ_{p ∈ P_i} p_ip = log Σ_{P_i ∪ N_i} e^{c s} - log Σ_{P_i} e^{c s}

    with ``s = -|x_i - x_j|²`` (``neg_sq_euclidean``, the paper's) and ``c = scale = 1``,
    averaged over anchors that have a positive. Evaluated in log space, so an anchor whose
    positives are all far still has a finite loss (PML's ``NCALoss`` drops anchors whose
    probability underflows to 0). PML's default L2-normalises the embeddings first:
    ``NCALoss(softmax_scale=c)`` equals ours with ``similarity="cosine"`` and ``scale=2c``
    (``-|x̂_i - x̂_j|² = 2 cos - 2``, and a softmax ignores the shift). Memory O(B R).
    """
    term = LinearTerm(scale=scale)
    agg = AnchorSoftmaxAggregator("logsumexp", reduction)
    return PairLoss(term, agg, miner, similarity, relation_fn)


@LOSSES.register(
    "instance", family="neighbourhood softmax", source="Zheng et al. 2020, instance loss (PML form)"
)
def instance(gamma: float = 64.0) -> PairLoss:
    """Instance loss in PML's form (``InstanceLoss``): the batch's embeddings are the weights of a
    cosine softmax classifier, ``L = mean_i CE(γ cos(x_i, x_·), c(y_i))`` with ``c(y)`` the rank
    of ``y`` among the batch's distinct labels and every column (self included) a class; see
    :mod:`dmlkit.losses.instance` for what that target means. γ = 64 as PML. Needs class ids
    ``(B,)``; refuses ``ref_emb`` (as PML) and ``chunk_size``. Memory O(B²).
    """
    agg = AnchorSoftmaxAggregator("logsumexp", "mean_all")
    return InstanceLoss(LinearTerm(scale=gamma), agg, None, "cosine", class_rank_relation)


@LOSSES.register(
    "intra_pair_variance",
    family="pair regularizer",
    source="Yu & Tao 2019, intra-pair variance",
)
def intra_pair_variance(
    pos_eps: float = 0.01,
    neg_eps: float = 0.01,
    miner: PairMiner | None = None,
    similarity: str = "cosine",
    relation_fn: RelationFn | None = None,
) -> PairLoss:
    """Intra-pair variance loss (Yu & Tao 2019, with the tuplet margin loss), as PML's
    ``IntraPairVarianceLoss``: with ``μ+``, ``μ-`` the mean similarity of all positive and all
    negative pairs of the batch::

        L = mean_P [(1 - ε+) μ+ - s]_+² + mean_N [s - (1 + ε-) μ-]_+²

    cosine similarity, ε± = 0.01 (PML's defaults). The centres couple all rows, so it takes no
    ``chunk_size``. Memory O(B R).
    """
    agg = PairVarianceAggregator(pos_eps, neg_eps)
    return PairLoss(LinearTerm(), agg, miner, similarity, relation_fn)


@LOSSES.register(
    "snr_contrastive",
    family="contrastive",
    source="Yuan et al. 2019, signal-to-noise ratio distance",
)
def snr_contrastive(
    pos_margin: float = 0.0,
    neg_margin: float = 1.0,
    normalize: str = "sides_nonzero",
    miner: PairMiner | None = None,
    relation_fn: RelationFn | None = None,
) -> PairLoss:
    """Contrastive loss on the signal-to-noise ratio distance (Yuan et al. 2019)
    ``d_ij = var(x_i - x_j) / var(x_i)`` (variances over the features; similarity ``neg_snr``)::

        L = mean_{P, d > m+} (d - m+) + mean_{N, d < m-} (m- - d)

    m+ = 0, m- = 1, each side averaged over its non-zero pair losses, as PML's
    ``SignalToNoiseRatioContrastiveLoss``. PML's ``SNRDistance`` L2-normalises the embeddings
    first by default; ours measures the raw embeddings, as the paper (equal to PML with
    ``SNRDistance(normalize_embeddings=False)``). The paper's regulariser on the embeddings'
    mean is not part of the loss. Rows with zero variance are refused. Memory O(B R).
    """
    term = HingeTerm(pos_margin=-pos_margin, neg_margin=-neg_margin)
    agg = PairSumAggregator(normalize)
    return PairLoss(term, agg, miner, "neg_snr", relation_fn)


@LOSSES.register("tuplet_margin", family="pair weighting", source="Yu & Tao 2019, tuplet margin")
def tuplet_margin(
    margin: float = 5.73,
    scale: float = 64.0,
    miner: PairMiner | None = None,
    relation_fn: RelationFn | None = None,
) -> PairLoss:
    """Tuplet margin loss (Yu & Tao 2019), cosine ``s = cos θ``: for every positive pair (i, p)::

        L_ip = log(1 + Σ_{n ∈ N_i} e^{γ (s_in - cos(θ_ip - β))})

    averaged over positive pairs whose anchor has a negative; slack margin ``β = margin`` in
    degrees (5.73°, 0.1 rad) and scale γ = 64, PML's defaults. PML's ``TupletMarginLoss`` also
    counts, with a loss of 0, positive pairs whose anchor has no negative (possible only with
    ``ref_emb`` or a relation function). At ``θ = 0`` (duplicates), where the angle has no
    derivative, the gradient is finite (see :class:`~dmlkit.losses.terms.AngularMarginTerm`).
    Memory O(B R).
    """
    term = AngularMarginTerm(math.radians(margin), scale)
    agg = PerPositiveSoftplusAggregator()
    return PairLoss(term, agg, miner, "cosine", relation_fn)


@LOSSES.register(
    "tcm",
    family="pair regularizer",
    source="Zhang et al. 2023, threshold-consistent margin",
)
def tcm(
    lambda_plus: float = 1.0,
    lambda_minus: float = 1.0,
    margin_plus: float = 0.9,
    margin_minus: float = 0.5,
    miner: PairMiner | None = None,
    relation_fn: RelationFn | None = None,
) -> PairLoss:
    """Threshold-consistent margin loss (Zhang et al. 2023), cosine similarity::

        L = λ+ mean_{P, s < m+} (m+ - s) + λ- mean_{N, s > m-} (s - m-)

    each side averaged over its pairs on the wrong side of the margin (0 when there are none);
    λ± = 1, m+ = 0.9, m- = 0.5, PML's ``ThresholdConsistentMarginLoss`` defaults. The paper adds
    it to a base loss as a regulariser; add it to another loss's value to do the same. PML counts
    pairs exactly at the margin (loss 0) in its denominators; ours does not. With ``ref_emb`` ours
    pairs the batch with the references (PML 2.9 indexes the batch with reference indices there).
    Memory O(B R).
    """
    term = HingeTerm(margin_plus, margin_minus, pos_weight=lambda_plus, neg_weight=lambda_minus)
    agg = PairSumAggregator("sides_nonzero")
    return PairLoss(term, agg, miner, "cosine", relation_fn)
