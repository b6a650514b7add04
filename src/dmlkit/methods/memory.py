"""Cross-batch memory (Wang et al. 2020, XBM): a ring buffer of past embeddings as references.

Each call first enqueues the detached embeddings and labels of the batch, then evaluates the wrapped
loss with the batch as queries and the whole filled memory (the batch included) as references:

    L = loss(emb, labels, ref_emb=memory, ref_labels=memory_labels, self_index=slots)
        + batch_weight * loss(emb, labels)

Self-comparisons are removed by memory slot (``self_index[i]`` = the slot row ``i`` was written
to), not by value, so a duplicate of a row stored elsewhere in memory still counts. Miners inside the
wrapped loss see the memory pairs with self already removed. This equals pytorch-metric-learning's
``CrossBatchMemory`` (which mines first and drops self-comparisons afterwards) for every miner that
never selects a self-pair when others exist, and avoids its dependence on self-pairs otherwise.

``enqueue_mask`` (bool ``(B,)``, MoCo-style): rows where it is True only enter the memory (keys),
the other rows are the queries; the queries have no copy in memory, so nothing is removed.

``batch_weight`` adds the in-batch loss with gradients through both sides of each pair: 0
(default) gives pytorch-metric-learning's semantics, 1 the XBM paper's ``L_batch + L_memory``.

The wrapped loss must accept ``forward(emb, labels, ref_emb, ref_labels, self_index)``: every
dmlkit pair, triplet and margin loss does. Memory state (embeddings, labels, write position, fill
count) lives in buffers, so ``state_dict`` and checkpoints restore the queue exactly; the buffers
follow the module's dtype (float32 unless converted) and move to the device of the embeddings.
Memory O(M D) for the queue plus the wrapped loss's O(B M).
"""

from __future__ import annotations

import inspect

import torch
from torch import Tensor, nn

from dmlkit.core.checks import check_embeddings, check_labels, check_positive


def _accepts_self_index(loss: nn.Module) -> bool:
    params = inspect.signature(loss.forward).parameters.values()
    return any(p.name == "self_index" or p.kind is p.VAR_KEYWORD for p in params)


class CrossBatchMemory(nn.Module):
    """Wrap ``loss`` with a queue of ``memory_size`` embeddings of dimension ``embedding_size``.

    ``label_dim``: ``None`` for class ids ``(B,)``, ``C`` for multi-hot labels ``(B, C)``.
    ``forward(emb (B, D), labels, enqueue_mask (B,) = None) -> 0-dim loss``.
    """

    embeddings: Tensor  # (M, D) buffer
    labels: Tensor  # (M,) or (M, C) int64 buffer
    position: Tensor  # () next slot to write
    filled: Tensor  # () number of valid slots

    def __init__(
        self,
        loss: nn.Module,
        embedding_size: int,
        memory_size: int = 1024,
        label_dim: int | None = None,
        batch_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if embedding_size < 1 or memory_size < 1:
            raise ValueError(
                f"embedding_size, memory_size: expected >= 1, got {embedding_size}, {memory_size}"
            )
        if label_dim is not None and label_dim < 1:
            raise ValueError(f"label_dim: expected None or >= 1, got {label_dim}")
        if not _accepts_self_index(loss) or not getattr(loss, "takes_references", True):
            raise TypeError(
                f"loss: expected forward(emb, labels, ref_emb, ref_labels, self_index) comparing "
                f"the batch with any reference set (self-comparisons removed by self_index), got "
                f"{type(loss).__name__}, which does not"
            )
        self.loss = loss
        self.embedding_size = int(embedding_size)
        self.memory_size = int(memory_size)
        self.batch_weight = check_positive(batch_weight, "batch_weight", allow_zero=True)
        label_shape = (memory_size,) if label_dim is None else (memory_size, label_dim)
        self.register_buffer("embeddings", torch.zeros(memory_size, embedding_size))
        self.register_buffer("labels", torch.zeros(label_shape, dtype=torch.long))
        self.register_buffer("position", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def reset(self) -> None:
        """Empty the queue."""
        self.position.zero_()
        self.filled.zero_()

    def enqueue(self, emb: Tensor, labels: Tensor) -> Tensor:
        """Write rows into the ring buffer (detached); return the memory slot of each row ``(n,)``."""
        n = emb.shape[0]
        if n > self.memory_size:
            raise ValueError(
                f"emb: expected at most memory_size={self.memory_size} rows to enqueue, got {n}"
            )
        slots = (self.position + torch.arange(n, device=self.position.device)) % self.memory_size
        self.embeddings[slots] = emb.detach().to(self.embeddings.dtype)
        self.labels[slots] = labels.detach().to(self.labels.dtype)
        self.position.copy_((self.position + n) % self.memory_size)
        self.filled.copy_(torch.clamp(self.filled + n, max=self.memory_size))
        return slots

    def _check(self, emb: Tensor, labels: Tensor, enqueue_mask: Tensor | None) -> None:
        check_embeddings(emb, "emb")
        check_labels(labels, emb.shape[0], "labels")
        if emb.shape[1] != self.embedding_size:
            raise ValueError(
                f"emb: expected dimension embedding_size={self.embedding_size}, got {emb.shape[1]}"
            )
        if tuple(labels.shape[1:]) != tuple(self.labels.shape[1:]):
            raise ValueError(
                f"labels: expected per-row shape {tuple(self.labels.shape[1:])} as configured "
                f"(label_dim), got {tuple(labels.shape[1:])}"
            )
        if enqueue_mask is not None and (
            not isinstance(enqueue_mask, Tensor)
            or enqueue_mask.dtype != torch.bool
            or tuple(enqueue_mask.shape) != (emb.shape[0],)
        ):
            got = (
                f"{enqueue_mask.dtype} {tuple(enqueue_mask.shape)}"
                if isinstance(enqueue_mask, Tensor)
                else type(enqueue_mask).__name__
            )
            raise ValueError(f"enqueue_mask: expected bool of shape ({emb.shape[0]},), got {got}")

    def forward(self, emb: Tensor, labels: Tensor, enqueue_mask: Tensor | None = None) -> Tensor:
        self._check(emb, labels, enqueue_mask)
        labels = labels.to(emb.device)
        for name, buf in self.named_buffers(recurse=False):
            if buf.device != emb.device:
                setattr(self, name, buf.to(emb.device))
        self_index: Tensor | None
        if enqueue_mask is None:
            queries, query_labels = emb, labels
            self_index = self.enqueue(emb, labels)
        else:
            queries, query_labels = emb[~enqueue_mask], labels[~enqueue_mask]
            if queries.shape[0] == 0:
                raise ValueError("enqueue_mask: every row was enqueued, so no query is left")
            self.enqueue(emb[enqueue_mask], labels[enqueue_mask])
            self_index = None
        count = int(self.filled)  # the batch was written first, so its slots are all < count
        value: Tensor = self.loss(
            queries,
            query_labels,
            self.embeddings[:count],
            self.labels[:count],
            self_index=self_index,
        )
        if self.batch_weight > 0:
            value = value + self.batch_weight * self.loss(queries, query_labels)
        return value

    def extra_repr(self) -> str:
        return (
            f"embedding_size={self.embedding_size}, memory_size={self.memory_size}, "
            f"batch_weight={self.batch_weight}"
        )
