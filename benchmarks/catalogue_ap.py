"""Benchmark cases of the average-precision surrogates and the ranked list loss beside their
pytorch-metric-learning (PML) peers, at matching settings (see :mod:`benchmarks.catalogue`).

Differences that remain at matching settings, none of which changes the cost:

- PNP: PML counts the anchor as one of its own positives; ours does not (pass ``self_index`` of
  ``-1`` for PML's value);
- ranked list: PML adds 1e-5 per reference to each side's sum of weights;
- Smooth-AP: PML's ``SmoothAPLoss`` needs equal class counts in contiguous blocks and groups
  them correctly only when there are as many classes as items per class, so it cannot run on the
  catalogue's batches: no peer.
"""

from __future__ import annotations

from pytorch_metric_learning import losses as pml_losses

from benchmarks.catalogue import Case, LossFn
from dmlkit.losses import create

PNP_VARIANTS = ("O", "Ds", "Dq", "Iu", "Ib")


def _ours(name: str, **options: object) -> LossFn:
    loss = create(name, **options)
    return lambda emb, labels: loss(emb, labels)


def _pnp_case(variant: str) -> Case:
    return Case(
        ours=lambda classes, dim: _ours("pnp", variant=variant),
        peer=lambda classes, dim: pml_losses.PNPLoss(variant=variant),
        note="PML counts the anchor among its positives; ours does not",
    )


CASES: dict[str, Case] = {
    "fast_ap": Case(
        ours=lambda classes, dim: _ours("fast_ap", num_bins=10),
        peer=lambda classes, dim: pml_losses.FastAPLoss(num_bins=10),
    ),
    "smooth_ap": Case(
        ours=lambda classes, dim: _ours("smooth_ap", temperature=0.01),
        peer=None,
        note="PML's SmoothAPLoss needs equal, contiguous class blocks (classes == items per "
        "class to be right): no peer on arbitrary batches",
    ),
    **{f"pnp_{v}": _pnp_case(v) for v in PNP_VARIANTS},
    "ranked_list": Case(
        ours=lambda classes, dim: _ours("ranked_list", margin=0.4, temp_neg=10.0),
        peer=lambda classes, dim: pml_losses.RankedListLoss(margin=0.4, Tn=10.0),
        note="PML adds 1e-5 per reference to each side's sum of weights",
    ),
}
