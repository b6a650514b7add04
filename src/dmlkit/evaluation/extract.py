"""Embedding extraction: run a model over a data loader without gradients."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable

import torch
from torch import Tensor, nn


def _progress(done: int, total: int | None, start: float) -> None:
    rate = done / max(time.perf_counter() - start, 1e-9)
    of = f"/{total}" if total else ""
    sys.stderr.write(f"\rembedding {done}{of} batches ({rate:.1f} batch/s)")
    sys.stderr.flush()


def extract_embeddings(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> tuple[Tensor, Tensor]:
    """Embed every batch ``(images, labels, ...)`` of ``loader``; returns ``(emb (N, D) float32,
    labels (N,) int64)`` on the CPU. The model runs in eval mode under ``torch.no_grad`` and gets
    its previous train/eval mode back afterwards."""
    was_training = model.training
    model.eval()
    embeddings, labels = [], []
    total = len(loader) if hasattr(loader, "__len__") else None  # type: ignore[arg-type]
    start = time.perf_counter()
    try:
        with torch.no_grad():
            for step, batch in enumerate(loader, 1):
                images, targets = batch[0], batch[1]
                out = model(images.to(device))
                embeddings.append(out.float().cpu())
                labels.append(torch.as_tensor(targets).long().cpu())
                if progress:
                    _progress(step, total, start)
    finally:
        model.train(was_training)
        if progress:
            sys.stderr.write("\n")
    if not embeddings:
        raise ValueError("loader: expected at least one batch, got none")
    return torch.cat(embeddings), torch.cat(labels)
