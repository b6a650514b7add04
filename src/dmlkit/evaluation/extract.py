"""Embedding extraction: run a model over a data loader without gradients."""

from __future__ import annotations

import time
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from dmlkit.core.progress import Progress

# Off a terminal, a progress line at most every this many seconds (short embeddings stay quiet).
LOG_INTERVAL_S = 10.0


def extract_embeddings(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str | None = None,
    progress: str | None = None,
) -> tuple[Tensor, Tensor]:
    """Embed every batch ``(images, labels, ...)`` of ``loader`` (extra items are ignored).

    Returns ``(emb (N, D) float32, labels (N,) int64)`` on the CPU, in loader order. The model
    runs in eval mode under ``torch.no_grad`` and gets its previous train/eval mode back
    afterwards. ``device``: where the images go (default: the device of the model's first
    parameter, else the CPU). ``progress``: a label (for example ``"embedding test"``) for a
    batch counter with the rate on stderr (off a terminal: a line per tenth, at most every
    ``LOG_INTERVAL_S`` seconds); ``None``: silent. Memory: the embeddings, O(N D).
    """
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    embeddings, labels = [], []
    total = len(loader) if hasattr(loader, "__len__") else None  # type: ignore[arg-type]
    start = time.perf_counter()
    display = Progress(
        total, progress is not None, progress or "", "batches", min_interval_s=LOG_INTERVAL_S
    )
    try:
        with torch.no_grad():
            for step, batch in enumerate(loader, 1):
                if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                    raise TypeError(
                        f"loader: expected batches (images, labels, ...), got {type(batch).__name__}"
                    )
                images, targets = batch[0], batch[1]
                out = model(images.to(device))
                embeddings.append(out.float().cpu())
                labels.append(torch.as_tensor(targets).long().cpu())
                rate = step / max(time.perf_counter() - start, 1e-9)
                display.update(step, {"batch/s": rate})
    finally:
        model.train(was_training)
        display.close()
    if not embeddings:
        raise ValueError("loader: expected at least one batch, got none")
    return torch.cat(embeddings), torch.cat(labels)
