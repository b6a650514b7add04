"""k-means: k-means++ seeding and Lloyd iterations in pure PyTorch (faiss optional).

Objective: assignments ``a_i`` and centers ``c_j`` minimising the inertia ``Σ_i |x_i - c_{a_i}|^2``.

- Seeding (``init="k-means++"``, default): the first center uniformly, then each new center drawn
  with probability ∝ ``D(x)^2``, the squared distance to the nearest center chosen so far. Centers
  are drawn in at most :data:`SEEDING_ROUNDS` rounds of ``ceil((k - 1) / SEEDING_ROUNDS)`` draws
  without replacement: exact k-means++ when ``k <= SEEDING_ROUNDS + 1``, 4 centers a round for
  CUB's 100 classes, 354 for SOP's 11,316 (on SOP-like data 16 to 256 rounds reach the same NMI).
  Seeding then costs about one Lloyd iteration instead of ``k`` passes over the data, and yields
  the first assignment on the way. ``init="random"``: ``k``
  distinct points, as faiss seeds.
- Lloyd: assign every point to its nearest center (``|x|^2 + |c|^2 - 2 x·c``, one matrix product
  per block), move each center to the mean of its points (an empty cluster keeps its center), and
  stop when no assignment changes, when the inertia improves by less than ``tol`` relatively, or
  after ``max_iter`` assignments (20, as the faiss k-means that pytorch-metric-learning runs). The
  returned assignment is the last one computed, so no extra pass is spent after convergence.
- Restarts: the best of ``n_init`` runs by inertia, each seeded from one generator.

Memory: the assignment scratch is one ``rows x k`` block under ``memory_bytes``; time
O(iterations N k D).

>>> x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.0, 5.1]])
>>> kmeans(x, 2, seed=0).tolist() in ([0, 0, 1, 1], [1, 1, 0, 0])
True
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dmlkit.core.checks import check_embeddings
from dmlkit.evaluation.knn import DEFAULT_MEMORY_BYTES, score_blocks

SEEDING_ROUNDS = 32
INITS: tuple[str, ...] = ("k-means++", "random")


def _nearest(x: Tensor, x_sq: Tensor, centers: Tensor, memory_bytes: int) -> tuple[Tensor, Tensor]:
    """Nearest center ``(N,)`` int64 and its squared distance ``(N,)`` for every row of ``x``.

    ``max_j (2 x·c_j - |c_j|^2)`` per block (one fused product); ``|x|^2`` is added after.
    """
    labels = torch.empty(x.shape[0], dtype=torch.int64, device=x.device)
    dists = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    neg_c_sq = -(centers * centers).sum(1)
    for start, s in score_blocks(x, centers, memory_bytes, alpha=2.0, bias=neg_c_sq):
        value, index = s.max(dim=1)
        stop = start + s.shape[0]
        labels[start:stop] = index
        dists[start:stop] = (x_sq[start:stop] - value).clamp_min(0.0)
    return labels, dists


def _seed_kmeans_pp(
    x: Tensor, x_sq: Tensor, k: int, generator: torch.Generator, memory_bytes: int
) -> tuple[Tensor, Tensor, Tensor]:
    """k-means++ seeding in rounds (see the module docstring).

    Returns the centers ``(k, D)`` and, for free, the first assignment: each point's nearest
    center ``(N,)`` and its squared distance ``(N,)`` (ties keep the earlier center).
    """
    n = x.shape[0]
    chosen = torch.zeros(n, dtype=torch.bool)
    first = int(torch.randint(n, (1,), generator=generator))
    picks = [torch.tensor([first])]
    chosen[first] = True
    labels, closest = _nearest(x, x_sq, x[first : first + 1], memory_bytes)
    per_round = math.ceil((k - 1) / SEEDING_ROUNDS) if k > 1 else 0
    filled = 1
    while filled < k:
        draws = min(per_round, k - filled)
        weights = closest.double().cpu().masked_fill(chosen, 0.0)
        if int((weights > 0).sum()) < draws:
            # the points left coincide with centers: a tiny uniform weight on every unchosen point
            # lets the draw complete, after the distinct points (positive weight) in practice
            weights = weights + (~chosen).double() * float(weights.max().clamp_min(1.0)) * 1e-12
        pick = torch.multinomial(weights, draws, replacement=False, generator=generator)
        chosen[pick] = True
        picks.append(pick)
        to_new, dist_new = _nearest(x, x_sq, x[pick.to(x.device)], memory_bytes)
        closer = dist_new < closest
        labels = torch.where(closer, to_new + filled, labels)
        closest = torch.where(closer, dist_new, closest)
        filled += draws
    return x[torch.cat(picks).to(x.device)].clone(), labels, closest


def _update(x: Tensor, labels: Tensor, centers: Tensor) -> Tensor:
    """Mean of each cluster's points; an empty cluster keeps its center."""
    sums = torch.zeros_like(centers).index_add_(0, labels, x)
    counts = torch.bincount(labels, minlength=centers.shape[0]).to(x.dtype)
    return torch.where((counts == 0)[:, None], centers, sums / counts.clamp_min(1.0)[:, None])


def _lloyd(
    x: Tensor,
    x_sq: Tensor,
    centers: Tensor,
    labels: Tensor,
    dists: Tensor,
    max_iter: int,
    tol: float,
    memory_bytes: int,
) -> tuple[Tensor, float]:
    """Lloyd iterations from ``centers`` and their assignment ``labels`` (distances ``dists``);
    returns the last assignment and its inertia."""
    inertia = float(dists.sum())
    for _ in range(max_iter - 1):
        centers = _update(x, labels, centers)
        new_labels, dists = _nearest(x, x_sq, centers, memory_bytes)
        new_inertia = float(dists.sum())
        unchanged = torch.equal(new_labels, labels)
        small_gain = inertia - new_inertia <= tol * inertia
        labels, inertia = new_labels, new_inertia
        if unchanged or small_gain:
            break
    return labels, inertia


def kmeans(
    x: Tensor,
    k: int,
    seed: int = 0,
    n_init: int = 1,
    max_iter: int = 20,
    tol: float = 1e-4,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    backend: str = "torch",
    init: str = "k-means++",
) -> Tensor:
    """Cluster ``x (N, D)`` into ``k`` groups; returns assignments ``(N,)`` int64 on the CPU.

    Runs on the device of ``x``. ``backend="faiss"`` uses faiss's k-means (random seeding) with the
    same ``max_iter``, ``n_init`` and ``seed``; see the module docstring for the torch algorithm.
    """
    check_embeddings(x, "x")
    if backend not in ("torch", "faiss"):
        raise ValueError(f"backend: expected 'torch' or 'faiss', got {backend!r}")
    if init not in INITS:
        raise ValueError(f"init: expected one of {INITS}, got {init!r}")
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"k: expected 1 <= k <= N={x.shape[0]}, got {k}")
    if n_init < 1 or max_iter < 1:
        raise ValueError(f"n_init, max_iter: expected >= 1, got {n_init}, {max_iter}")
    if tol < 0:
        raise ValueError(f"tol: expected >= 0, got {tol}")
    x = x.detach().to(torch.float32)
    if backend == "faiss":
        return _faiss_kmeans(x, k, seed, n_init, max_iter)
    x_sq = (x * x).sum(1)
    if not bool(torch.isfinite(4.0 * x_sq.amax())):  # |a - b|^2 <= 4 max |x|^2
        raise ValueError(
            "x: expected points whose squared norms and distances fit in float32 (entries below "
            f"about 1e18 in magnitude), got entries up to {float(x.abs().amax()):.3g}; normalise "
            "or rescale the embeddings"
        )
    generator = torch.Generator().manual_seed(seed)
    best_labels, best_inertia = torch.empty(0), math.inf
    for _ in range(n_init):
        if init == "k-means++":
            centers, labels, dists = _seed_kmeans_pp(x, x_sq, k, generator, memory_bytes)
        else:
            centers = x[torch.randperm(x.shape[0], generator=generator)[:k].to(x.device)].clone()
            labels, dists = _nearest(x, x_sq, centers, memory_bytes)
        labels, inertia = _lloyd(x, x_sq, centers, labels, dists, max_iter, tol, memory_bytes)
        if inertia < best_inertia:
            best_labels, best_inertia = labels, inertia
    return best_labels.cpu()


def _faiss_kmeans(x: Tensor, k: int, seed: int, n_init: int, max_iter: int) -> Tensor:
    try:
        import faiss  # type: ignore[import-not-found, unused-ignore]
    except ImportError as err:
        raise ImportError("backend='faiss' needs faiss: pip install 'dmlkit[faiss]'") from err
    data = x.cpu().contiguous().numpy()
    km = faiss.Kmeans(data.shape[1], k, niter=max_iter, nredo=n_init, seed=seed, verbose=False)
    km.train(data)
    _, assign = km.index.search(data, 1)
    return torch.from_numpy(assign[:, 0]).long()
