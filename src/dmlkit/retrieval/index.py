"""``EmbeddingIndex``: vectors with what names them, searched exactly or through faiss.

    index = EmbeddingIndex(dim=64)                          # exact, cosine
    ids = index.add(vectors, paths=[...], classes=[...])    # (n, D) -> item ids (n,)
    rows, scores = index.search(queries, k=10)              # (Q, k) rows, best first
    index.remove(ids[:3]); index.save("items.index"); EmbeddingIndex.load("items.index")

Every item has an id (int64, unique, given or numbered on), a file path (``""`` for an image
without a file) and a class name (``""`` when unknown); an item without a path can carry a small
PNG thumbnail for result pages. ``metric`` is the similarity the model was evaluated with:
``cosine`` stores unit rows and ranks by inner product (the cosine), ``dot`` by inner product,
``euclidean`` by ``-|q - x|^2``.

Backends: ``exact`` (default) is the evaluation engine's chunked exact kNN
(:func:`dmlkit.evaluation.knn.topk_blocks`: one block of scores under ``memory_bytes``, ties to
the lower row, time O(Q N D)); ``flat``, ``ivf`` and ``hnsw`` are faiss indexes
(:mod:`.faiss_backend`). A query never needs more than ``k`` results: ``k`` is cut to the number
of items.

On disk: a data-only state file (:mod:`dmlkit.core.serialization`, kind ``"index"``: tensors and
plain values, checksummed, written atomically, opened with ``weights_only=True``), a faiss index
as its serialized bytes; ``info`` holds whatever the owner stores beside (a retriever's model and
preprocessing). Memory: the vectors, N D float32, plus the faiss structure.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from dmlkit.core.checks import check_embeddings
from dmlkit.core.serialization import CheckpointError, read_state, write_state
from dmlkit.evaluation.knn import DEFAULT_MEMORY_BYTES, SIMILARITIES, topk_blocks
from dmlkit.retrieval import faiss_backend

KIND = "index"
BACKENDS = ("exact", *faiss_backend.FAISS_KINDS)


class EmbeddingIndex:
    """Vectors ``(N, D)`` float32 with ids, paths, class names and thumbnails (module docstring).

    ``options``: faiss parameters (``nlist``, ``nprobe``, ``hnsw_m``, ``ef_search``).
    """

    def __init__(
        self,
        dim: int,
        metric: str = "cosine",
        backend: str = "exact",
        options: dict[str, Any] | None = None,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim: expected a positive embedding size, got {dim!r}")
        if metric not in SIMILARITIES:
            raise ValueError(f"metric: expected one of {SIMILARITIES}, got {metric!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
        if backend != "exact":
            faiss_backend.import_faiss()
        self.dim = dim
        self.metric = metric
        self.backend = backend
        self.options = dict(options or {})
        self.memory_bytes = memory_bytes
        self.vectors = torch.empty(0, dim)
        self.ids = torch.empty(0, dtype=torch.int64)
        self.paths: list[str] = []
        self.classes: list[str] = []
        self.thumbnails: list[bytes] = []
        self.info: dict[str, Any] = {}
        self._faiss: Any = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def stored_form(self, vectors: Tensor) -> Tensor:
        """``vectors (n, D)`` as the index stores and searches them: float32 on the CPU, unit
        rows for ``cosine``; ``ValueError`` for a wrong shape or dimension, non-finite values."""
        check_embeddings(vectors, "vectors")
        if vectors.shape[1] != self.dim:
            raise ValueError(
                f"vectors: expected dimension {self.dim} (the index's), got {vectors.shape[1]}: "
                "the model and the index do not belong together"
            )
        x = vectors.detach().to(device="cpu", dtype=torch.float32)
        return F.normalize(x, dim=1) if self.metric == "cosine" else x.contiguous()

    def add(
        self,
        vectors: Tensor,
        ids: Sequence[int] | Tensor | None = None,
        paths: Sequence[str] | None = None,
        classes: Sequence[str] | None = None,
        thumbnails: Sequence[bytes] | None = None,
    ) -> Tensor:
        """Append ``vectors (n, D)``; returns their ids ``(n,)`` (``ids``, or numbered on from the
        largest id + 1). ``paths``, ``classes``, ``thumbnails``: one per vector (default empty)."""
        x = self.stored_form(vectors)
        n = x.shape[0]
        start = int(self.ids.max()) + 1 if len(self) else 0
        new_ids = torch.arange(start, start + n) if ids is None else torch.as_tensor(ids).long()
        columns = {"ids": new_ids, "paths": paths, "classes": classes, "thumbnails": thumbnails}
        for name, column in columns.items():
            if column is not None and len(column) != n:
                raise ValueError(f"{name}: expected {n} (one per vector), got {len(column)}")
        clash = set(new_ids.tolist()) & set(self.ids.tolist())
        if clash or len(set(new_ids.tolist())) != n:
            shown = sorted(clash)[:5] if clash else "repeated ids"
            raise ValueError(f"ids: expected new unique item ids, got ids already used: {shown}")
        if self.backend != "exact":
            if self._faiss is None:
                self._faiss = faiss_backend.new_index(
                    self.backend, self.dim, self.metric, self.options, x
                )
            faiss_backend.add(self._faiss, x)
        self.vectors = torch.cat([self.vectors, x])
        self.ids = torch.cat([self.ids, new_ids])
        self.paths += [str(p) for p in paths] if paths is not None else [""] * n
        self.classes += [str(c) for c in classes] if classes is not None else [""] * n
        self.thumbnails += list(thumbnails) if thumbnails is not None else [b""] * n
        return new_ids

    def rows_of(self, ids: Sequence[int] | Tensor) -> Tensor:
        """Rows ``(n,)`` of the items ``ids``; ``KeyError`` naming the unknown ones."""
        wanted = torch.as_tensor(ids).long().reshape(-1)
        position = {int(i): r for r, i in enumerate(self.ids.tolist())}
        missing = [int(i) for i in wanted if int(i) not in position]
        if missing:
            raise KeyError(f"ids: no item with id {missing[:10]} in the index")
        return torch.tensor([position[int(i)] for i in wanted], dtype=torch.int64)

    def remove(self, ids: Sequence[int] | Tensor) -> int:
        """Remove the items ``ids`` (all must exist); returns how many were removed."""
        rows = self.rows_of(ids)
        keep = torch.ones(len(self), dtype=torch.bool)
        keep[rows] = False
        kept = keep.nonzero().flatten().tolist()
        self.vectors = self.vectors[keep]
        self.ids = self.ids[keep]
        self.paths = [self.paths[r] for r in kept]
        self.classes = [self.classes[r] for r in kept]
        self.thumbnails = [self.thumbnails[r] for r in kept]
        if self._faiss is not None:
            faiss_backend.rebuild(self._faiss, self.vectors)
        return int((~keep).sum())

    def search(self, queries: Tensor, k: int = 10) -> tuple[Tensor, Tensor]:
        """``(rows (Q, k') int64, scores (Q, k') float32)`` of the nearest items, best first, with
        ``k' = min(k, N)``; ``ValueError`` for an empty index, a bad ``k`` or a query of another
        dimension."""
        if len(self) == 0:
            raise ValueError("index: the index is empty; add items before searching")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k: expected a positive number of neighbours, got {k!r}")
        q = self.stored_form(queries)
        k = min(k, len(self))
        if self._faiss is not None:
            return faiss_backend.search(self._faiss, q, k, self.metric)
        metric = "euclidean" if self.metric == "euclidean" else "dot"
        rows, scores = [], []
        for _, _, idx, val in topk_blocks(q, self.vectors, k, metric, self.memory_bytes):
            rows.append(idx)
            scores.append(val)
        return torch.cat(rows), torch.cat(scores)

    def state(self) -> dict[str, Any]:
        """The index as a state (tensors and plain values)."""
        sizes = torch.tensor([len(t) for t in self.thumbnails], dtype=torch.int64)
        state: dict[str, Any] = {
            "dim": self.dim,
            "metric": self.metric,
            "backend": self.backend,
            "options": dict(self.options),
            "vectors": self.vectors,
            "ids": self.ids,
            "paths": list(self.paths),
            "classes": list(self.classes),
            "thumbnail_sizes": sizes,
            "thumbnail_bytes": torch.frombuffer(
                bytearray(b"".join(self.thumbnails)), dtype=torch.uint8
            )
            if sizes.sum()
            else torch.empty(0, dtype=torch.uint8),
            "info": self.info,
        }
        if self._faiss is not None:
            state["faiss"] = faiss_backend.to_bytes(self._faiss)
            state["options"] = {**self.options, **faiss_backend.search_options(self._faiss)}
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any], origin: str = "index") -> EmbeddingIndex:
        """The index a :meth:`state` describes; :class:`CheckpointError` when parts are missing
        or do not fit together."""
        needed = ("dim", "metric", "backend", "vectors", "ids", "paths", "classes")
        missing = [key for key in needed if key not in state]
        if missing:
            raise CheckpointError(f"{origin}: not a complete dmlkit index (missing {missing})")
        index = cls(state["dim"], state["metric"], state["backend"], state.get("options"))
        n = int(state["ids"].shape[0])
        sizes = state.get("thumbnail_sizes", torch.zeros(n, dtype=torch.int64))
        lengths = {len(state["paths"]), len(state["classes"]), int(sizes.shape[0])}
        if tuple(state["vectors"].shape) != (n, index.dim) or lengths != {n}:
            raise CheckpointError(
                f"{origin}: the index's parts disagree: vectors {tuple(state['vectors'].shape)} "
                f"for {n} ids of dimension {index.dim}"
            )
        index.vectors = state["vectors"].float()
        index.ids = state["ids"].long()
        index.paths = list(state["paths"])
        index.classes = list(state["classes"])
        data = bytes(state.get("thumbnail_bytes", torch.empty(0, dtype=torch.uint8)).numpy())
        offsets = [0, *torch.cumsum(sizes, 0).tolist()]
        index.thumbnails = [data[a:b] for a, b in itertools.pairwise(offsets)]
        index.info = dict(state.get("info", {}))
        if "faiss" in state:
            index._faiss = faiss_backend.from_bytes(state["faiss"], index.options)
            if index._faiss.ntotal != n:
                raise CheckpointError(
                    f"{origin}: the faiss index holds {index._faiss.ntotal} rows, expected {n}"
                )
        return index

    def save(self, path: str | Path) -> Path:
        """Write the index to ``path`` atomically (module docstring); returns ``path``."""
        return write_state(self.state(), path, KIND)

    @classmethod
    def load(cls, path: str | Path) -> EmbeddingIndex:
        """The index saved at ``path``; ``FileNotFoundError`` or :class:`CheckpointError` (a
        one-line reason) when it is missing, corrupt or another kind of dmlkit file."""
        kind, state = read_state(path)
        if kind != KIND or not isinstance(state, dict):
            raise CheckpointError(f"{path}: a dmlkit {kind!r} file, not an index")
        return cls.from_state(state, str(path))
