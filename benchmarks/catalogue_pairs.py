"""Catalogue cases for the extended pair presets and the angular loss, each beside its
pytorch-metric-learning (PML) peer at the settings under which the parity tests find them equal
(``tests/losses/test_pair_presets_more.py``). See :class:`benchmarks.catalogue.Case`."""

from __future__ import annotations

from pytorch_metric_learning import distances, losses

from benchmarks.catalogue import Case
from dmlkit.losses import create

CASES: dict[str, Case] = {
    "supcon": Case(
        ours=lambda classes, dim: create("supcon", temperature=0.1, reduction="mean_nonzero"),
        peer=lambda classes, dim: losses.SupConLoss(temperature=0.1),
        note="ours defaults to the mean over anchors with a positive (mean_valid)",
    ),
    "ntxent": Case(
        ours=lambda classes, dim: create("ntxent", temperature=0.07),
        peer=lambda classes, dim: losses.NTXentLoss(temperature=0.07),
    ),
    "nca": Case(
        ours=lambda classes, dim: create("nca", similarity="cosine", scale=2.0),
        peer=lambda classes, dim: losses.NCALoss(softmax_scale=1.0),
        note="PML normalises first: its softmax_scale c is our cosine scale 2c; ours defaults to "
        "raw squared distances",
    ),
    "instance": Case(
        ours=lambda classes, dim: create("instance", gamma=64.0),
        peer=lambda classes, dim: losses.InstanceLoss(gamma=64),
    ),
    "intra_pair_variance": Case(
        ours=lambda classes, dim: create("intra_pair_variance", pos_eps=0.01, neg_eps=0.01),
        peer=lambda classes, dim: losses.IntraPairVarianceLoss(pos_eps=0.01, neg_eps=0.01),
    ),
    "snr_contrastive": Case(
        ours=lambda classes, dim: create("snr_contrastive", pos_margin=0.0, neg_margin=1.0),
        peer=lambda classes, dim: losses.SignalToNoiseRatioContrastiveLoss(
            pos_margin=0.0,
            neg_margin=1.0,
            distance=distances.SNRDistance(normalize_embeddings=False),
        ),
        note="PML's SNRDistance normalises by default; ours measures the raw embeddings",
    ),
    "tuplet_margin": Case(
        ours=lambda classes, dim: create("tuplet_margin", margin=5.73, scale=64.0),
        peer=lambda classes, dim: losses.TupletMarginLoss(margin=5.73, scale=64),
    ),
    "angular": Case(
        ours=lambda classes, dim: create("angular", alpha=40.0),
        peer=lambda classes, dim: losses.AngularLoss(alpha=40),
        note="equal on unit-norm embeddings (PML multiplies by the raw reference rows)",
    ),
    "tcm": Case(
        ours=lambda classes, dim: create("tcm"),
        peer=lambda classes, dim: losses.ThresholdConsistentMarginLoss(),
    ),
}
