"""``dmlkit calibrate CHECKPOINT --index INDEX [--split val] [--fmr 1e-3]``: the match threshold
at a false match rate, chosen over all pairs of a split (held-out classes: ``val``) and stored in
the index, so that ``search`` and ``serve`` mark each neighbour as match or no match."""

from __future__ import annotations

import argparse
import sys

import torch

from dmlkit.retrieval.retriever import Retriever
from dmlkit.retrieval.thresholds import calibrate
from dmlkit.training.build import build_split
from dmlkit.training.evaluate import embed_dataset


def run(args: argparse.Namespace) -> int:
    """Calibrate on ``--split`` and store the threshold in ``--index``."""
    retriever = Retriever.load(args.index)
    ckpt = Retriever.from_checkpoint(args.checkpoint, overrides=args.set)
    if ckpt.bundle.embedding_dim != retriever.index.dim or any(
        not torch.equal(a, retriever.bundle.weights[k]) for k, a in ckpt.bundle.weights.items()
    ):
        raise ValueError(
            f"--index: {args.index} was built with another model than {args.checkpoint}"
        )
    config = ckpt.bundle.experiment()
    dataset = build_split(config.data, args.split, train=False)
    train_classes = set(build_split(config.data, "train", train=False).class_names)
    shared = train_classes & set(dataset.class_names)
    if shared:
        print(
            f"dmlkit: notice: the {args.split} split shares {len(shared)} of its "
            f"{dataset.num_classes} classes with the training split; a threshold for unseen "
            "classes needs held-out classes (data.val_classes)",
            file=sys.stderr,
        )
    emb, labels = embed_dataset(retriever.model, dataset, retriever.batch_size, torch.device("cpu"))
    result = calibrate(emb, labels, args.fmr, retriever.index.metric)
    result.update(split=args.split, classes_disjoint=not shared, items=len(dataset))
    retriever.set_threshold(result)
    retriever.save(args.index)
    print(
        f"threshold {result['threshold']:.6f} at FMR <= {args.fmr:g} on {args.split} "
        f"({len(dataset)} items, {result['genuine_pairs']} genuine / {result['impostor_pairs']} "
        f"impostor pairs): FMR {result['fmr']:.2e}, TAR {result['tar']:.4f}, EER "
        f"{result['eer']:.4f}, ROC AUC {result['roc_auc']:.4f}; stored in {args.index}"
    )
    return 0
