"""Evaluation inside a run: embed a split, score it, name the metric columns.

Retrieval is leave-one-out within the split (each image queries all others), the protocol of
CUB, Cars196 and SOP; metrics come from :func:`dmlkit.evaluation.evaluate`. A split with a
``query_mask`` (query and gallery items: In-Shop, the glyph style shift) also reports
``query_gallery/<metric>``: its queries against its gallery.
Memory: the embeddings of the split, ``(N, D)`` float32 on the CPU, plus the evaluator's bounded
kNN scratch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from dmlkit.config import EvalConfig
from dmlkit.evaluation import (
    APPROXIMATE_BACKENDS,
    evaluate,
    extract_embeddings,
    neighbour_recall_depths,
)
from dmlkit.evaluation.approximate import check_options
from dmlkit.evaluation.metric_table import COUNTS, metric_keys
from dmlkit.methods import TrainingMethod
from dmlkit.training.amp import autocast
from dmlkit.training.distributed import DistributedContext, gather_sharded
from dmlkit.training.loaders import loader_options

QUERY_GALLERY = "query_gallery"


def metric_columns(
    metrics: Sequence[str], ks: Sequence[int], knn_backend: str = "torch"
) -> list[str]:
    """The keys an evaluation with ``metrics`` and ``ks`` reports, in order, without repeats
    (:mod:`dmlkit.evaluation.metric_table`; ``ValueError`` for an unknown name); with an
    approximate ``knn_backend`` the neighbour recall of the retrieval metrics too."""
    columns: list[str] = []
    for name in metrics:
        for key in metric_keys(name, ks):
            if key not in columns:
                columns.append(key)
    if knn_backend in APPROXIMATE_BACKENDS:
        columns += list(neighbour_recall_depths(metrics, ks))
    return [*columns, *COUNTS]


def check_eval_config(config: EvalConfig) -> None:
    """``ValueError`` for ``eval.knn_options`` the ``eval.knn_backend`` does not take (before a
    run trains, not at its first evaluation)."""
    if config.knn_backend in APPROXIMATE_BACKENDS:
        check_options(config.knn_backend, config.knn_options)
    elif config.knn_options:
        raise ValueError(
            f"eval.knn_options: only the approximate backends {tuple(APPROXIMATE_BACKENDS)} take "
            f"options, got {config.knn_options} with eval.knn_backend={config.knn_backend!r}"
        )


def embed_dataset(
    model: nn.Module,
    dataset: Dataset[tuple[Tensor, int]],
    batch_size: int,
    device: torch.device,
    amp: str = "none",
    num_workers: int = 0,
    progress: str | None = None,
    context: DistributedContext | None = None,
    worker_threads: int = 1,
) -> tuple[Tensor, Tensor]:
    """``(emb (N, D) float32, labels (N,) int64)`` of ``dataset`` in item order, on the CPU.

    ``num_workers`` loader workers of ``worker_threads`` threads each
    (:func:`~dmlkit.training.loaders.loader_options`).

    With a distributed ``context`` every rank embeds its shard (items ``rank, rank + W, ...``)
    and every rank returns all ``N`` rows (:func:`~dmlkit.training.distributed.gather_sharded`);
    all ranks must call it together. ``progress``: the label of a batch counter on stderr
    (rank 0), ``None`` for none.
    """
    context = context or DistributedContext()
    sampler: DistributedSampler[int] | None = None
    if context.is_distributed:
        sampler = DistributedSampler(
            dataset, num_replicas=context.world_size, rank=context.rank, shuffle=False
        )
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        sampler=sampler,
        **loader_options(num_workers, worker_threads, device),
    )
    with autocast(device, amp):
        emb, labels = extract_embeddings(
            model, loader, device, progress if context.is_main else None
        )
    if not context.is_distributed:
        return emb, labels
    total = len(dataset)  # type: ignore[arg-type]
    return (
        gather_sharded(emb.to(device), total, context).cpu(),
        gather_sharded(labels.to(device), total, context).cpu(),
    )


def score(
    emb: Tensor,
    labels: Tensor,
    config: EvalConfig,
    seed: int,
    query_mask: Tensor | None = None,
) -> dict[str, float]:
    """Leave-one-out metrics of ``emb (N, D)`` with the configured metrics, Ks, similarity and kNN
    backend (with an approximate one, the neighbour recall beside the metrics); with
    ``query_mask`` (bool ``(N,)``) also ``query_gallery/<metric>``, the masked rows queried
    against the others."""

    def scored(
        q_emb: Tensor, q_labels: Tensor, ref: tuple[Tensor, Tensor] | None
    ) -> dict[str, float]:
        ref_emb, ref_labels = (None, None) if ref is None else ref
        result = evaluate(
            q_emb,
            q_labels,
            ref_emb,
            ref_labels,
            metrics=config.metrics,
            ks=config.ks,
            similarity=config.similarity,
            seed=seed,
            knn_backend=config.knn_backend,
            knn_options=config.knn_options,
        )
        return result.to_dict()

    metrics = scored(emb, labels, None)
    if query_mask is not None:
        query = query_mask.to(torch.bool)
        if query.shape != labels.shape or not query.any() or query.all():
            raise ValueError(
                f"query_mask: expected a bool mask of shape {tuple(labels.shape)} with queries "
                f"and gallery items, got {tuple(query.shape)} with {int(query.sum())} queries"
            )
        shifted = scored(emb[query], labels[query], (emb[~query], labels[~query]))
        metrics.update({f"{QUERY_GALLERY}/{k}": v for k, v in shifted.items()})
    return metrics


def score_views(
    method: TrainingMethod,
    emb: Tensor,
    labels: Tensor,
    config: EvalConfig,
    seed: int,
    query_mask: Tensor | None = None,
) -> dict[str, float]:
    """Metrics of ``method``'s evaluated view of the model outputs ``emb (N, D)``, plus
    ``"view/metric"`` for each of its further views (a two-head model's shared head and
    concatenations); with ``query_mask``, each also as ``query_gallery/metric`` (:func:`score`)."""
    main, views = method.eval_views(emb)
    metrics = score(main, labels, config, seed, query_mask)
    for name, view in views.items():
        extra = score(view, labels, config, seed, query_mask)
        metrics.update(
            {f"{name}/{k}": v for k, v in extra.items() if k.rsplit("/", 1)[-1] not in COUNTS}
        )
    return metrics
