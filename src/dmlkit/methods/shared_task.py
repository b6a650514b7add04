"""The losses of the shared-characteristics method: a loss on shared triplets, and the two-head
objective with decorrelation.

:class:`SharedTripletLoss` applies any batch loss to triplets from a shared sampler
(:mod:`dmlkit.sampling.shared_triplets`): a loss whose ``forward`` takes ``triplets=`` (the
margin loss) scores them directly; any other batch loss (pair or triplet) gets the pair masks of
the triplets, ``pos[a, p]`` and ``neg[a, n]``, in its ``from_similarity``. The sampler draws from
the distances of the loss's own similarity
(:func:`~dmlkit.losses.triplet_sampling.sampling_distances`; a similarity it cannot turn into
unit-sphere distances is refused). The margin loss's per-class β is that of the anchor's class,
except with the ``surrogate`` sampler, where it is that of the anchor's surrogate id (its block of
the shuffled batch), as in the paper-era code; the loss needs at least ``B / m`` betas then.

:class:`SharingLoss` splits the model output ``emb (B, D_d + D_s)`` into the discriminative head
``e_d (B, D_d)`` and the shared head ``e_s (B, D_s)`` and returns (DiVA's one-step form)

    L = L_disc(e_d, y) + alpha · L_shared(e_s, y) + rho · L_decorr(e_s -> e_d)

with ``L_decorr <= 0`` of :class:`~dmlkit.methods.decorrelation.Decorrelation`;
:meth:`SharingLoss.task_loss` gives the loss of one task for the two-step form,
``L_disc + rho L_decorr`` or ``alpha L_shared + rho L_decorr``. The last values of the three
terms are kept (detached) in :attr:`SharingLoss.last_terms` for the logs. Memory O(B²) (the
losses on the batch) plus the regressor's O(B H).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

from torch import Tensor, nn

from dmlkit.core.checks import check_positive
from dmlkit.evaluation.heads import split_heads
from dmlkit.losses.base import BatchLoss
from dmlkit.losses.triplet_sampling import TripletSampler, sampling_distances
from dmlkit.methods.decorrelation import Decorrelation
from dmlkit.sampling.shared_triplets import SurrogateSampler, triplet_pair_masks

DISCRIMINATIVE = "discriminative"
SHARED = "shared"
TASKS = (DISCRIMINATIVE, SHARED)


class SharedTripletLoss(nn.Module):
    """``loss`` on the triplets of ``sampler``: ``forward(emb (B, D), labels (B,)) -> 0-dim``."""

    def __init__(self, loss: nn.Module, sampler: TripletSampler) -> None:
        super().__init__()
        if not isinstance(loss, BatchLoss):
            raise TypeError(
                f"loss: shared triplets need a batch loss (pair, triplet or margin loss), got "
                f"{type(loss).__name__}"
            )
        self.loss = loss
        self.sampler = sampler
        self.takes_triplets = "triplets" in inspect.signature(loss.forward).parameters

    def forward(self, emb: Tensor, labels: Tensor) -> Tensor:
        sim, pos, neg = self.loss.pairs(emb, labels)
        dist = sampling_distances(emb, sim, self.loss.similarity.kind)
        triplets = self.sampler(dist, pos, neg, emb.shape[1])
        if self.takes_triplets:
            if isinstance(self.sampler, SurrogateSampler):  # β of the surrogate id
                labels = self.sampler.surrogate_groups(emb.shape[0], emb.device)
            value: Tensor = self.loss(emb, labels, triplets=triplets)
            return value
        pos, neg = triplet_pair_masks(triplets, (sim.shape[0], sim.shape[1]))
        return self.loss.from_similarity(sim, pos, neg)

    def extra_repr(self) -> str:
        return f"sampler={self.sampler!r}"


class SharingLoss(nn.Module):
    """The two-head objective (module docstring); ``head_dims`` is ``{"discriminative": D_d,
    "shared": D_s}`` in the order of the model's output."""

    def __init__(
        self,
        discriminative: nn.Module,
        shared: nn.Module,
        decorrelation: Decorrelation,
        head_dims: Mapping[str, int],
        alpha: float = 0.3,
        rho: float = 1500.0,
    ) -> None:
        super().__init__()
        if tuple(head_dims) != TASKS:
            raise ValueError(
                f"head_dims: expected the heads {TASKS} in order, got {dict(head_dims)}"
            )
        self.discriminative = discriminative
        self.shared = shared
        self.decorrelation = decorrelation
        self.head_dims = dict(head_dims)
        self.alpha = check_positive(alpha, "alpha", allow_zero=True)
        self.rho = check_positive(rho, "rho", allow_zero=True)
        self.last_terms: dict[str, Tensor] = {}

    def _terms(self, emb: Tensor, labels: Tensor, tasks: tuple[str, ...]) -> dict[str, Tensor]:
        heads = split_heads(emb, self.head_dims)
        terms = {"decorrelation": self.decorrelation(heads[SHARED], heads[DISCRIMINATIVE])}
        if DISCRIMINATIVE in tasks:
            terms[DISCRIMINATIVE] = self.discriminative(heads[DISCRIMINATIVE], labels)
        if SHARED in tasks:
            terms[SHARED] = self.shared(heads[SHARED], labels)
        self.last_terms.update({k: v.detach() for k, v in terms.items()})
        return terms

    def _weighted(self, terms: dict[str, Tensor]) -> Tensor:
        total = self.rho * terms["decorrelation"]
        if DISCRIMINATIVE in terms:
            total = total + terms[DISCRIMINATIVE]
        if SHARED in terms:
            total = total + self.alpha * terms[SHARED]
        return total

    def forward(self, emb: Tensor, labels: Tensor) -> Tensor:
        """``L_disc + alpha L_shared + rho L_decorr`` of ``emb (B, D_d + D_s)``."""
        return self._weighted(self._terms(emb, labels, TASKS))

    def task_loss(self, emb: Tensor, labels: Tensor, task: str) -> Tensor:
        """The loss of one ``task`` (``"discriminative"`` or ``"shared"``) plus ``rho L_decorr``."""
        if task not in TASKS:
            raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
        return self._weighted(self._terms(emb, labels, (task,)))

    def log_fields(self) -> dict[str, float]:
        """``{"loss_discriminative", "loss_shared", "loss_decorrelation"}`` of the last forward."""
        return {f"loss_{k}": float(v) for k, v in self.last_terms.items()}

    def extra_repr(self) -> str:
        return f"head_dims={self.head_dims}, alpha={self.alpha}, rho={self.rho}"
