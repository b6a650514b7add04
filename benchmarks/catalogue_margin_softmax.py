"""Loss catalogue cases of the margin softmax family: ours beside pytorch-metric-learning's.

Both sides of a case start from the same class weights (drawn from a fixed seed), so at equal
inputs they compute the same loss (P2SGrad: to about 1e-7, PML re-normalises its weights with
``renorm``). PML's ArcFace margins are in degrees: 0.5 rad is given as ``degrees(0.5)``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pytorch_metric_learning import losses as pml_losses

from benchmarks.catalogue import Case
from dmlkit.losses import MarginSoftmaxLoss, create

SEED = 0


def _weights(rows: int, dim: int) -> torch.Tensor:
    """The shared starting class weights ``(rows, dim)``, unit rows."""
    weight = torch.randn(rows, dim, generator=torch.Generator().manual_seed(SEED))
    return weight / weight.norm(dim=1, keepdim=True)


def ours(name: str, **options: float) -> Callable[[int, int], nn.Module]:
    def build(classes: int, dim: int) -> nn.Module:
        loss = create(name, num_classes=classes, embedding_dim=dim, **options)
        assert isinstance(loss, MarginSoftmaxLoss)
        loss.proxies.assign(_weights(loss.proxies.weight.shape[0], dim))
        return loss

    return build


def peer(
    make: Callable[[int, int], nn.Module], attribute: str = "W"
) -> Callable[[int, int], nn.Module]:
    """A PML loss whose ``(D, C K)`` weight starts as ours (transposed)."""

    def build(classes: int, dim: int) -> nn.Module:
        loss = make(classes, dim)
        weight = getattr(loss, attribute)
        weight.data = _weights(weight.shape[1], dim).T.contiguous()
        return loss

    return build


CASES: dict[str, Case] = {
    "arcface": Case(
        ours=ours("arcface"),
        peer=peer(lambda c, d: pml_losses.ArcFaceLoss(c, d, margin=math.degrees(0.5))),
        note="m = 0.5 rad (PML's default 28.6° = 0.4992 rad), s = 64",
    ),
    "subcenter_arcface": Case(
        ours=ours("subcenter_arcface"),
        peer=peer(
            lambda c, d: pml_losses.SubCenterArcFaceLoss(
                num_classes=c, embedding_size=d, margin=math.degrees(0.5), sub_centers=3
            )
        ),
        note="3 sub-centres per class, m = 0.5 rad, s = 64",
    ),
    "cosface": Case(
        ours=ours("cosface"),
        peer=peer(lambda c, d: pml_losses.CosFaceLoss(c, d)),
        note="m = 0.35, s = 64 (both defaults)",
    ),
    "sphereface": Case(
        ours=ours("sphereface"),
        peer=peer(lambda c, d: pml_losses.SphereFaceLoss(c, d)),
        note="m = 4, s = 1 (both defaults)",
    ),
    "large_margin_softmax": Case(
        ours=ours("large_margin_softmax"),
        peer=peer(lambda c, d: pml_losses.LargeMarginSoftmaxLoss(c, d)),
        note="m = 4, s = 1 (both defaults); both start from the same unit-norm weights",
    ),
    "p2sgrad": Case(
        ours=ours("p2sgrad"),
        peer=peer(lambda c, d: pml_losses.P2SGradLoss(d, c), attribute="weight"),
        note="PML re-normalises its weights in place each call; ours normalises in the graph",
    ),
}
