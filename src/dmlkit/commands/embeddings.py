"""``dmlkit eval CHECKPOINT`` and ``dmlkit embed CHECKPOINT``: score or write the embeddings of a
split under a trained model (the view of its output that the run evaluates)."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dmlkit.config import ExperimentConfig
from dmlkit.data import DMLDataset
from dmlkit.evaluation.metric_table import COUNTS
from dmlkit.methods import TrainingMethod
from dmlkit.training.build import build_method, build_split, model_from_checkpoint, resolve_device
from dmlkit.training.evaluate import embed_dataset, score_views


def _embed_split(
    args: argparse.Namespace,
) -> tuple[Tensor, Tensor, ExperimentConfig, DMLDataset, TrainingMethod]:
    """Model outputs, labels, config and dataset of ``args.split`` under ``args.checkpoint``'s
    model, and the run's training method (which decides the evaluated view of the outputs)."""
    model, config = model_from_checkpoint(args.checkpoint, args.set)
    device = resolve_device(config.train.device)
    dataset = build_split(config.data, args.split, train=False)
    emb, labels = embed_dataset(
        model.to(device),
        dataset,
        config.eval.batch_size,
        device,
        config.train.amp,
        config.data.num_workers,
        progress=f"embedding {args.split}" if config.train.progress else None,
        worker_threads=config.data.worker_threads,
    )
    num_classes = build_split(config.data, "train", train=False).num_classes
    method = build_method(config.method, num_classes, config.model.embedding_dim, config.seed)
    return emb, labels, config, dataset, method


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate the model of CHECKPOINT on a split of its dataset and print the metrics (with a
    training method's further views, e.g. a two-head model's heads, as ``view/metric``)."""
    emb, labels, config, dataset, method = _embed_split(args)
    query = None if dataset.query_mask is None else torch.from_numpy(dataset.query_mask)
    metrics = score_views(method, emb, labels, config.eval, config.seed, query)
    print(f"{config.data.name} {args.split}: {len(dataset)} images, {dataset.num_classes} classes")
    for name, value in metrics.items():
        shown = f"{int(value)}" if name.rsplit("/", 1)[-1] in COUNTS else f"{100 * value:.2f}"
        print(f"{name:<24}{shown:>10}")
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=2) + "\n")
    return 0


def item_table(dataset: DMLDataset) -> dict[str, np.ndarray]:
    """What names each row: ``item_ids (N,)`` int64, ``paths (N,)`` and ``class_names (N,)``
    text arrays (numpy unicode, readable without pickle; ``""`` for in-memory images)."""
    return {
        "item_ids": np.asarray(dataset.item_ids, dtype=np.int64),
        "paths": np.asarray(dataset.item_paths(), dtype=str),
        "class_names": np.asarray([dataset.class_names[c] for c in dataset.labels], dtype=str),
    }


def write_items_csv(path: Path, labels: np.ndarray, items: dict[str, np.ndarray]) -> None:
    """``row,item_id,label,class_name,path`` for every row of an embedding matrix."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["row", "item_id", "label", "class_name", "path"])
        for row, (item, label, name, source) in enumerate(
            zip(items["item_ids"], labels, items["class_names"], items["paths"], strict=True)
        ):
            writer.writerow([row, int(item), int(label), name, source])


def run_embed(args: argparse.Namespace) -> int:
    """Write the embeddings of a split, the view of the model output the run evaluates (a
    two-head model's evaluated head), with what names each row: ``.npy`` holds emb (N, D)
    float32, with the labels in ``<stem>.labels.npy`` and ``<stem>.items.csv`` (row, item id,
    label, class name, path); ``.npz`` holds emb, labels, index, item_ids, paths and
    class_names."""
    out = Path(args.out)
    if out.suffix not in (".npy", ".npz"):
        raise ValueError(f"--out: expected a .npy or .npz file name, got {out}")
    outputs, labels, _, dataset, method = _embed_split(args)
    emb_np = method.eval_views(outputs)[0].numpy().astype(np.float32)
    labels_np = labels.numpy().astype(np.int64)
    items = item_table(dataset)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npz":
        np.savez(
            out,
            emb=emb_np,
            labels=labels_np,
            index=np.arange(len(labels_np)),
            item_ids=items["item_ids"],
            paths=items["paths"],
            class_names=items["class_names"],
        )
        print(f"wrote {out}: emb {emb_np.shape}, labels, index, item_ids, paths, class_names")
    else:
        labels_path = out.with_name(f"{out.stem}.labels.npy")
        items_path = out.with_name(f"{out.stem}.items.csv")
        np.save(out, emb_np)
        np.save(labels_path, labels_np)
        write_items_csv(items_path, labels_np, items)
        print(f"wrote {out}: emb {emb_np.shape}; labels: {labels_path}; items: {items_path}")
    return 0
