"""A match threshold for a chosen false match rate, from labelled validation embeddings.

Over all pairs of the calibration items (:mod:`dmlkit.evaluation.verification`), the threshold
``t`` is the lowest genuine score accepted at the largest TAR whose FMR is at most ``fmr``: a pair
with ``score >= t`` is a match. The classes of the calibration data should be disjoint from the
training classes (``dmlkit calibrate --split val`` on a run with held-out validation classes);
otherwise the threshold is fitted to classes the model was trained on and the FMR on new classes
is likely higher. Time and memory: those of :func:`~dmlkit.evaluation.verification.pair_counts`.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from dmlkit.core.checks import check_embeddings, check_labels
from dmlkit.evaluation.verification import (
    equal_error_rate,
    pair_counts,
    roc_auc,
    tar_at_far,
)


def calibrate(emb: Tensor, labels: Tensor, fmr: float, metric: str = "cosine") -> dict[str, Any]:
    """``{"threshold", "fmr_target", "fmr", "tar", "eer", "roc_auc", "genuine_pairs",
    "impostor_pairs"}`` for embeddings ``emb (N, D)`` with class ids ``labels (N,)``; ``fmr``
    and ``tar`` are the rates at the threshold on these pairs. ``ValueError`` when the target is
    out of (0, 1) or no threshold reaches it."""
    check_embeddings(emb, "emb")
    check_labels(labels, emb.shape[0], "labels")
    if not 0.0 < fmr < 1.0:
        raise ValueError(f"fmr: expected a false match rate in (0, 1), got {fmr}")
    counts = pair_counts(emb, labels, similarity=metric)
    tar, threshold = tar_at_far(counts, fmr)
    if tar == 0.0:
        raise ValueError(
            f"fmr: no threshold accepts a genuine pair at FMR <= {fmr:g} on these "
            f"{counts.num_impostor} impostor pairs; choose a higher rate or more data"
        )
    rates, _ = counts.operating_points()
    at = int((counts.values == threshold).nonzero()[0])
    return {
        "threshold": threshold,
        "fmr_target": fmr,
        "fmr": float(rates[at]),
        "tar": tar,
        "eer": equal_error_rate(counts),
        "roc_auc": roc_auc(counts),
        "genuine_pairs": counts.num_genuine,
        "impostor_pairs": counts.num_impostor,
        "metric": metric,
    }
