"""Pipeline overhead: training images/s of the dmlkit trainer against a bare PyTorch loop.

Both run in this process on the glyph config (``configs/glyphs/ms.yaml``) with the same model,
loss, optimizer settings and batches (the same m-per-class sampler, seed and augmentation over
their own copy of the training set), evaluation and checkpoints switched off. The bare loop is

    for images, labels in loader:
        loss = loss_fn(model(images), labels)
        optimizer.zero_grad(); loss.backward(); optimizer.step()

the trainer adds autocast, the gradient scaler, the schedule, parameter groups, logging every
``train.log_every`` steps, callbacks and its bookkeeping. Windows of ``--steps`` steps alternate
between the two (the order flips every round); images/s is the median over ``--repeats`` windows.
Overhead = 1 - trainer / bare; target <= 5%. Writes ``benchmarks/results/pipeline_overhead.json``.

    python benchmarks/bench_pipeline_overhead.py [--steps 20] [--repeats 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_result
from dmlkit.config import ExperimentConfig, config_to_dict, load_config
from dmlkit.training import Trainer
from dmlkit.training.build import build_loss, build_model, build_sampler, build_split

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.05


def batches(config: ExperimentConfig) -> Iterator[tuple[Tensor, Tensor]]:
    """The trainer's batch sequence, epoch after epoch, from a separate copy of the training set."""
    dataset = build_split(config.data, "train", train=True)
    dataset.seed = config.seed
    sampler = build_sampler(config, dataset)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=config.data.num_workers)
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        yield from loader
        epoch += 1


def bare_loop(config: ExperimentConfig, num_classes: int) -> Callable[[int], None]:
    """A function running ``n`` plain training steps on the next ``n`` batches."""
    torch.manual_seed(config.seed)
    model = build_model(config.model)
    loss_fn = build_loss(config.loss, num_classes, config.model.embedding_dim)
    opt = config.optimizer
    optimizer = torch.optim.Adam(
        [*model.parameters(), *loss_fn.parameters()], lr=opt.lr, weight_decay=opt.weight_decay
    )
    stream = batches(config)
    model.train()

    def run(n: int) -> None:
        for _ in range(n):
            images, labels = next(stream)
            loss = loss_fn(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return run


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "glyphs" / "ms.yaml"))
    parser.add_argument("--steps", type=int, default=20, help="steps per timed window")
    parser.add_argument("--repeats", type=int, default=7, help="timed windows per side")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(
            args.config,
            [
                "train.steps=1000000",
                "train.eval_every=0",
                "train.checkpoint_every=0",
                "train.progress=false",
                "eval.before=false",
                f"output.dir={tmp}",
            ],
        )
        trainer = Trainer(config, Path(tmp) / "run")
        trainer.start()
        bare = bare_loop(trainer.config, trainer.splits.train.num_classes)

        def run_trainer() -> None:
            trainer.train_until(trainer.step + args.steps)

        def run_bare() -> None:
            bare(args.steps)

        run_trainer()  # warm-up window each
        run_bare()
        times: dict[str, list[float]] = {"trainer": [], "bare": []}
        for r in range(args.repeats):
            order = [("trainer", run_trainer), ("bare", run_bare)]
            for name, fn in order if r % 2 == 0 else order[::-1]:
                times[name].append(timed(fn))
        trainer.close()
        resolved = config_to_dict(trainer.config)

    images = args.steps * config.data.batch_size
    ips = {name: images / statistics.median(runs) for name, runs in times.items()}
    overhead = 1.0 - ips["trainer"] / ips["bare"]
    result = {
        "benchmark": "training images/s: dmlkit trainer vs a bare PyTorch loop, same batches",
        "config": str(Path(args.config).resolve().relative_to(ROOT)),
        "resolved_config": resolved,
        "threads": args.threads,
        "steps_per_window": args.steps,
        "repeats": args.repeats,
        "batch_size": config.data.batch_size,
        "window_s": times,
        "images_per_s": ips,
        "overhead": overhead,
        "target_overhead": TARGET,
        "passed": overhead <= TARGET,
    }
    path = write_result("pipeline_overhead", result)
    print(
        f"trainer {ips['trainer']:.1f} images/s, bare loop {ips['bare']:.1f} images/s, "
        f"overhead {100 * overhead:.1f}% -> {path}"
    )


if __name__ == "__main__":
    main()
