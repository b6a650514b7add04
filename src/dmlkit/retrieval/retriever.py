"""``Retriever``: a trained model and an index of its embeddings, searched by image.

    retriever = Retriever.from_checkpoint("runs/demo-.../checkpoints/best.pt")
    retriever.add(["a.png", "b.png"], classes=["cat", "dog"])     # or PIL images
    hits = retriever.search(["query.png"], k=5)                   # [[Neighbour, ...]]
    retriever.save("items.index"); Retriever.load("items.index")

The index file holds everything a search needs: the vectors with their ids, paths, class names
and thumbnails, the model (config and weights as data, :class:`~dmlkit.retrieval.model.ModelBundle`),
its preprocessing and, after calibration, the match threshold; a neighbour then carries
``match = score >= threshold``. Images are embedded in batches of ``batch_size`` under
``torch.no_grad`` (memory: one batch of images and activations).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from dmlkit.core.serialization import CheckpointError
from dmlkit.data import DMLDataset, read_image
from dmlkit.retrieval.index import EmbeddingIndex
from dmlkit.retrieval.model import ModelBundle, bundle_from_checkpoint
from dmlkit.training.distributed import DistributedContext
from dmlkit.training.evaluate import embed_dataset

ImageInput = str | Path | bytes | Image.Image
THUMBNAIL_SIDE = 64


@dataclass
class Neighbour:
    """One search hit: the item's ``id``, ``score`` (higher is closer), ``path`` and
    ``class_name`` (``""`` when unknown), and ``match`` (``None`` without a threshold)."""

    id: int
    score: float
    path: str
    class_name: str
    match: bool | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def open_image(item: ImageInput, name: str = "upload") -> Image.Image:
    """An RGB ``PIL.Image`` from a file path, encoded bytes (called ``name`` in errors) or an
    image; ``ValueError`` for data that does not decode, ``FileNotFoundError`` for no file."""
    if isinstance(item, Image.Image):
        return item
    if isinstance(item, bytes):
        return read_image(io.BytesIO(item), name=name)
    if isinstance(item, (str, Path)):
        return read_image(item)
    raise TypeError(f"images: expected paths, bytes or PIL images, got {type(item).__name__}")


def thumbnail_png(img: Image.Image) -> bytes:
    """A PNG of ``img`` at most ``THUMBNAIL_SIDE`` pixels on its longer side."""
    small = img.copy()
    small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    out = io.BytesIO()
    small.save(out, format="PNG")
    return out.getvalue()


class Retriever:
    """Model + index (module docstring). ``threshold``: the calibrated match threshold, stored
    in the index (``None`` until :meth:`set_threshold`)."""

    def __init__(self, bundle: ModelBundle, index: EmbeddingIndex, batch_size: int = 64) -> None:
        if bundle.embedding_dim != index.dim:
            raise ValueError(
                f"index: dimension {index.dim}, but the model embeds in dimension "
                f"{bundle.embedding_dim}: the model and the index do not belong together"
            )
        self.bundle = bundle
        self.index = index
        self.batch_size = batch_size
        self.model = bundle.build()
        self.transform = bundle.preprocessing.transform_fn()
        index.info["model"] = bundle.state()

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path,
        backend: str = "exact",
        options: dict[str, Any] | None = None,
        overrides: Sequence[str] = (),
    ) -> Retriever:
        """An empty retriever for the model of a training checkpoint; ``backend`` and
        ``options`` choose the index (:class:`~dmlkit.retrieval.index.EmbeddingIndex`), whose
        metric is the run's ``eval.similarity``."""
        bundle = bundle_from_checkpoint(checkpoint, overrides)
        metric = bundle.experiment().eval.similarity
        return cls(bundle, EmbeddingIndex(bundle.embedding_dim, metric, backend, options))

    @classmethod
    def load(cls, path: str | Path) -> Retriever:
        """The retriever saved at ``path`` (:meth:`save`)."""
        index = EmbeddingIndex.load(path)
        if "model" not in index.info:
            raise CheckpointError(
                f"{path}: an index without a model (saved by EmbeddingIndex alone); build it "
                "with dmlkit index build or Retriever"
            )
        try:
            bundle = ModelBundle.from_state(index.info["model"])
        except (KeyError, TypeError) as err:
            raise CheckpointError(
                f"{path}: the index's model record is incomplete ({err})"
            ) from None
        return cls(bundle, index)

    def save(self, path: str | Path) -> Path:
        """Write the index with the model and threshold to ``path`` (atomic, data only)."""
        return self.index.save(path)

    @property
    def threshold(self) -> float | None:
        calibration = self.index.info.get("calibration")
        return None if calibration is None else float(calibration["threshold"])

    def set_threshold(self, calibration: dict[str, Any]) -> None:
        """Store a calibration (``{"threshold": t, ...}``, see :mod:`.thresholds`)."""
        self.index.info["calibration"] = dict(calibration)

    def preprocess(self, images: Sequence[ImageInput]) -> Tensor:
        """``(n, C, H, W)`` model inputs of ``images`` (decoded, converted, transformed)."""
        if len(images) == 0:
            raise ValueError("images: expected at least one image, got none")
        return torch.stack([self.transform(open_image(img)) for img in images])

    def embed_inputs(self, inputs: Tensor) -> Tensor:
        """``(n, D)`` embeddings of preprocessed ``inputs (n, C, H, W)``, in batches."""
        with torch.no_grad():
            parts = [self.model(batch) for batch in torch.split(inputs, self.batch_size)]
        return torch.cat(parts).float()

    def embed(self, images: Sequence[ImageInput]) -> Tensor:
        """``(n, D)`` embeddings of ``images`` (paths, bytes or PIL images)."""
        return torch.cat(
            [
                self.embed_inputs(self.preprocess(images[a : a + self.batch_size]))
                for a in range(0, len(images), self.batch_size)
            ]
        )

    def add(
        self,
        images: Sequence[ImageInput],
        classes: Sequence[str] | None = None,
        ids: Sequence[int] | None = None,
    ) -> Tensor:
        """Embed and index ``images``; returns their ids. A path is kept as the item's path; an
        image without a file keeps a thumbnail instead."""
        paths = [str(img) if isinstance(img, (str, Path)) else "" for img in images]
        thumbs = [
            b"" if p else thumbnail_png(open_image(img))
            for p, img in zip(paths, images, strict=True)
        ]
        return self.index.add(self.embed(images), ids, paths, classes, thumbs)

    def add_dataset(
        self,
        dataset: DMLDataset,
        context: DistributedContext | None = None,
        progress: str | None = None,
    ) -> Tensor:
        """Embed and index every item of ``dataset`` (its transform should be the evaluation
        one) with its item id, path and class name. Under ``torchrun`` pass the
        ``context``: each rank embeds its shard and every rank gets all rows
        (:func:`~dmlkit.training.evaluate.embed_dataset`)."""
        emb, labels = embed_dataset(
            self.model,
            dataset,
            self.batch_size,
            torch.device("cpu"),
            progress=progress,
            context=context,
        )
        paths = dataset.item_paths()
        thumbs = [b"" if p else thumbnail_png(dataset.image(i)) for i, p in enumerate(paths)]
        classes = [dataset.class_names[int(c)] for c in labels]
        return self.index.add(emb, dataset.item_ids.tolist(), paths, classes, thumbs)

    def thumbnail(self, item_id: int) -> bytes:
        """A PNG thumbnail of item ``item_id``: its file, read now, or the one stored with it;
        ``KeyError`` for an unknown id, ``FileNotFoundError``/``ValueError`` for a file that is
        gone or does not decode."""
        row = int(self.index.rows_of([item_id])[0])
        path = self.index.paths[row]
        return thumbnail_png(read_image(path)) if path else self.index.thumbnails[row]

    def neighbours(self, rows: Tensor, scores: Tensor) -> list[list[Neighbour]]:
        """The :class:`Neighbour` lists of search results ``rows, scores (Q, k)``."""
        threshold = self.threshold
        ids = self.index.ids.tolist()
        out = []
        for row_list, score_list in zip(rows.tolist(), scores.tolist(), strict=True):
            hits = []
            for r, s in zip(row_list, score_list, strict=True):
                if r < 0:  # an approximate index found fewer than k
                    continue
                match = None if threshold is None else bool(s >= threshold)
                hits.append(Neighbour(ids[r], s, self.index.paths[r], self.index.classes[r], match))
            out.append(hits)
        return out

    def search_vectors(self, emb: Tensor, k: int = 10) -> list[list[Neighbour]]:
        """Neighbours of embeddings ``emb (Q, D)``."""
        return self.neighbours(*self.index.search(emb, k))

    def search(self, images: Sequence[ImageInput], k: int = 10) -> list[list[Neighbour]]:
        """The ``k`` nearest items of each of ``images``, best first."""
        return self.search_vectors(self.embed(images), k)
