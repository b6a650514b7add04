"""The training loop: a plain loop a researcher can follow from top to bottom.

    trainer = Trainer(config, run_dir)          # builds data, sampler, model, loss, optimizer
    metrics = trainer.fit()                     # trains, evaluates, checkpoints, writes metrics.json

One optimizer step: m-per-class batch -> model under autocast -> float32 embeddings -> loss ->
(scaled) backward -> ``on_after_backward`` callbacks -> optional gradient clipping -> optimizer and
scaler step -> schedule step. The loss is the configured ``loss`` as the configured ``method``
wraps it, and the method's callbacks run before the ones passed in. A method may replace the
iteration (``TrainingMethod.train_step``, e.g. two optimizer steps) and choose which view of the
model's output is evaluated (``TrainingMethod.eval_views``).
Every ``eval_every`` steps and at the end the model is scored on the validation split (model
selection, ``best.pt``) and on the test split; ``train.select_on_test`` selects on test instead.
Every ``checkpoint_every`` steps and at the end ``last.pt`` holds everything an exact resume needs:
model, loss, optimizer, scheduler and scaler states, the sampler's epoch and position, the global
RNG states, the best selection so far, the callbacks' states and the log positions.
A step whose loss or gradients are not finite stops the run (``train.nonfinite: stop``, with
``last.pt`` written and the step and batch items named) or is skipped and counted (``skip``);
non-finite embeddings always stop. See :mod:`dmlkit.training.nonfinite`.

Under ``torchrun`` (several processes, see :mod:`dmlkit.training.distributed`) each rank trains on
its own ``data.batch_size`` rows of the global batch, the loss sees all ranks' rows
(``Trainer.gather``), gradients equal single-process training on the concatenated batch, and
evaluation is sharded over the ranks. Rank 0 alone writes the run folder; metrics are computed on
rank 0 and broadcast, and the weights are re-broadcast after every evaluation, so that every rank
takes the same decisions (selection, early stopping, method rounds).

Run folder (``run_dir``)::

    config.yaml            the resolved config
    log.jsonl, log.csv     train and eval records (see :mod:`dmlkit.training.logging`)
    metrics.json           before / final / best test metrics, best_step, selected_on, dataset, ks
    embeddings/test.npz    test embeddings of the selected model: emb (N, D), labels (N,), index (N,)
                           and query (N,) bool for a test split of query and gallery items
    checkpoints/           last.pt, best.pt (atomic, checksummed, data only; see checkpoint.py)

Ctrl-C in a single-process run stops after the current step with ``last.pt`` written
(:mod:`dmlkit.training.interrupt`); a second Ctrl-C stops at once.
"""

from __future__ import annotations

import copy
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler, Subset

from dmlkit.config import (
    ExperimentConfig,
    config_diff,
    config_from_dict,
    config_to_dict,
    save_config,
)
from dmlkit.core.progress import Progress
from dmlkit.core.serialization import remove_stale_tmp
from dmlkit.training.amp import autocast, grad_scaler
from dmlkit.training.build import (
    build_loss,
    build_method,
    build_model,
    build_sampler,
    build_splits,
    resolve_config,
    resolve_device,
)
from dmlkit.training.callbacks import BatchEnd, Callback, CallbackList
from dmlkit.training.checkpoint import load_checkpoint, save_checkpoint
from dmlkit.training.compile import compile_step, use_channels_last
from dmlkit.training.distributed import (
    data_parallel,
    gather_rows,
    init_distributed,
    process_device,
)
from dmlkit.training.evaluate import (
    check_eval_config,
    embed_dataset,
    metric_columns,
    score_views,
)
from dmlkit.training.interrupt import StopOnInterrupt, TrainingInterrupted
from dmlkit.training.loaders import loader_options
from dmlkit.training.logging import RunLogger
from dmlkit.training.nonfinite import NonFiniteError, nonfinite_what
from dmlkit.training.optim import build_optimizer, build_scheduler
from dmlkit.training.run_metrics import RunMetrics
from dmlkit.training.rundir import has_checkpoint
from dmlkit.training.seed import capture_rng_state, restore_rng_state, seed_everything

# Fields that may differ between a run and its resume: where it writes, how it shows progress and
# how many loader workers and threads it uses (augmentation is seeded per item, so workers change
# nothing), and what it does with a non-finite step (to resume a stopped run with ``skip``).
RESUME_FREE = (
    "output.",
    "train.progress",
    "train.nonfinite",
    "train.dist_timeout",
    "data.num_workers",
    "data.worker_threads",
)


class Trainer:
    """Train one experiment into ``run_dir`` (module docstring).

    ``resume=True`` continues from ``run_dir/checkpoints/last.pt`` (falling back to the previous
    checkpoint with a one-line notice when it is damaged); the config must match the saved one
    except for the fields of ``RESUME_FREE``. A run folder without any checkpoint (a run that
    stopped before its first one) is started over, with a notice.
    """

    def __init__(
        self,
        config: ExperimentConfig,
        run_dir: str | Path,
        callbacks: Sequence[Callback] = (),
        resume: bool = False,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.resume = resume and has_checkpoint(self.run_dir)
        if resume and not self.resume:
            print(
                f"dmlkit: notice: {self.run_dir} has no checkpoint yet; starting it over",
                file=sys.stderr,
            )
        device = resolve_device(config.train.device)
        self.dist = init_distributed(device, config.train.dist_timeout)
        self.device = process_device(device, self.dist)
        if config.train.num_threads is not None:
            torch.set_num_threads(config.train.num_threads)
        seed_everything(config.seed)

        self.splits = build_splits(config)
        self.sampler = build_sampler(
            config, self.splits.train, self.dist.rank, self.dist.world_size
        )
        self.config = resolve_config(config, self.splits.train, self.sampler)
        cfg = self.config
        check_eval_config(cfg.eval)
        self.columns = metric_columns(cfg.eval.metrics, cfg.eval.ks, cfg.eval.knn_backend)
        if cfg.eval.select_metric not in self.columns:
            raise ValueError(
                f"eval.select_metric: {cfg.eval.select_metric!r} is not reported by the "
                f"configured metrics; expected one of {self.columns[:-2]}"
            )
        self.loader = self.train_loader(self.sampler, persistent=True)
        self.model = build_model(cfg.model).to(self.device)
        train = cfg.train
        channels_last = use_channels_last(
            self.model, train.channels_last, train.compile, self.device
        )
        if channels_last:  # before DDP wraps it, so that its gradient buckets take the layout
            self.model.to(memory_format=torch.channels_last)
        self.train_model = compile_step(
            data_parallel(self.model, self.dist, self.device), train.compile, channels_last
        )
        num_classes, dim = self.splits.train.num_classes, cfg.model.embedding_dim
        self.method = build_method(cfg.method, num_classes, dim, cfg.seed)
        if self.dist.is_distributed and not self.method.supports_distributed:
            raise ValueError(
                f"method {cfg.method.name!r} does not support distributed training; run it in "
                "one process"
            )
        self.loss_fn = self.method.wrap_loss(build_loss(cfg.loss, num_classes, dim))
        self.loss_fn = self.loss_fn.to(self.device)
        self.dist.broadcast_module(self.loss_fn)
        self.optimizer = build_optimizer(cfg.optimizer, self.model, self.loss_fn)
        self.scheduler = build_scheduler(cfg.schedule, self.optimizer, cfg.train.steps)
        self.scaler = grad_scaler(self.device, cfg.train.amp)
        self.callbacks = CallbackList([*self.method.callbacks(), *callbacks])

        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.train_time_s = 0.0
        self.before: dict[str, float] | None = None
        self.best: dict[str, Any] = {"step": None, "value": None, "val": None, "test": None}
        self.last_test: dict[str, float] | None = None
        self.stale_evals = 0
        self.nonfinite_skipped = 0
        self.stopped = False
        self.test_embeddings: tuple[int, Tensor, Tensor] | None = None
        self.logger: RunLogger | None = None
        self.checkpoint_step: int | None = None
        self.run_metrics: RunMetrics | None = None
        self.console = Progress(cfg.train.steps, cfg.train.progress and self.dist.is_main)

    # ----------------------------------------------------------------------------- the run

    def fit(self) -> dict[str, Any]:
        """Train to ``train.steps``, then write and return metrics.json. Ctrl-C raises
        :class:`~dmlkit.training.interrupt.TrainingInterrupted` (module docstring)."""
        try:
            with StopOnInterrupt(enabled=not self.dist.is_distributed) as interrupt:
                self.start()
                self.train_until(self.config.train.steps, interrupt)
                metrics = self.finish()
        except TrainingInterrupted:
            raise
        except KeyboardInterrupt:
            raise TrainingInterrupted(self.step, self.checkpoint_step) from None
        finally:
            self.close()
        self.callbacks.on_train_end(self, metrics)
        return metrics

    def start(self) -> None:
        """Prepare the run folder (or restore the checkpoint when resuming), open the logs,
        call ``on_train_start`` and evaluate the untrained model on test."""
        cfg = self.config
        checkpoints = self.run_dir / "checkpoints"
        if self.dist.is_main:
            checkpoints.mkdir(parents=True, exist_ok=True)
            remove_stale_tmp(checkpoints)
        if self.resume:
            position = self.load(checkpoints / "last.pt")
        else:
            position = None
            if self.dist.is_main:
                save_config(cfg, self.run_dir / "config.yaml")
        if self.dist.is_main:
            self.logger = RunLogger(
                self.run_dir, self.columns, cfg.output.tensorboard, position, self.step or None
            )
        self.callbacks.on_train_start(self)
        self.sync_weights()
        if cfg.eval.before and self.before is None:
            self.before = self.evaluate("test", "before training")

    def close(self) -> None:
        """Close the logs and the progress line."""
        self.console.close()
        if self.logger is not None:
            self.logger.close()
            self.logger = None

    def train_until(self, stop_step: int, interrupt: StopOnInterrupt | None = None) -> None:
        """Run optimizer steps until ``self.step == stop_step`` (or early stopping), with the
        periodic logging, evaluation and checkpoints; the last step of the run (``train.steps``,
        or the step where ``train.patience`` stops it) is always evaluated and checkpointed.
        When ``interrupt`` has seen Ctrl-C, ``last.pt`` is written after the current step and
        :class:`~dmlkit.training.interrupt.TrainingInterrupted` raised."""
        cfg = self.config.train
        window = {"images": 0, "time": 0.0}
        self.model.train()
        tick = time.perf_counter()
        while self.step < stop_step and not self.stopped:
            self.sampler.load_state_dict(self.sampler_state())
            self.splits.train.set_epoch(self.epoch)
            for images, labels in self.loader:
                loss, emb, labels = self.train_step(images, labels)
                self.advance()
                now = time.perf_counter()
                window["images"] += len(labels) * self.dist.world_size
                window["time"] += now - tick
                self.train_time_s += now - tick

                last = self.step == cfg.steps
                if self.step % cfg.log_every == 0 or last:
                    self.log_train(float(loss), window)
                    window = {"images": 0, "time": 0.0}
                self.callbacks.on_batch_end(
                    self, BatchEnd(self.step, self.epoch, loss, emb, labels)
                )
                if (cfg.eval_every and self.step % cfg.eval_every == 0) or last:
                    self.periodic_eval(final=last)
                if (
                    (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0)
                    or last
                    or self.stopped
                ):
                    self.save_last()
                if interrupt is not None and interrupt.requested:
                    if self.checkpoint_step != self.step:
                        self.save_last()
                    raise TrainingInterrupted(self.step, self.checkpoint_step)
                tick = time.perf_counter()
                if self.step >= stop_step or self.stopped:
                    break

    def train_step(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One training iteration (the method's, by default one optimizer step on the batch),
        then one schedule step; returns the detached loss, embeddings and labels."""
        labels = labels.to(self.device, non_blocking=True)
        loss, emb = self.method.train_step(self, images, labels)
        self.scheduler.step()
        return loss, emb, labels

    def forward(self, images: Tensor) -> Tensor:
        """Float32 embeddings ``(B, D)`` of a training batch (model under autocast)."""
        images = images.to(self.device, non_blocking=True)
        with autocast(self.device, self.config.train.amp):
            emb = self.train_model(images)
        emb = emb.float()
        bad = self.dist.ranks_where(not bool(torch.isfinite(emb.detach()).all()), self.device)
        if bad:  # every rank stops together, and rank 0 writes last.pt
            where = f" on rank {', '.join(map(str, bad))}" if self.dist.is_distributed else ""
            self.handle_nonfinite(f"model output{where}", "stop")
        return emb

    def gather(self, emb: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The global batch ``(W B, D)``, ``(W B,)``: every rank's embeddings and labels in rank
        order, the local rows keeping their gradient (scaled by ``W``, see
        :mod:`dmlkit.training.distributed`); ``emb``, ``labels`` themselves in one process."""
        return gather_rows(emb, self.dist), gather_rows(labels, self.dist)

    def optimizer_step(self, loss: Tensor) -> None:
        """Zero the gradients, (scaled) backward, ``on_after_backward``, optional clipping,
        optimizer and scaler step."""
        cfg = self.config
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.dist.average_gradients(self.loss_fn)
        self.callbacks.on_after_backward(self)
        if self.nonfinite_step(loss):
            return
        if cfg.optimizer.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, cfg.optimizer.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def nonfinite_step(self, loss: Tensor) -> bool:
        """Apply ``train.nonfinite`` after the backward pass: ``False`` when the loss and the
        gradients are finite; under ``skip`` drop the gradients, count and log the step and return
        ``True``; under ``stop`` write ``last.pt`` and raise :class:`NonFiniteError`."""
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        what = nonfinite_what(loss, params, check_gradients=not self.scaler.is_enabled())
        return what is not None and self.handle_nonfinite(what, self.config.train.nonfinite)

    def handle_nonfinite(self, what: str, policy: str) -> bool:
        """Log the non-finite ``what`` of the current step with its batch items, then ``skip``
        (drop the gradients, count, warn, return ``True``) or ``stop`` (write ``last.pt``, raise
        :class:`NonFiniteError`). Non-finite model outputs always stop: without finite
        embeddings there is no loss whose step could be skipped."""
        items = self.batch_items()
        where = (
            f"non-finite {what} at step {self.step + 1} (epoch {self.epoch}, batch "
            f"{self.batch_in_epoch} of the epoch; training items {items})"
        )
        record = {"kind": "nonfinite", "step": self.step + 1, "epoch": self.epoch}
        self._log({**record, "what": what, "items": items, "policy": policy})
        if policy == "skip":
            self.optimizer.zero_grad(set_to_none=True)
            self.nonfinite_skipped += 1
            warnings.warn(
                f"{where}: update skipped (train.nonfinite: skip), "
                f"{self.nonfinite_skipped} skipped so far",
                RuntimeWarning,
                stacklevel=2,
            )
            return True
        self.save_last()
        raise NonFiniteError(
            f"{where}. Stopped (train.nonfinite: stop); {self.run_dir / 'checkpoints' / 'last.pt'} "
            "holds the state before this step (resume with --resume, or set "
            "train.nonfinite: skip to drop such steps)"
        )

    def batch_items(self) -> list[int]:
        """Training-set item indices of the current batch, replayed from the seeded sampler at
        the trainer's position (the sampler itself is left alone)."""
        replay = copy.deepcopy(self.sampler)
        replay.load_state_dict(self.sampler_state())
        return [int(i) for i in next(iter(replay))]

    def train_loader(
        self, batch_sampler: Sampler[list[int]], persistent: bool = False
    ) -> DataLoader:
        """A loader over the training set with ``batch_sampler`` and the run's workers (its own
        generator, so that making an iterator leaves the global random state alone);
        ``persistent`` keeps its workers from one iterator to the next (the run's own loader)."""
        data = self.config.data
        return DataLoader(
            self.splits.train,
            batch_sampler=batch_sampler,
            generator=torch.Generator().manual_seed(self.config.seed),
            **loader_options(data.num_workers, data.worker_threads, self.device, persistent),
        )

    def advance(self) -> None:
        """Count a finished step; an epoch ends after ``len(sampler)`` batches."""
        self.step += 1
        self.batch_in_epoch += 1
        if self.batch_in_epoch == len(self.sampler):
            self.epoch += 1
            self.batch_in_epoch = 0

    # ------------------------------------------------------------------ logging and evaluation

    def log_train(self, loss: float, window: dict[str, float]) -> None:
        images_per_s = window["images"] / max(window["time"], 1e-9)
        lr = self.optimizer.param_groups[0]["lr"]
        record = {"kind": "train", "step": self.step, "epoch": self.epoch, "loss": loss}
        record.update({"lr": lr, "images_per_s": images_per_s, **self.method.log_fields()})
        self._log(record)
        self.console.update(self.step, {"loss": loss, "lr": lr, "img/s": images_per_s})

    def _log(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        if self.logger is None:
            raise RuntimeError("the run logs are open only inside fit()")
        self.logger.log(record)

    def evaluate(self, split: str, when: str | None = None) -> dict[str, float]:
        """Score the model on ``split``, log and print the metrics, tell the callbacks. The test
        embeddings are kept until the next test evaluation (the end of the run saves them).
        ``when`` names the moment on the console (default: the step)."""
        when = when or f"step {self.step}"
        emb, labels = self.embed(split, progress=f"embedding {split} ({when})")
        if split == "test":
            self.test_embeddings = (self.step, emb, labels)
        metrics = self.score(emb, labels, split)
        self._log(
            {"kind": "eval", "step": self.step, "epoch": self.epoch, "split": split, **metrics}
        )
        shown = "  ".join(
            f"{k} {100 * v:.2f}" for k, v in metrics.items() if k in self.columns[:-2]
        )
        self.console.message(f"{when} {split}: {shown}")
        self.callbacks.on_eval(self, split, metrics)
        self.sync_weights()
        return metrics

    def score(self, emb: Tensor, labels: Tensor, split: str | None = None) -> dict[str, float]:
        """Metrics of the method's evaluated view of ``emb`` and of its further views, also of
        ``split``'s queries against its gallery when it has them (``split=None``: leave-one-out
        only; computed on rank 0, the same on every rank)."""
        metrics: dict[str, float] = {}
        if self.dist.is_main:
            query = None if split is None else self.query_mask(split)
            cfg = self.config
            metrics = score_views(self.method, emb, labels, cfg.eval, cfg.seed, query)
        return self.dist.broadcast_object(metrics)

    def query_mask(self, split: str) -> Tensor | None:
        """The query items ``(N,)`` of ``split`` when it is made of query and gallery items."""
        dataset = {"val": self.splits.val, "test": self.splits.test}[split]
        mask = None if dataset is None else dataset.query_mask
        return None if mask is None else torch.from_numpy(mask)

    def sync_weights(self) -> None:
        """Give every rank rank 0's model and loss weights (after callbacks that may set them)."""
        self.dist.broadcast_module(self.model)
        self.dist.broadcast_module(self.loss_fn)

    def embed(
        self, split: str, model: torch.nn.Module | None = None, progress: str | None = None
    ) -> tuple[Tensor, Tensor]:
        """Embeddings and labels of ``split`` ("val" or "test") in item order; ``progress``
        labels a batch counter on the console (when ``train.progress`` is on)."""
        dataset = {"val": self.splits.val, "test": self.splits.test}[split]
        if dataset is None:
            raise ValueError(f"split {split!r} is not part of this run")
        return embed_dataset(
            self.model if model is None else model,
            dataset,
            self.config.eval.batch_size,
            self.device,
            self.config.train.amp,
            self.config.data.num_workers,
            progress=progress if self.console.enabled else None,
            context=self.dist,
            worker_threads=self.config.data.worker_threads,
        )

    @property
    def train_labels(self) -> Tensor:
        """``(N,)`` int64 class ids of the training items (CPU)."""
        return torch.from_numpy(self.splits.train.labels)

    def embed_train_items(self, indices: Sequence[int]) -> Tensor:
        """``(n, D)`` float32 CPU embeddings of the training items ``indices`` with the training
        transform (each item's seeded augmentation of the current epoch), the model in eval mode."""
        subset = Subset(self.splits.train, list(indices))
        emb, _ = embed_dataset(
            self.model,
            subset,
            self.config.eval.batch_size,
            self.device,
            self.config.train.amp,
            self.config.data.num_workers,
            context=self.dist,
            worker_threads=self.config.data.worker_threads,
        )
        return emb

    def periodic_eval(self, final: bool) -> None:
        """Evaluate the selection split, keep the best checkpoint, count evaluations without
        improvement (early stopping), and evaluate test when due (periodic, final or stopping)."""
        cfg = self.config
        selected_on = "test" if cfg.train.select_on_test else "val"
        metrics = self.evaluate(selected_on)
        value = metrics[cfg.eval.select_metric]
        improved = self.best["value"] is None or value > self.best["value"]
        if improved:
            self.best = {"step": self.step, "value": value, "val": None, "test": None}
            self.best[selected_on] = metrics
            state = {
                "kind": "best",
                "config": config_to_dict(cfg),
                "step": self.step,
                "model": self.model.state_dict(),
                "loss": self.loss_fn.state_dict(),
                "selection": {k: v for k, v in self.best.items() if k != "test"},
            }
            if self.dist.is_main:
                save_checkpoint(state, self.run_dir / "checkpoints" / "best.pt")
        self.stale_evals = 0 if improved else self.stale_evals + 1
        patience = cfg.train.patience
        self.stopped = patience is not None and self.stale_evals >= patience
        if selected_on == "test":
            self.last_test = metrics
        elif cfg.eval.periodic_test or final or self.stopped:
            self.last_test = self.evaluate("test")
            if improved:
                self.best["test"] = self.last_test

    # ------------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Everything an exact resume needs (module docstring)."""
        if self.logger is None:
            raise RuntimeError("checkpoints are written only inside fit()")
        return {
            "kind": "last",
            "config": config_to_dict(self.config),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "model": self.model.state_dict(),
            "loss": self.loss_fn.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "sampler": self.sampler_state(),
            "rng": capture_rng_state(),
            "callbacks": self.callbacks.state_dict(),
            "before": self.before,
            "best": self.best,
            "last_test": self.last_test,
            "stale_evals": self.stale_evals,
            "nonfinite_skipped": self.nonfinite_skipped,
            "stopped": self.stopped,
            "train_time_s": self.train_time_s,
            "log_position": self.logger.position(),
        }

    def sampler_state(self) -> dict[str, Any]:
        """The sampler's state at the trainer's position (batches trained on, not prefetched)."""
        state = self.sampler.state_dict()
        state.update(epoch=self.epoch, position=self.batch_in_epoch)
        return state

    def save_last(self) -> None:
        """Write ``last.pt`` (rank 0) and remember its step."""
        if self.dist.is_main:
            save_checkpoint(self.state_dict(), self.run_dir / "checkpoints" / "last.pt")
        self.checkpoint_step = self.step

    def load(self, path: Path) -> dict[str, int]:
        """Restore the state saved at ``path``; returns the log position to cut the logs to."""
        state = load_checkpoint(path, fallback=True)
        if state.get("kind") != "last":
            raise ValueError(
                f"{path}: expected the 'last' checkpoint of a run, got {state.get('kind')!r}"
            )
        saved = config_from_dict(state["config"])
        differ = [d for d in config_diff(saved, self.config) if not d.startswith(RESUME_FREE)]
        if differ:
            raise ValueError(
                f"--resume: the config differs from the one of {self.run_dir}:\n  "
                + "\n  ".join(differ)
            )
        self.model.load_state_dict(state["model"])
        self.loss_fn.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.sampler.load_state_dict(state["sampler"])
        self.callbacks.load_state_dict(state["callbacks"])
        self.step, self.epoch = state["step"], state["epoch"]
        self.batch_in_epoch = state["batch_in_epoch"]
        self.before, self.best = state["before"], state["best"]
        self.last_test = state["last_test"]
        self.stale_evals, self.stopped = state["stale_evals"], state["stopped"]
        self.train_time_s = state["train_time_s"]
        self.nonfinite_skipped = state.get("nonfinite_skipped", 0)  # absent before the policy
        restore_rng_state(state["rng"])
        self.checkpoint_step = self.step
        return state["log_position"]

    # ------------------------------------------------------------------------------ the end

    def finish(self) -> dict[str, Any]:
        """Test metrics of the final and of the selected model, test embeddings, metrics.json
        (:class:`~dmlkit.training.run_metrics.RunMetrics`, also kept as ``run_metrics``)."""
        cfg = self.config
        if self.last_test is None:
            raise RuntimeError("finish() needs the final test evaluation of train_until()")
        best_model = self.model
        if self.best["step"] != self.step:
            best_model = copy.deepcopy(self.model)
            if self.dist.is_main:
                best_state = load_checkpoint(self.run_dir / "checkpoints" / "best.pt")
                best_model.load_state_dict(best_state["model"])
            self.dist.broadcast_module(best_model)
        best_test = self.best["test"]
        cached = self.test_embeddings
        if cached is not None and cached[0] == self.best["step"] == self.step:
            emb, labels = cached[1], cached[2]
        elif best_test is None or cfg.output.embeddings:
            emb, labels = self.embed("test", best_model)
            if best_test is None:
                best_test = self.score(emb, labels, "test")
        if cfg.output.embeddings and self.dist.is_main:
            folder = self.run_dir / "embeddings"
            folder.mkdir(exist_ok=True)
            arrays: dict[str, np.ndarray] = {
                "emb": emb.numpy().astype(np.float32),
                "labels": labels.numpy().astype(np.int64),
                "index": np.arange(len(labels), dtype=np.int64),
            }
            query = self.query_mask("test")
            if query is not None:
                arrays["query"] = query.numpy()
            np.savez(folder / "test.npz", allow_pickle=False, **arrays)
        total_images = self.step * cfg.data.batch_size * self.dist.world_size
        self.run_metrics = RunMetrics(
            before=self.before,
            final=self.last_test,
            best=best_test,
            best_step=self.best["step"],
            selected_on="test" if cfg.train.select_on_test else "val",
            selection_metric=cfg.eval.select_metric,
            best_selection_value=self.best["value"],
            best_val=self.best["val"],
            dataset=cfg.data.name,
            ks=list(cfg.eval.ks),
            steps=self.step,
            stopped_early=self.stopped,
            nonfinite_skipped=self.nonfinite_skipped,
            train_time_s=self.train_time_s,
            images_per_s=total_images / max(self.train_time_s, 1e-9),
        )
        if self.dist.is_main:
            self.run_metrics.write(self.run_dir / "metrics.json")
        return self.run_metrics.to_dict()
