"""Cross-batch memory (Wang et al. 2020, XBM): a ring buffer of past embeddings as references.

Each call enqueues the (detached) embeddings of the batch, then evaluates the wrapped loss with the
batch as queries and the whole filled memory as ``ref_emb``:

    L = loss(emb_q, labels_q, ref_emb = memory, ref_labels = memory_labels, self_index)

Self-comparisons are removed by memory position (``self_index``), not by value, so duplicates
elsewhere in memory still count. With an ``enqueue_mask`` (MoCo-style), the rows where the mask is
True only enter the memory (keys) and the other rows are the queries; no query has a copy in memory.
Any loss taking ``(emb, labels, ref_emb, ref_labels, self_index)`` works: every pair preset, the
triplet losses and the margin loss; miners see the memory pairs with self already removed.

State (embeddings, labels, write position, fill count) lives in buffers, so ``state_dict`` and
checkpoints restore the queue exactly. Memory O(M D) for the queue plus the loss's O(B M).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dmlkit.core.checks import check_embeddings, check_labels


class CrossBatchMemory(nn.Module):
    """Wrap ``loss`` with a queue of ``memory_size`` embeddings of dimension ``embedding_size``.

    ``label_dim``: ``None`` for class ids ``(B,)``, ``C`` for multi-hot labels ``(B, C)``.
    """

    def __init__(
        self,
        loss: nn.Module,
        embedding_size: int,
        memory_size: int = 1024,
        label_dim: int | None = None,
    ) -> None:
        super().__init__()
        if embedding_size < 1 or memory_size < 1:
            raise ValueError(
                f"embedding_size, memory_size: expected >= 1, got {embedding_size}, {memory_size}"
            )
        self.loss = loss
        self.embedding_size = int(embedding_size)
        self.memory_size = int(memory_size)
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
        """Write rows into the ring buffer; return the memory slot of each row ``(n,)``."""
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

    def forward(self, emb: Tensor, labels: Tensor, enqueue_mask: Tensor | None = None) -> Tensor:
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
        self.to(emb.device)
        if enqueue_mask is not None:
            if enqueue_mask.dtype != torch.bool or tuple(enqueue_mask.shape) != (emb.shape[0],):
                raise ValueError(
                    f"enqueue_mask: expected bool of shape ({emb.shape[0]},), "
                    f"got {enqueue_mask.dtype} {tuple(enqueue_mask.shape)}"
                )
            self.enqueue(emb[enqueue_mask], labels[enqueue_mask])
            queries, query_labels = emb[~enqueue_mask], labels[~enqueue_mask]
            self_index = None
        else:
            self_index = self.enqueue(emb, labels)
            queries, query_labels = emb, labels
        if queries.shape[0] == 0:
            raise ValueError("enqueue_mask: every row was enqueued, so no query is left")
        count = int(self.filled)
        ref = self.embeddings[:count].to(emb.dtype)
        ref_labels = self.labels[:count]
        # slots are < filled, since the batch was written before reading
        return self.loss(queries, query_labels, ref, ref_labels, self_index=self_index)

    def extra_repr(self) -> str:
        return f"embedding_size={self.embedding_size}, memory_size={self.memory_size}"
