"""More pair miners, after pytorch-metric-learning's (PML) miners of the same names.

Same interface as :mod:`dmlkit.losses.miners`: ``pos_kept, neg_kept = miner(S, pos, neg)`` with
``S (B, R)`` similarities ("higher = more similar") and bool masks ``(B, R)``; the results are
sub-masks and carry no gradient. PML states its miners on distances; here every rule is stated on
``S``, so "far" means a low similarity. With PML's ``CosineSimilarity()`` as its distance the kept
pairs are the same as PML's (its index tuples turned into masks); with its default Euclidean
distance between unit vectors, ``d = sqrt(2 - 2 s)`` gives the same order, so only thresholds need
converting (``s = 1 - d²/2``).

=================== =============================================== ==========================
miner               keeps                                            source
=================== =============================================== ==========================
pair_margin         positives with ``s < pos_margin``, negatives     PML PairMarginMiner
                    with ``s > neg_margin``
batch_easy_hard     per anchor one positive and one negative by      Xuan et al. 2020
                    strategy (easy / semihard / hard / all)
hdc                 the hardest ``ceil(f P)`` of the P positive      Yuan et al. 2017
                    pairs and ``ceil(f N)`` of the N negative pairs
angular             pairs of the triplets whose angle at the         Wang et al. 2017
                    negative exceeds ``angle`` (reduced to pairs)
uniform_histogram   per side, up to ``per_bin`` random pairs from    PML UniformHistogramMiner
                    each of ``num_bins`` equal-width bins of ``s``
=================== =============================================== ==========================
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dmlkit.core.checks import check_positive
from dmlkit.losses.chunks import row_chunks
from dmlkit.losses.miners import PairMiner, ThresholdMiner, _top_per_row
from dmlkit.losses.registry import MINERS

_INF = float("inf")
STRATEGIES: tuple[str, ...] = ("easy", "semihard", "hard", "all")


@MINERS.register("pair_margin", family="threshold", source="PML PairMarginMiner")
class PairMarginMiner(ThresholdMiner):
    """Keeps positives with ``s < pos_margin`` and negatives with ``s > neg_margin`` (strict).

    PML's defaults 0.2 and 0.8 are Euclidean distances between unit vectors; our defaults are the
    same margins as cosine similarities, ``1 - d²/2``: 0.98 and 0.68. Memory O(B R).
    """

    def __init__(self, pos_margin: float = 0.98, neg_margin: float = 0.68) -> None:
        super().__init__(pos_below=float(pos_margin), neg_above=float(neg_margin))

    def extra_repr(self) -> str:
        return f"pos_margin={self.pos_below}, neg_margin={self.neg_above}"


def _picked_value(sim: Tensor, picked: Tensor, empty: float) -> Tensor:
    """``(B, 1)``: the similarity of each row's single picked entry, ``empty`` (±inf) for rows
    without one."""
    filled = torch.where(picked, sim, empty)
    return filled.amin(dim=1, keepdim=True) if empty > 0 else filled.amax(dim=1, keepdim=True)


def _in_range(sim: Tensor, mask: Tensor, bounds: tuple[float, float] | None) -> Tensor:
    if bounds is None:
        return mask
    return mask & (sim >= bounds[0]) & (sim <= bounds[1])


def _check_range(
    bounds: tuple[float, float] | list[float] | None, name: str
) -> tuple[float, float] | None:
    if bounds is None:
        return None
    if len(bounds) != 2 or not float(bounds[0]) <= float(bounds[1]):
        raise ValueError(f"{name}: expected (low, high) with low <= high, got {bounds!r}")
    return float(bounds[0]), float(bounds[1])


@MINERS.register("batch_easy_hard", family="hardness", source="Xuan et al. 2020, easy positives")
class BatchEasyHardMiner(PairMiner):
    """Per anchor one positive and one negative, chosen by strategy (PML's options and defaults).

    Positives: ``easy`` = highest ``s``, ``hard`` = lowest ``s``, ``semihard`` = lowest ``s`` among
    positives more similar than the chosen negative (``s_ap > s_an*``). Negatives: ``easy`` = lowest
    ``s``, ``hard`` = highest ``s``, ``semihard`` = highest ``s`` among negatives less similar than
    the chosen positive (``s_an < s_ap*``). ``all`` keeps every labelled pair of that side (its
    range does not apply, as in PML). When neither side is ``all``, an anchor keeps its pair only if
    both sides found one. ``pos_range``/``neg_range = (low, high)`` restrict the candidates to
    ``low <= s <= high`` before choosing (PML's ``allowed_*_range``, given on ``S``). Ties: the lower
    column wins. Memory O(B R).
    """

    def __init__(
        self,
        pos_strategy: str = "easy",
        neg_strategy: str = "semihard",
        pos_range: tuple[float, float] | None = None,
        neg_range: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("pos_strategy", pos_strategy), ("neg_strategy", neg_strategy)):
            if value not in STRATEGIES:
                raise ValueError(f"{name}: expected one of {STRATEGIES}, got {value!r}")
        pair = {pos_strategy, neg_strategy}
        if pos_strategy == neg_strategy == "semihard" or pair == {"semihard", "all"}:
            raise ValueError(
                "pos_strategy, neg_strategy: expected at most one 'semihard' and not with 'all', "
                f"got {pos_strategy!r}, {neg_strategy!r}"
            )
        self.pos_strategy, self.neg_strategy = pos_strategy, neg_strategy
        self.pos_range = _check_range(pos_range, "pos_range")
        self.neg_range = _check_range(neg_range, "neg_range")

    def _positive(self, sim: Tensor, cand: Tensor) -> Tensor:
        return _top_per_row(sim if self.pos_strategy == "easy" else -sim, cand, 1)

    def _negative(self, sim: Tensor, cand: Tensor) -> Tensor:
        return _top_per_row(-sim if self.neg_strategy == "easy" else sim, cand, 1)

    def mine(self, sim: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
        pos_c = _in_range(sim, pos, self.pos_range)
        neg_c = _in_range(sim, neg, self.neg_range)
        if self.pos_strategy == "semihard":
            neg_1 = self._negative(sim, neg_c)
            pos_1 = self._positive(sim, pos_c & (sim > _picked_value(sim, neg_1, _INF)))
        elif self.neg_strategy == "semihard":
            pos_1 = self._positive(sim, pos_c)
            neg_1 = self._negative(sim, neg_c & (sim < _picked_value(sim, pos_1, -_INF)))
        else:
            pos_1 = pos if self.pos_strategy == "all" else self._positive(sim, pos_c)
            neg_1 = neg if self.neg_strategy == "all" else self._negative(sim, neg_c)
        if "all" in (self.pos_strategy, self.neg_strategy):
            return pos_1, neg_1
        both = pos_1.any(dim=1, keepdim=True) & neg_1.any(dim=1, keepdim=True)
        return pos_1 & both, neg_1 & both

    def extra_repr(self) -> str:
        return (
            f"pos_strategy={self.pos_strategy!r}, neg_strategy={self.neg_strategy!r}, "
            f"pos_range={self.pos_range}, neg_range={self.neg_range}"
        )


@MINERS.register("hdc", family="hardness", source="Yuan et al. 2017, hard-aware deeply cascaded")
class HDCMiner(PairMiner):
    """The hardest fraction of all pairs of the batch (not per anchor), as PML's ``HDCMiner``:
    the ``ceil(f |P|)`` positive pairs of lowest ``s`` and the ``ceil(f |N|)`` negative pairs of
    highest ``s``, ``|P|``, ``|N|`` counting ordered pairs (``(i, j)`` and ``(j, i)`` when the
    batch is its own reference). Ties: the lower flat index wins. Time O(B R log(B R)).
    """

    def __init__(self, filter_percentage: float = 0.5) -> None:
        super().__init__()
        f = check_positive(filter_percentage, "filter_percentage")
        if f > 1.0:
            raise ValueError(f"filter_percentage: expected a value in (0, 1], got {f}")
        self.filter_percentage = f

    def _hardest(self, score: Tensor, mask: Tensor) -> Tensor:
        k = math.ceil(self.filter_percentage * int(mask.sum()))
        if k == 0:
            return mask
        return _top_per_row(score.reshape(1, -1), mask.reshape(1, -1), k).view_as(mask)

    def mine(self, sim: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
        return self._hardest(-sim, pos), self._hardest(sim, neg)

    def extra_repr(self) -> str:
        return f"filter_percentage={self.filter_percentage}"


@MINERS.register("angular", family="triplet geometry", source="Wang et al. 2017, angular loss")
class AngularMiner(PairMiner):
    """Pairs of the triplets ``(a, p, n)`` whose angle at the negative exceeds ``angle`` degrees,
    as PML's ``AngularMiner`` (Euclidean distance between unit vectors):

        tan∠n = |x_a - x_p| / (2 |x_n - x_c|),   x_c = (x_a + x_p) / 2,   kept iff ∠n > angle.

    From cosine similarities ``|x_a - x_p|² = 2 - 2 s_ap`` and
    ``|x_n - x_c|² = 3/2 + s_ap/2 - s_an - s_pn``, so the rule needs ``s_pn`` between two
    reference items: ``S`` must be the batch against itself (square, unit diagonal, as
    ``similarity="cosine"`` without ``ref_emb`` gives); anything else is refused.

    Reduction to pairs (the engine's contract is pairs, not triplets): positive ``(a, p)`` is kept
    iff some negative forms a kept triplet with it, negative ``(a, n)`` iff some positive does.
    A pair loss then sees the union of the kept triplets' pairs, not the triplets themselves.
    PML measures the angle on the embeddings as given (its ``pairwise_distance`` skips the
    distance's normalisation); here the vectors are always unit, and on unit inputs both agree.
    Time O(B R²), memory O(R² + chunk) (anchors in chunks, see :mod:`dmlkit.losses.chunks`).
    """

    def __init__(self, angle: float = 20.0) -> None:
        super().__init__()
        self.angle = check_positive(angle, "angle")
        if self.angle >= 90.0:
            raise ValueError(f"angle: expected degrees in (0, 90), got {angle!r}")

    def mine(self, sim: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
        b, r = sim.shape
        diag_ok = b == r and bool(
            torch.allclose(sim.diagonal(), torch.ones_like(sim[0]), atol=1e-4)
        )
        if not diag_ok:
            raise ValueError(
                "AngularMiner: expected the batch's cosine similarity with itself (square S with "
                f"unit diagonal), got S of shape {tuple(sim.shape)}"
            )
        four_tan2 = 4.0 * math.tan(math.radians(self.angle)) ** 2
        pos_out, neg_out = torch.zeros_like(pos), torch.zeros_like(neg)
        for rows in row_chunks(b, r * r):
            s = sim[rows]  # (c, R): s_ap and s_an of these anchors
            d_nc = (1.5 + 0.5 * s[:, :, None] - s[:, None, :] - sim[None]).clamp_min_(0.0)
            kept = (2.0 - 2.0 * s)[:, :, None] > four_tan2 * d_nc  # (c, p, n)
            kept &= pos[rows][:, :, None] & neg[rows][:, None, :]
            pos_out[rows] = kept.any(dim=2)
            neg_out[rows] = kept.any(dim=1)
        return pos_out, neg_out

    def extra_repr(self) -> str:
        return f"angle={self.angle}"


@MINERS.register("uniform_histogram", family="sampling", source="PML UniformHistogramMiner")
class UniformHistogramMiner(PairMiner):
    """Pairs spread evenly over the range of similarities, per side (positives, negatives).

    The side's values ``s`` (all its ordered pairs) are split into ``num_bins`` equal-width bins
    between their minimum and maximum (``[e_i, e_{i+1})``, the last bin closed), and up to
    ``per_bin`` pairs are drawn from each bin, uniformly and without replacement. PML draws with
    replacement, so a bin may give it fewer distinct pairs and some twice; a mask holds a pair once,
    so here each bin gives exactly ``min(per_bin, size)`` distinct pairs. Draws use ``generator``
    (same state, same pairs). Time O(P log P) for P pairs of a side.
    """

    def __init__(
        self,
        num_bins: int = 100,
        pos_per_bin: int = 10,
        neg_per_bin: int = 10,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_bins", num_bins),
            ("pos_per_bin", pos_per_bin),
            ("neg_per_bin", neg_per_bin),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
        self.num_bins, self.pos_per_bin, self.neg_per_bin = (
            int(num_bins),
            int(pos_per_bin),
            int(neg_per_bin),
        )
        self.generator = generator

    def bins(self, values: Tensor) -> Tensor:
        """The bin index ``(P,)`` of each value ``(P,)`` (``num_bins`` equal-width bins)."""
        edges = torch.linspace(
            float(values.min()),
            float(values.max()),
            self.num_bins + 1,
            dtype=values.dtype,
            device=values.device,
        )
        return (torch.searchsorted(edges, values, right=True) - 1).clamp_(0, self.num_bins - 1)

    def _side(self, sim: Tensor, mask: Tensor, per_bin: int) -> Tensor:
        flat = torch.nonzero(mask.reshape(-1)).squeeze(1)
        if flat.numel() == 0:
            return mask
        bin_of = self.bins(sim.reshape(-1)[flat])
        device = self.generator.device if self.generator is not None else sim.device
        keys = torch.rand(flat.shape, generator=self.generator, device=device).to(sim.device)
        order = keys.argsort()
        order = order[bin_of[order].argsort(stable=True)]  # by bin, random within a bin
        counts = torch.bincount(bin_of, minlength=self.num_bins)
        starts = counts.cumsum(0) - counts
        rank = torch.arange(flat.numel(), device=sim.device) - starts[bin_of[order]]
        out = torch.zeros_like(mask).reshape(-1)
        out[flat[order[rank < per_bin]]] = True
        return out.view_as(mask)

    def mine(self, sim: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
        return self._side(sim, pos, self.pos_per_bin), self._side(sim, neg, self.neg_per_bin)

    def extra_repr(self) -> str:
        return (
            f"num_bins={self.num_bins}, pos_per_bin={self.pos_per_bin}, "
            f"neg_per_bin={self.neg_per_bin}"
        )


__all__ = [
    "STRATEGIES",
    "AngularMiner",
    "BatchEasyHardMiner",
    "HDCMiner",
    "PairMarginMiner",
    "UniformHistogramMiner",
]
