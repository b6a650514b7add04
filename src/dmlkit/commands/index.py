"""``dmlkit index build|add|remove|info``: an index of embeddings with ids, paths and classes.

``build`` embeds a folder of images (class subfolders), a CSV listing or a split of the run's
dataset under the checkpoint's model. Under ``torchrun`` each process embeds its shard of the
collection and rank 0 writes the index (:mod:`dmlkit.training.distributed`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from dmlkit.data import DMLDataset, image_files, image_listing
from dmlkit.retrieval.index import BACKENDS, EmbeddingIndex
from dmlkit.retrieval.retriever import Retriever
from dmlkit.training.build import build_split
from dmlkit.training.distributed import init_distributed

SPLITS = ("train", "val", "test", "query", "gallery")


def collection(retriever: Retriever, source: str) -> DMLDataset:
    """The dataset ``--data`` names: a split of the run's dataset, or a folder / CSV listing,
    with the model's evaluation transform."""
    if source in SPLITS and not Path(source).exists():
        return build_split(retriever.bundle.experiment().data, source, train=False)
    return image_listing(source, retriever.bundle.preprocessing.transform_fn())


def faiss_options(args: argparse.Namespace) -> dict[str, Any]:
    """The backend parameters given on the command line."""
    options = {"nlist": args.nlist, "nprobe": args.nprobe, "hnsw_m": args.hnsw_m}
    options["ef_search"] = args.ef_search
    return {k: v for k, v in options.items() if v is not None}


def build(args: argparse.Namespace) -> int:
    """``dmlkit index build``."""
    if args.backend not in BACKENDS:
        raise ValueError(f"--backend: expected one of {BACKENDS}, got {args.backend!r}")
    context = init_distributed(torch.device("cpu"))
    try:
        retriever = Retriever.from_checkpoint(
            args.checkpoint, args.backend, faiss_options(args), args.set
        )
        retriever.batch_size = args.batch_size
        dataset = collection(retriever, args.data)
        retriever.add_dataset(dataset, context, progress="embedding" if context.is_main else None)
        if context.is_main:
            retriever.save(args.out)
            shards = f" ({context.world_size} shards)" if context.is_distributed else ""
            print(
                f"wrote {args.out}: {len(retriever.index)} items{shards}, "
                f"{retriever.index.dim}-d, {retriever.index.metric}, backend {args.backend}"
            )
    finally:
        context.close()
    return 0


def add(args: argparse.Namespace) -> int:
    """``dmlkit index add``: embed images and add them to INDEX in place."""
    retriever = Retriever.load(args.index)
    files = image_files(args.images)
    ids = retriever.add(files, classes=[args.class_name] * len(files))
    retriever.save(args.index)
    print(
        f"added {len(ids)} items (ids {int(ids[0])}..{int(ids[-1])}); {len(retriever.index)} in {args.index}"
    )
    return 0


def remove(args: argparse.Namespace) -> int:
    """``dmlkit index remove``: remove items by id, in place."""
    index = EmbeddingIndex.load(args.index)
    removed = index.remove(args.ids)
    index.save(args.index)
    print(f"removed {removed} items; {len(index)} left in {args.index}")
    return 0


def info(args: argparse.Namespace) -> int:
    """``dmlkit index info``: size, dimension, metric, backend, model and threshold."""
    index = EmbeddingIndex.load(args.index)
    model = index.info.get("model", {}).get("config", {}).get("model", {})
    calibration = index.info.get("calibration")
    print(
        f"{args.index}: {len(index)} items, {index.dim}-d, {index.metric}, backend {index.backend}"
    )
    print(f"model: {model.get('name', 'none stored')}")
    classes = sorted(set(index.classes) - {""})
    print(f"classes: {len(classes)}")
    if calibration:
        print(
            f"threshold: {calibration['threshold']:.6f} (FMR {calibration['fmr']:.2e} at target "
            f"{calibration['fmr_target']:g}, TAR {calibration['tar']:.4f}, split {calibration.get('split', '?')})"
        )
    else:
        print("threshold: none (dmlkit calibrate)")
    return 0
