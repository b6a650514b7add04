"""Distributed data-parallel training: process group, global-batch gather, sharded evaluation.

``torchrun`` starts one process per device and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` joins the process group from them
(NCCL on CUDA, gloo on the CPU) and returns the :class:`DistributedContext` every part of a run
asks: which rank am I, how many are there, do I write the run folder (rank 0 alone does).

Global batch. Rank ``r`` embeds its own batch ``E_r (B, D)``; pair and proxy losses must see the
global batch ``E = [E_0; ...; E_{W-1}] (W B, D)`` (rank order). :func:`gather_rows` concatenates
the ranks' rows; the rows of the other ranks are constants, the local rows keep their graph, and
the backward pass multiplies the gradient of the local rows by ``W``. Why ``W``: with ``L(E, θ)``
the single-process loss on the concatenated batch, network weights ``w`` and loss parameters
``θ`` (proxies, margin betas), rank ``r`` computes ``L`` on the gathered batch and gets

    g_r(w) = W · ∂L/∂E_r · ∂E_r/∂w,        g_r(θ) = ∂L/∂θ      (θ enters every rank's L whole).

DistributedDataParallel averages ``g_r(w)`` over ranks: ``(1/W) Σ_r W ∂L/∂E_r ∂E_r/∂w = dL/dw``,
the single-process gradient; :meth:`DistributedContext.average_gradients` averages ``g_r(θ)``,
which are equal already, so it gives ``∂L/∂θ`` and keeps the replicas bit-identical. Scaling the
loss by ``W`` instead would do the same for ``w`` but give ``W ∂L/∂θ`` for the loss parameters;
scaling the local rows' gradient keeps the logged loss equal to the single-process one too.

Evaluation is sharded: rank ``r`` embeds items ``r, r + W, ...`` (``DistributedSampler`` order,
padded with the first items to equal length), the shards are gathered, interleaved back into item
order and the padding is cut (:func:`gather_sharded`).

Faults. Every collective waits at most ``train.dist_timeout`` seconds (the process group's
timeout). A peer that dies breaks its connections at once, a peer that hangs (stopped, deadlocked,
swapping) makes the others time out; either way each surviving rank raises a ``RuntimeError`` from
the backend, which :func:`peer_failure` turns into one line for the command to print before it
exits with status 1.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar, cast

import torch
import torch.distributed as dist
from torch import Tensor, nn

T = TypeVar("T")

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# What the gloo and NCCL backends say when a peer is gone or silent (source location prefix removed).
PEER_FAILURE = re.compile(
    r"timed out|timeout|connection (reset|closed|refused)|broken pipe|socket|peer|"
    r"NCCL (error|communicator)|ProcessGroup",
    re.IGNORECASE,
)
SOURCE_PREFIX = re.compile(r"^\[[^\]]*\.(cc|cpp|h)(:\d+)?\]\s*")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the run: ``rank`` in ``[0, world_size)``, ``local_rank`` on
    its node. One process (``world_size == 1``) makes every collective a no-op."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes logs, checkpoints, metrics and reports."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def close(self) -> None:
        """Leave the process group (the end of a distributed run)."""
        if self.is_distributed and dist.is_initialized():
            dist.destroy_process_group()

    def broadcast_object(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (picklable objects: paths, metric dicts)."""
        if not self.is_distributed:
            return value
        box: list[Any] = [value]
        dist.broadcast_object_list(box, src=0)
        return cast(T, box[0])

    def broadcast_module(self, module: nn.Module) -> None:
        """Overwrite ``module``'s parameters and buffers with rank 0's, in place."""
        if not self.is_distributed:
            return
        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def ranks_where(self, flag: bool, device: torch.device) -> list[int]:
        """The ranks whose ``flag`` is true, known to every rank (one all-reduce of ``W``
        numbers on ``device``): lets all ranks take the same branch when one of them sees a
        problem."""
        if not self.is_distributed:
            return [self.rank] if flag else []
        flags = torch.zeros(self.world_size, device=device)
        flags[self.rank] = float(flag)
        dist.all_reduce(flags)
        return [int(r) for r in torch.nonzero(flags).flatten().tolist()]

    def average_gradients(self, module: nn.Module) -> None:
        """Replace the gradients of ``module``'s parameters by their mean over ranks (one flat
        all-reduce; a parameter without gradient is left alone, as it is on every rank)."""
        if not self.is_distributed:
            return
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


def current_context() -> DistributedContext:
    """The context of the initialised default process group, or the single-process one."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistributedContext()
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local)


def init_distributed(device: torch.device, timeout_s: float = 300.0) -> DistributedContext:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE``
    above 1), NCCL for a CUDA ``device`` and gloo otherwise, and select the ``LOCAL_RANK``-th GPU;
    every collective (and the rendezvous) waits at most ``timeout_s`` seconds for the others.
    A group that is already initialised is used as it is; without ``WORLD_SIZE`` (or with 1) the
    run is single-process."""
    if dist.is_available() and dist.is_initialized():
        return current_context()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    missing = [name for name in ENV_VARS if name not in os.environ]
    if missing:
        raise RuntimeError(
            f"distributed run (WORLD_SIZE={world_size}): expected the torchrun environment "
            f"variables {list(ENV_VARS)}, missing {missing}; start it with torchrun"
        )
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"LOCAL_RANK={local_rank}: only {torch.cuda.device_count()} CUDA device(s) on "
                "this node; start at most that many processes per node"
            )
        torch.cuda.set_device(local_rank)
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=timeout_s)
    )
    return current_context()


def peer_failure(err: BaseException, context: DistributedContext, timeout_s: float) -> str | None:
    """One line for a collective that failed because another process died or hung, naming this
    rank and the timeout; ``None`` for any other error (or in one process)."""
    if not context.is_distributed or not isinstance(err, RuntimeError):
        return None
    lines = str(err).strip().splitlines()
    first = SOURCE_PREFIX.sub("", lines[0]) if lines else type(err).__name__
    if not (isinstance(err, dist.DistError) or PEER_FAILURE.search(first)):
        return None
    first = first.split(". This is typically caused")[0]
    return (
        f"rank {context.rank} of {context.world_size}: another process of the run died or did "
        f"not answer within train.dist_timeout = {timeout_s:g} s ({first}); the run stops on "
        "every rank, resume it from its last checkpoint with --resume"
    )


def process_device(device: torch.device, context: DistributedContext) -> torch.device:
    """``device`` made explicit for this process: ``cuda`` -> ``cuda:LOCAL_RANK`` when
    distributed (one GPU per process), anything else unchanged."""
    if context.is_distributed and device.type == "cuda":
        return torch.device("cuda", context.local_rank)
    return device


class _GatherRows(torch.autograd.Function):
    """All-gather of equal-sized ``(B, ...)`` rows; backward: the local rows' slice times ``W``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, rank: int, world_size: int) -> Tensor:
        ctx.rank, ctx.world_size, ctx.rows = rank, world_size, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world_size)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        start = ctx.rank * ctx.rows
        return grad[start : start + ctx.rows] * ctx.world_size, None, None


def gather_rows(x: Tensor, context: DistributedContext) -> Tensor:
    """``(W B, ...)``: the ranks' ``x (B, ...)`` concatenated in rank order (module docstring for
    the gradient: the local rows' gradient is multiplied by ``W``, the others' is dropped).
    Every rank must pass the same ``B``; integer tensors (labels) are gathered without graph."""
    if not context.is_distributed:
        return x
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(context.world_size)]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], device=x.device))
    if len({int(s) for s in sizes}) != 1:
        raise ValueError(
            f"gather_rows: expected the same number of rows on every rank, got "
            f"{[int(s) for s in sizes]}"
        )
    if not x.requires_grad:
        parts = [torch.empty_like(x) for _ in range(context.world_size)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)
    out: Tensor = _GatherRows.apply(x, context.rank, context.world_size)
    return out


def gather_sharded(x: Tensor, total: int, context: DistributedContext) -> Tensor:
    """Undo ``DistributedSampler(shuffle=False)`` sharding: rank ``r`` holds rows of items
    ``r, r + W, ...`` (``ceil(total / W)`` rows, padded); returns the ``(total, ...)`` rows in item
    order on every rank, the padding removed. No gradient."""
    if not context.is_distributed:
        return x
    parts = [torch.empty_like(x) for _ in range(context.world_size)]
    dist.all_gather(parts, x.contiguous())
    interleaved = torch.stack(parts, dim=1).reshape(-1, *x.shape[1:])
    if interleaved.shape[0] < total:
        raise ValueError(
            f"gather_sharded: {interleaved.shape[0]} gathered rows cannot hold {total} items"
        )
    return interleaved[:total]


def data_parallel(model: nn.Module, context: DistributedContext, device: torch.device) -> nn.Module:
    """``model`` wrapped in ``DistributedDataParallel`` (its weights broadcast from rank 0, its
    gradients averaged over ranks in the backward pass) when distributed, else ``model`` itself.
    The wrapper shares ``model``'s parameters: checkpoints keep saving ``model``."""
    if not context.is_distributed:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
