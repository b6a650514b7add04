"""Regularizers: penalties on the rows of a matrix, either a batch of embeddings ``(B, D)`` or a
loss's class weights / proxies ``(C K, D)`` (row ``c K + k`` is proxy ``k`` of class ``c``).
:class:`~dmlkit.losses.regularized.Regularized` adds them to any loss.

=================  =========================================================  ================
name               R(X), rows x_i (N of them), K rows per class                acts on
=================  =========================================================  ================
``lp``             mean_i |x_i|_p^q                                           embeddings (or
                                                                              weights)
``zero_mean``      mean_i |Σ_d x_id|                                          embeddings (or
                                                                              weights)
``center_invariant`` mean_i (|x_i|² - mean_j |x_j|²)² / 4                      weights
``regular_face``   mean_i max_{j: class(j) ≠ class(i)} cos(x_i, x_j)          weights
``sparse_centers`` Σ_c Σ_{k<k'} sqrt(2 + ε - 2 cos(x_ck, x_ck')) / (C K (K-1))  weights, K >= 2
=================  =========================================================  ================

Every penalty is a 0-dim tensor computed in float32 (float64 for float64 input), also under
``torch.autocast``. Memory: O(N D), except ``regular_face`` O(N²) and ``sparse_centers``
O(C K²).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dmlkit.core.checks import check_positive
from dmlkit.core.norms import row_norms
from dmlkit.core.registry import Registry

Target = Literal["embeddings", "weights"]
REGULARIZERS: Registry[Regularizer] = Registry("regularizer")


class Regularizer(nn.Module):
    """A penalty ``R(x (N, D), per_class) -> 0-dim`` on the rows of ``x``. ``target`` says whether
    it acts on the embeddings or on the class weights (one of ``targets``); ``per_class`` is the
    number of consecutive rows of one class (1 for embeddings)."""

    targets: tuple[str, ...] = ("embeddings", "weights")

    def __init__(self, target: Target = "embeddings") -> None:
        super().__init__()
        if target not in self.targets:
            raise ValueError(
                f"target: expected one of {self.targets} for {type(self).__name__}, got {target!r}"
            )
        self.target = target

    def forward(self, x: Tensor, per_class: int = 1) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim != 2 or not x.is_floating_point():
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{self.target}: expected a floating-point (N, D) tensor, got {got}")
        if x.shape[0] % per_class:
            raise ValueError(
                f"per_class: expected a divisor of the {x.shape[0]} rows, got {per_class}"
            )
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.penalty(x.to(dtype), per_class)

    def penalty(self, x: Tensor, per_class: int) -> Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"target={self.target!r}"


@REGULARIZERS.register(
    "lp", family="embedding norm", source="Sohn 2016, N-pair loss (embedding L2 penalty)"
)
class LpRegularizer(Regularizer):
    """``mean_i |x_i|_p^q`` (``p >= 1``, power ``q >= 1``); p = 2, q = 1 as PML's
    ``LpRegularizer``."""

    def __init__(self, p: float = 2.0, power: float = 1.0, target: Target = "embeddings") -> None:
        super().__init__(target)
        for name, value in (("p", p), ("power", power)):
            if not check_positive(value, name) >= 1.0:
                raise ValueError(f"{name}: expected a value >= 1, got {value!r}")
        self.p, self.power = float(p), float(power)

    def penalty(self, x: Tensor, per_class: int) -> Tensor:
        return row_norms(x, self.p).pow(self.power).mean()

    def extra_repr(self) -> str:
        return f"p={self.p}, power={self.power}, target={self.target!r}"


@REGULARIZERS.register(
    "zero_mean", family="embedding", source="Yuan et al. 2019, Signal-to-Noise Ratio DML"
)
class ZeroMeanRegularizer(Regularizer):
    """``mean_i |Σ_d x_id|``: each row's entries pushed to sum (and average) to zero, as PML's
    ``ZeroMeanRegularizer``."""

    def penalty(self, x: Tensor, per_class: int) -> Tensor:
        return x.sum(dim=1).abs().mean()


@REGULARIZERS.register(
    "center_invariant", family="class weights", source="Wu et al. 2017, Center Invariant Loss"
)
class CenterInvariantRegularizer(Regularizer):
    """``mean_i (|w_i|² - mean_j |w_j|²)² / 4``: all class weights of one squared norm."""

    targets = ("weights",)

    def __init__(self, target: Target = "weights") -> None:
        super().__init__(target)

    def penalty(self, x: Tensor, per_class: int) -> Tensor:
        squared = x.square().sum(dim=1)
        return (squared - squared.mean()).square().mean() / 4.0


@REGULARIZERS.register(
    "regular_face", family="class weights", source="Zhao et al. 2019, RegularFace"
)
class RegularFaceRegularizer(Regularizer):
    """``mean_i max_{j: class(j) ≠ class(i)} cos(w_i, w_j)``: every weight's nearest weight of
    another class pushed away (the exclusive regularization of RegularFace). With one weight per
    class this is PML's ``RegularFaceRegularizer``; with several, rows of the same class are not
    compared (PML compares every pair of rows)."""

    targets = ("weights",)

    def __init__(self, target: Target = "weights") -> None:
        super().__init__(target)

    def penalty(self, x: Tensor, per_class: int) -> Tensor:
        classes = x.shape[0] // per_class
        if classes < 2:
            raise ValueError(f"weights: expected at least 2 classes to separate, got {classes}")
        unit = F.normalize(x, dim=1)
        cos = unit @ unit.T
        group = torch.arange(x.shape[0], device=x.device) // per_class
        same = group[:, None] == group[None, :]
        return cos.masked_fill(same, -torch.inf).amax(dim=1).mean()


def center_spread(x: Tensor, per_class: int, eps: float = 1e-5) -> Tensor:
    """``Σ_c Σ_{k<k'} sqrt(2 + ε - 2 cos(x_ck, x_ck')) / (C K (K - 1))`` for ``x (C K, D)``
    (class-major rows, ``K = per_class >= 2``); ``2 cos`` is clipped at 2. Memory O(C K²)."""
    classes = x.shape[0] // per_class
    unit = F.normalize(x, dim=1).view(classes, per_class, x.shape[1])
    gram = unit @ unit.transpose(1, 2)
    rows, cols = torch.triu_indices(per_class, per_class, 1, device=gram.device)
    dist = (2.0 + eps - (2.0 * gram[:, rows, cols]).clamp_max(2.0)).sqrt()
    return dist.sum() / (classes * per_class * (per_class - 1))


@REGULARIZERS.register(
    "sparse_centers", family="class weights", source="Qian et al. 2019, SoftTriple"
)
class SparseCentersRegularizer(Regularizer):
    """:func:`center_spread` of each class's proxies (SoftTriple's regulariser, which lets
    redundant centres merge); ``ε = 1e-5`` as the SoftTriple code (PML's
    ``SparseCentersRegularizer`` uses the dtype's smallest normal number, which makes the gradient
    of merged centres about 1e19 in float32)."""

    targets = ("weights",)

    def __init__(self, eps: float = 1e-5, target: Target = "weights") -> None:
        super().__init__(target)
        self.eps = check_positive(eps, "eps")

    def penalty(self, x: Tensor, per_class: int) -> Tensor:
        if per_class < 2:
            raise ValueError(
                f"per_class: expected at least 2 proxies per class to spread, got {per_class}"
            )
        return center_spread(x, per_class, self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, target={self.target!r}"
