"""Verification metrics ("same / not same") over all pairs, exact and memory-bounded.

A pair ``(i, j)`` is *genuine* when the two items share a class (a label for multi-hot labels) and
an *impostor* pair otherwise; its score ``s_ij`` is the similarity the retrieval metrics rank by
(cosine, dot, or the negated squared Euclidean distance). A threshold ``t`` accepts a pair when
``s_ij >= t``:

    FMR(t)  = #{impostor s >= t} / N_imp       (false match rate, FAR)
    FNMR(t) = #{genuine s < t} / N_gen         (false non-match rate);  TAR(t) = 1 - FNMR(t)

- ROC AUC = P(s_gen > s_imp) + 1/2 P(s_gen = s_imp), over all genuine x impostor pairs (the area
  under the exact ROC curve, ties as diagonal steps, like scikit-learn's ``roc_auc_score``).
- EER: the ROC curve (FMR on x, TAR on y, its vertices joined by straight lines, as scikit-learn's
  ``roc_curve`` gives them) crosses the line FNMR = FMR; the EER is the FMR of that point.
- TAR@FAR=f: the largest TAR of a threshold whose FMR is at most ``f``; FNMR@FMR=f = 1 - TAR@FAR=f,
  and the threshold is the lowest genuine score accepted at that operating point.

Pairs: with one set, the ``N (N - 1) / 2`` unordered pairs of distinct items (leave-one-out, no
self pair); with a query and a reference set, all ``Q x R`` cross pairs.

How: the genuine scores are collected (one pass over blocks of score rows, keeping only genuine
pairs), sorted and reduced to their distinct values ``u_0 < ... < u_{U-1}``; a second pass over the
same blocks finds, for each score, its place among the ``u`` (``bucketize``) and counts the pairs
below and equal to each ``u_j``, from which the genuine pairs' own counts are subtracted: what
remains counts the impostors. All ROC quantities follow exactly from these counts:
ROC vertices change TAR only at genuine scores. Both passes compute the blocks with the same
calls, so a genuine score is bit-identical in both. Memory: one block of ``rows x R`` scores and
its masks (about 32 bytes a pair, within ``memory_bytes``) plus O(N_gen) for the genuine scores
(``Σ_c n_c (n_c - 1) / 2`` pairs: small when there are many classes, the verification setting);
never a list of all pairs. Time: two ``N x R x D`` products plus ``N_imp log U`` for the counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from dmlkit.evaluation.knn import DEFAULT_MEMORY_BYTES, prepare_embeddings, similarity_argument

DEFAULT_FMRS: tuple[float, ...] = (1e-2, 1e-3, 1e-4)
BYTES_PER_PAIR = 32  # score, masks, selected scores and their int64 places


def rate_name(rate: float) -> str:
    """``1e-3`` -> ``"1e-3"`` (powers of ten), anything else as ``%g`` (``0.05``)."""
    text = f"{rate:.0e}"
    mantissa, exponent = text.split("e")
    if mantissa == "1" and float(text) == rate:
        return f"1e{int(exponent)}"
    return f"{rate:g}"


@dataclass
class PairCounts:
    """The exact genuine / impostor score distribution, reduced to the distinct genuine scores.

    ``values (U,)`` float32 ascending distinct genuine scores; ``genuine (U,)`` int64 genuine
    pairs at each value; ``impostor_below (U,)`` impostor pairs scoring below ``values[j]`` and
    ``impostor_equal (U,)`` exactly at it; ``num_genuine``, ``num_impostor`` the pair counts.
    """

    values: Tensor
    genuine: Tensor
    impostor_below: Tensor
    impostor_equal: Tensor
    num_genuine: int
    num_impostor: int

    def operating_points(self) -> tuple[Tensor, Tensor]:
        """``(fmr (U,), tar (U,))`` float64 at each threshold ``t = values[j]``."""
        accepted_gen = self.num_genuine - (torch.cumsum(self.genuine, 0) - self.genuine)
        accepted_imp = self.num_impostor - self.impostor_below
        return (
            accepted_imp.double() / self.num_impostor,
            accepted_gen.double() / self.num_genuine,
        )


def _same_class(q_labels: Tensor, r_labels: Tensor) -> Tensor:
    """``(rows, R)`` bool: the pair shares a class id (or, for multi-hot labels, a label)."""
    if q_labels.ndim == 1:
        return q_labels[:, None] == r_labels[None, :]
    return (q_labels.float() @ r_labels.float().T) > 0


def _pair_blocks(
    query: Tensor,
    q_labels: Tensor,
    ref: Tensor | None,
    r_labels: Tensor,
    similarity: str,
    memory_bytes: int,
    device: torch.device | str | None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(scores, genuine)`` blocks ``(rows, C)``, computed by the same calls each time.

    Leave-one-out (``ref`` None): block rows ``[a, a + rows)`` against items ``a..N-1``; the pairs
    ``j <= i`` of the leading square are not pairs of the set: their score is ``+inf`` (above
    every genuine value, so they land in no count) and they are not genuine. Otherwise every
    query row against every reference.
    """
    dev = torch.device(device) if device is not None else query.device
    q = prepare_embeddings(query, similarity, dev)
    r = q if ref is None else prepare_embeddings(ref, similarity, dev)
    rq = (q * q).sum(1) if similarity == "euclidean" else None
    rr = (r * r).sum(1) if similarity == "euclidean" else None
    q_lab, r_lab = q_labels.to(dev), r_labels.to(dev)
    num_ref = r.shape[0]
    step = max(1, int(memory_bytes) // (BYTES_PER_PAIR * max(num_ref, 1)))
    for start in range(0, q.shape[0], step):
        stop = min(start + step, q.shape[0])
        first = start if ref is None else 0
        s = q[start:stop] @ r[first:].T
        if rq is not None and rr is not None:
            s = 2 * s - rr[first:][None, :] - rq[start:stop][:, None]
        same = _same_class(q_lab[start:stop], r_lab[first:])
        if ref is None:
            rows = stop - start
            outside = torch.ones(rows, rows, dtype=torch.bool, device=dev).tril()
            s[:, :rows].masked_fill_(outside, float("inf"))
            same[:, :rows].masked_fill_(outside, False)
        yield s, same


def _places(values: Tensor, scores: Tensor) -> tuple[Tensor, Tensor]:
    """For each score: ``place`` = the number of genuine values below it, and whether it equals
    ``values[place]``."""
    place = torch.bucketize(scores, values)  # values[place - 1] < s <= values[place]
    hit = values[place.clamp(max=values.shape[0] - 1)] == scores
    return place, hit


def pair_counts(
    query_emb: Tensor,
    query_labels: Tensor,
    ref_emb: Tensor | None = None,
    ref_labels: Tensor | None = None,
    similarity: str = "cosine",
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    device: torch.device | str | None = None,
    *,
    metric: str | None = None,
) -> PairCounts:
    """The :class:`PairCounts` of all pairs (module docstring) under ``similarity`` (``metric``:
    its deprecated former keyword); inputs are assumed validated (see
    :func:`dmlkit.evaluation.evaluate`). ``ValueError`` when there is no genuine or no impostor
    pair.

    The second pass places every score of a block (no masked copies) and subtracts the genuine
    pairs' places, computed once from the genuine scores.
    """
    similarity = similarity_argument(similarity, metric, "pair_counts")
    r_labels = query_labels if ref_labels is None else ref_labels

    def blocks() -> Iterator[tuple[Tensor, Tensor]]:
        return _pair_blocks(
            query_emb, query_labels, ref_emb, r_labels, similarity, memory_bytes, device
        )

    parts = []
    for s, same in blocks():
        parts.append(s[same].cpu())
        if bool(torch.isnan(s).any()) or not bool(torch.isfinite(parts[-1]).all()):
            raise ValueError(
                f"embeddings: expected finite pair scores, got NaN or inf ({similarity} of "
                "embeddings whose products overflow float32); rescale the embeddings"
            )
    genuine_scores = torch.cat(parts)
    if genuine_scores.numel() == 0:
        raise ValueError(
            "labels: expected at least one genuine pair (two items of one class) for the "
            "verification metrics, got none"
        )
    n, m = query_emb.shape[0], (query_emb if ref_emb is None else ref_emb).shape[0]
    num_pairs = n * (n - 1) // 2 if ref_emb is None else n * m
    num_impostor = num_pairs - genuine_scores.numel()
    if num_impostor == 0:
        raise ValueError(
            "labels: expected at least one impostor pair (two items of different classes) for "
            "the verification metrics, got none"
        )
    values, genuine = torch.unique(genuine_scores, sorted=True, return_counts=True)
    size = values.shape[0] + 1

    def counts(scores: Tensor) -> tuple[Tensor, Tensor]:
        # a score s is below u_j for every j >= place (+1 when s equals u_place)
        place, hit = _places(values, scores.reshape(-1))
        return (
            torch.bincount(place + hit.long(), minlength=size),
            torch.bincount(place[hit], minlength=size),
        )

    below, equal = counts(genuine_scores)
    below, equal = -below, -equal
    del genuine_scores
    for s, _ in blocks():
        block_below, block_equal = counts(s.cpu())
        below += block_below
        equal += block_equal
    return PairCounts(
        values,
        genuine.long(),
        torch.cumsum(below, 0)[:-1],
        equal[:-1],
        int(genuine.sum()),
        num_impostor,
    )


def roc_auc(counts: PairCounts) -> float:
    """``P(s_gen > s_imp) + 1/2 P(s_gen = s_imp)``, exact (integer sums, one division)."""
    twice = (counts.genuine * (2 * counts.impostor_below + counts.impostor_equal)).sum()
    return float(twice.double() / (2.0 * counts.num_genuine * counts.num_impostor))


def roc_curve(counts: PairCounts) -> tuple[Tensor, Tensor]:
    """The vertices ``(fmr, tar)`` float64 of the exact ROC curve, from (0, 0) to (1, 1).

    Thresholds fall from above the top score: at each distinct genuine value ``u_j`` (from the
    highest) the curve first runs right over the impostors above ``u_j`` (TAR fixed), then
    diagonally over the impostors and genuine pairs tied at ``u_j``.
    """
    fmr, tar = counts.operating_points()
    above_fmr = fmr - counts.impostor_equal.double() / counts.num_impostor
    above_tar = torch.cat([tar[1:], tar.new_zeros(1)])
    # descending thresholds: for j = U-1 .. 0 the point just above u_j, then the point at u_j
    xs = torch.stack([above_fmr, fmr], 1).flip(0).reshape(-1)
    ys = torch.stack([above_tar, tar], 1).flip(0).reshape(-1)
    zero, one = torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    return torch.cat([zero, xs, one]), torch.cat([zero, ys, one])


def equal_error_rate(counts: PairCounts) -> float:
    """The EER: the FMR where the piecewise-linear ROC curve meets FNMR = FMR (module docstring).

    Along the curve ``g = FMR - FNMR = fmr - (1 - tar)`` rises from -1 to 1; on the first segment
    where it reaches 0, the crossing is interpolated linearly.
    """
    fmr, tar = roc_curve(counts)
    g = fmr + tar - 1.0
    k = int(torch.nonzero(g >= 0)[0])
    if k == 0 or g[k] == 0:
        return float(fmr[k])
    w = float(-g[k - 1] / (g[k] - g[k - 1]))
    return float(fmr[k - 1] + w * (fmr[k] - fmr[k - 1]))


def tar_at_far(counts: PairCounts, fmr: float) -> tuple[float, float]:
    """``(TAR, threshold)``: the largest TAR with FMR <= ``fmr`` and the lowest genuine score it
    accepts (``inf`` and TAR 0 when even the top genuine score lets through too many impostors)."""
    if not 0.0 <= fmr <= 1.0:
        raise ValueError(f"fmr: expected a rate in [0, 1], got {fmr}")
    rates, tars = counts.operating_points()
    ok = torch.nonzero(rates <= fmr)
    if ok.numel() == 0:
        return 0.0, float("inf")
    j = int(ok[0])  # FMR falls as the threshold rises: the lowest feasible threshold
    return float(tars[j]), float(counts.values[j])
