"""The training loop: a plain loop a researcher can follow from top to bottom.

    trainer = Trainer(config, run_dir)          # builds data, sampler, model, loss, optimizer
    metrics = trainer.fit()                     # trains, evaluates, checkpoints, writes metrics.json

The step, :meth:`Trainer.train_step` (the first method after ``__init__``)::

    emb = forward(images)                       # (B, D) float32, the model under autocast
    emb, labels = gather(emb, labels)           # all ranks' rows (W B, D), (W B,); one process: as is
    loss = loss_fn(emb, labels)                 # the configured loss as the method wraps it
    optimizer_step(loss)                        # zero grads, (scaled) backward, on_after_backward,
                                                # non-finite check, clipping, optimizer/scaler step
    scheduler.step()

The batches are m-per-class (the run's one training loader, ``Trainer.loader``). A method changes
the step through named hooks only: ``TrainingMethod.wrap_loss`` builds ``loss_fn``, its
callbacks' ``on_after_backward`` change the gradients (CCP's proximal term) and ``on_batch_end``
sees each finished step; ``TrainingMethod.train_step`` replaces the whole iteration (the one user
is sharing's ``two_step`` mode: two optimizer steps); ``TrainingMethod.eval_views`` chooses which
view of the model's output is evaluated. The method's callbacks run before the ones passed in.

Every ``eval_every`` steps and at the end the model is scored on the validation split (model
selection, ``best.pt``) and on the test split; ``train.select_on_test`` selects on test instead.
Every ``checkpoint_every`` steps and at the end ``last.pt`` holds everything an exact resume needs:
model, loss, optimizer, scheduler and scaler states, the sampler's epoch and position, the global
RNG states, the best selection so far, the callbacks' states and the log positions.
A step whose loss or gradients are not finite stops the run (``train.nonfinite: stop``, with
``last.pt`` written and the step and batch items named) or is skipped and counted (``skip``);
non-finite embeddings always stop. See :mod:`dmlkit.training.nonfinite`.

The jobs around the loop live in their own modules: :mod:`~dmlkit.training.checkpoint` (what
``last.pt`` and ``best.pt`` hold, resume), :mod:`~dmlkit.training.nonfinite`,
:mod:`~dmlkit.training.selection` (best model, early stopping) and
:mod:`~dmlkit.training.outputs` (metrics.json, test embeddings).

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

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from dmlkit.config import ExperimentConfig, save_config
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
from dmlkit.training.checkpoint import last_state, restore_last, save_checkpoint
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
from dmlkit.training.nonfinite import check_step, handle_nonfinite
from dmlkit.training.optim import build_optimizer, build_scheduler
from dmlkit.training.outputs import run_outputs
from dmlkit.training.run_metrics import RunMetrics
from dmlkit.training.rundir import has_checkpoint
from dmlkit.training.seed import seed_everything
from dmlkit.training.selection import evaluate_and_select


class Trainer:
    """Train one experiment into ``run_dir`` (module docstring).

    ``resume=True`` continues from ``run_dir/checkpoints/last.pt`` (falling back to the previous
    checkpoint with a one-line notice when it is damaged); the config must match the saved one
    except for the fields of :data:`~dmlkit.training.checkpoint.RESUME_FREE`. A run folder without
    any checkpoint (a run that stopped before its first one) is started over, with a notice.
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

    # ------------------------------------------------------------------------------ the step

    def train_step(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One training iteration on a batch ``images``, ``labels (B,)`` (module docstring), then
        one schedule step; returns the detached loss (0-dim), the local embeddings ``(B, D)`` and
        the labels on the device. A method whose ``train_step`` returns a result has replaced the
        iteration (sharing's ``two_step``)."""
        labels = labels.to(self.device, non_blocking=True)
        replaced = self.method.train_step(self, images, labels)
        if replaced is not None:
            loss, emb = replaced
        else:
            emb = self.forward(images)  # (B, D) float32
            global_emb, global_labels = self.gather(emb, labels)  # (W B, D), (W B,)
            loss = self.loss_fn(global_emb, global_labels)
            self.optimizer_step(loss)  # backward, on_after_backward, clipping, update
            loss, emb = loss.detach(), emb.detach()
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
            handle_nonfinite(self, f"model output{where}", "stop")
        return emb

    def gather(self, emb: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The global batch ``(W B, D)``, ``(W B,)``: every rank's embeddings and labels in rank
        order, the local rows keeping their gradient (scaled by ``W``, see
        :mod:`dmlkit.training.distributed`); ``emb``, ``labels`` themselves in one process."""
        return gather_rows(emb, self.dist), gather_rows(labels, self.dist)

    def optimizer_step(self, loss: Tensor) -> None:
        """Zero the gradients, (scaled) backward, ``on_after_backward``, the ``train.nonfinite``
        check, optional clipping, optimizer and scaler step (no schedule step)."""
        cfg = self.config
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.dist.average_gradients(self.loss_fn)  # the loss's parameters; DDP averages the model's
        self.callbacks.on_after_backward(self)  # methods add to or change the gradients
        if check_step(self, loss):  # a non-finite step skipped (or the run stopped)
            return
        if cfg.optimizer.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, cfg.optimizer.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()

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
            position = restore_last(self, checkpoints / "last.pt")
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
                    evaluate_and_select(self, final=last)
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
        self.log(record)
        self.console.update(self.step, {"loss": loss, "lr": lr, "img/s": images_per_s})

    def log(self, record: dict[str, Any]) -> None:
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
        self.log(
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
        return self.embed_items(dataset, model, progress)

    @property
    def train_labels(self) -> Tensor:
        """``(N,)`` int64 class ids of the training items (CPU)."""
        return torch.from_numpy(self.splits.train.labels)

    def embed_train_items(self, indices: Sequence[int]) -> Tensor:
        """``(n, D)`` float32 CPU embeddings of the training items ``indices`` with the training
        transform (each item's seeded augmentation of the current epoch), the model in eval mode."""
        emb, _ = self.embed_items(Subset(self.splits.train, list(indices)))
        return emb

    def embed_items(
        self,
        dataset: Dataset[tuple[Tensor, int]],
        model: torch.nn.Module | None = None,
        progress: str | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``(emb (N, D), labels (N,))`` of ``dataset`` on the CPU by ``model`` (default: the
        trainer's) with the run's evaluation batch size, precision, workers and ranks
        (:func:`~dmlkit.training.evaluate.embed_dataset`)."""
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

    # ------------------------------------------------------------------------ checkpoints

    def sampler_state(self) -> dict[str, Any]:
        """The sampler's state at the trainer's position (batches trained on, not prefetched)."""
        state = self.sampler.state_dict()
        state.update(epoch=self.epoch, position=self.batch_in_epoch)
        return state

    def save_last(self) -> None:
        """Write ``last.pt`` (rank 0) and remember its step."""
        if self.dist.is_main:
            save_checkpoint(last_state(self), self.run_dir / "checkpoints" / "last.pt")
        self.checkpoint_step = self.step

    # ------------------------------------------------------------------------------ the end

    def finish(self) -> dict[str, Any]:
        """The run's metrics (:func:`~dmlkit.training.outputs.run_outputs`, also kept as
        ``run_metrics``), written to metrics.json on rank 0 and returned as a dict."""
        self.run_metrics = run_outputs(self)
        if self.dist.is_main:
            self.run_metrics.write(self.run_dir / "metrics.json")
        return self.run_metrics.to_dict()
