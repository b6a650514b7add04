"""GPU throughput: training steps, pair and proxy losses vs pytorch-metric-learning, exact
retrieval at N = 1M. Run on a machine with a CUDA GPU; the GPU's name goes into the JSON.

Three sections (``--sections``, all by default), each side by side in this process:

- ``train``: training images/s of ResNet-50 (224 px) and BN-Inception (227 px) at batch 112-180
  with bf16 autocast, eager and compiled (``train.compile`` + channels-last, the trainer's
  default for CNNs compiled on a GPU): the dmlkit trainer's step (``Trainer.train_step``:
  autocast, loss, the non-finite checks, optimizer and schedule step) against a bare PyTorch
  loop with the same model, loss, optimizer and batches (``autocast -> model -> loss ->
  zero_grad -> backward -> step``, compiled the same way). Batches are random images already on
  the GPU (the input pipeline is ``bench_input_pipeline.py``'s subject).
  Windows of ``--steps`` steps alternate trainer / bare (order reversed every round) after one
  warm-up window each (which compiles); images/s is the median; overhead =
  1 - trainer / bare, target <= 5%. (The digits data only builds the trainer; the batch draws
  ``batch / m`` classes with ``m`` large enough for its 10 classes.)
- ``losses``: forward + backward of the pair engine (multi-similarity with its miner,
  contrastive; the settings of ``bench_pair_losses.py``) and ProxyAnchor (11,318 classes) at
  B = 4096 and 16384, D = 512, against PML's losses on the same inputs; time and peak GPU memory,
  alternating rounds, ratio = ours / PML.
- ``retrieval``: P@1 + R-Precision + MAP@R of N = 1,000,000 unit vectors, D = 128 (200,000
  classes of 5, ``bench_evaluation.sop_like``), exactly, on the GPU, against the matmul floor:
  the N x N x D product in the same blocks (``bench_evaluation.floor_product``); ratio =
  ours / floor.

``--dry-run`` runs every section on the CPU at toy sizes (the test suite does, so the script
keeps working without a GPU) and writes ``gpu_dry_run.json``; a GPU run writes ``gpu.json``
(``gpu_<sections>.json`` for a subset).
A full run takes about 8 minutes on one H100/H200-class GPU; sections split it across commands.

    python benchmarks/bench_gpu.py [--sections train losses retrieval] [--steps 20]
                                   [--repeats 7] [--dry-run] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_evaluation import RETRIEVAL_OURS, floor_product, sop_like
from benchmarks.bench_pair_losses import CASES
from benchmarks.common import RESULTS_DIR, write_result
from dmlkit.config import load_config
from dmlkit.evaluation import evaluate
from dmlkit.losses import create
from dmlkit.training import Trainer
from dmlkit.training.build import build_loss, build_model

OVERHEAD_TARGET = 0.05
# (model, image side, batch): the DML papers' BN-Inception at 227 px, ResNet-50 at 224 px
TRAIN = [("resnet50", 224, 180), ("bninception", 227, 112)]
TRAIN_DRY = [("resnet50", 64, 8), ("bninception", 64, 8)]
LOSS_BATCHES = (4096, 16384)
RETRIEVAL_N, RETRIEVAL_CLASSES = 1_000_000, 200_000


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds of ``fn()``, the device synchronised before and after."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def alternate(
    fns: dict[str, Callable[[], Any]], rounds: int, device: torch.device
) -> dict[str, list[float]]:
    """One warm-up call each, then ``rounds`` rounds of one timed call each, the order reversed
    every other round."""
    for fn in fns.values():
        timed(fn, device)
    names = list(fns)
    runs: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            runs[name].append(timed(fns[name], device))
    return runs


def peak_bytes(fn: Callable[[], Any], device: torch.device) -> int | None:
    """Peak GPU memory allocated while ``fn`` runs above what was allocated before (CUDA only)."""
    if device.type != "cuda":
        return None
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    sync(device)
    return torch.cuda.max_memory_allocated(device) - before


# ------------------------------------------------------------------------------------ train


def trainer_for(
    model: str, batch: int, compiled: bool, device: torch.device, folder: Path
) -> Trainer:
    """A trainer of ``model`` with bf16 autocast (CUDA) on the offline digits data (its loader
    is not used: the steps get the benchmark's batches); ``m`` images per class, at least 4 and
    enough that a batch draws at most the 10 digit classes."""
    m = max(4, -(-batch // 10))
    while batch % m:
        m += 1
    overrides = [
        f"model.name={model}",
        "model.options={}",
        "model.in_channels=3",
        "model.embedding_dim=512",
        f"data.batch_size={batch}",
        f"data.m={m}",
        f"train.device={device.type}",
        f"train.amp={'bf16' if device.type == 'cuda' else 'none'}",
        f"train.compile={str(compiled).lower()}",
        "train.progress=false",
        f"output.dir={folder}",
    ]
    return Trainer(load_config(None, overrides), folder / f"{model}-{batch}-{compiled}")


def bare_loop(trainer: Trainer, compiled: bool) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """A plain PyTorch step with the trainer's model architecture, loss and optimizer settings
    (fresh weights), bf16 autocast on CUDA, compiled and channels-last when ``compiled``."""
    config, device = trainer.config, trainer.device
    torch.manual_seed(config.seed)
    model = build_model(config.model).to(device)
    loss_fn = build_loss(config.loss, trainer.splits.train.num_classes, 512).to(device)
    optimizer = torch.optim.Adam([*model.parameters(), *loss_fn.parameters()], lr=1e-4)
    layout = torch.channels_last if compiled else torch.contiguous_format
    model = model.to(memory_format=layout)
    forward = torch.compile(model) if compiled else model
    dtype = torch.bfloat16 if device.type == "cuda" else None

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            emb = forward(images.contiguous(memory_format=layout))
        loss = loss_fn(emb.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def train_row(
    model: str, side: int, batch: int, compiled: bool, args: argparse.Namespace,
    device: torch.device, folder: Path,
) -> dict[str, Any]:  # fmt: skip
    """Trainer vs bare loop for one model, image side, batch and compile setting."""
    trainer = trainer_for(model, batch, compiled, device, folder)
    bare = bare_loop(trainer, compiled)
    m = trainer.config.data.m
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, side, side, generator=g).to(device)
    labels = torch.arange(batch // m).repeat_interleave(m).to(device)
    trainer.model.train()

    def run_trainer() -> None:
        for _ in range(args.steps):
            trainer.train_step(images, labels)

    def run_bare() -> None:
        for _ in range(args.steps):
            bare(images, labels)

    first = {"trainer": timed(run_trainer, device), "bare": timed(run_bare, device)}
    runs = alternate({"trainer": run_trainer, "bare": run_bare}, args.repeats, device)
    ips = {k: args.steps * batch / statistics.median(v) for k, v in runs.items()}
    return {
        "model": model,
        "image_side": side,
        "batch": batch,
        "m": m,
        "amp": trainer.config.train.amp,
        "compiled": compiled,
        "channels_last": compiled and device.type == "cuda",
        "first_window_s": first,
        "window_s": runs,
        "images_per_s": ips,
        "overhead": 1.0 - ips["trainer"] / ips["bare"],
        "target_overhead": OVERHEAD_TARGET,
    }


def train_section(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    rows = []
    settings = TRAIN_DRY if args.dry_run else TRAIN
    variants = (False,) if args.dry_run and not args.compile_on_cpu else (False, True)
    with tempfile.TemporaryDirectory() as tmp:
        for model, side, batch in settings:
            for compiled in variants:
                row = train_row(model, side, batch, compiled, args, device, Path(tmp))
                print({k: v for k, v in row.items() if k != "window_s"}, flush=True)
                rows.append(row)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return rows


# ----------------------------------------------------------------------------------- losses


def loss_step(
    loss: Callable[..., torch.Tensor], x: torch.Tensor, y: torch.Tensor
) -> Callable[[], None]:
    """Forward + backward of ``loss`` on ``x`` (a fresh leaf each call), parameter gradients
    dropped."""
    params = list(loss.parameters()) if isinstance(loss, torch.nn.Module) else []

    def run() -> None:
        emb = x.detach().requires_grad_(True)
        loss(emb, y).backward()
        for p in params:
            p.grad = None

    return run


def loss_section(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    from pytorch_metric_learning import losses as pml_losses

    rows = []
    batches = (64, 128) if args.dry_run else LOSS_BATCHES
    classes_proxy = 100 if args.dry_run else 11318
    dim = 32 if args.dry_run else 512
    for batch in batches:
        g = torch.Generator().manual_seed(0)
        x = torch.nn.functional.normalize(torch.randn(batch, dim, generator=g), dim=1).to(device)
        y = torch.randint(0, max(2, batch // 16), (batch,), generator=g).to(device)
        pairs: dict[str, tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]] = {}
        for name in ("ms_mined", "contrastive"):
            ours_factory, pml_factory = CASES[name]
            if pml_factory is not None:
                pairs[name] = (ours_factory(), pml_factory())
        ours_anchor = create("proxy_anchor", num_classes=classes_proxy, embedding_dim=dim)
        pml_anchor = pml_losses.ProxyAnchorLoss(classes_proxy, dim)
        with torch.no_grad():
            pml_anchor.proxies.copy_(ours_anchor.proxies.weight)
        pairs["proxy_anchor"] = (ours_anchor, pml_anchor)
        y_proxy = torch.randint(0, classes_proxy, (batch,), generator=g).to(device)
        for name, (ours, pml) in pairs.items():
            labels = y_proxy if name == "proxy_anchor" else y
            if isinstance(ours, torch.nn.Module):
                ours.to(device)
            if isinstance(pml, torch.nn.Module):
                pml.to(device)
            steps = {"ours": loss_step(ours, x, labels), "pml": loss_step(pml, x, labels)}
            runs = alternate(steps, args.repeats, device)
            median = {k: statistics.median(v) for k, v in runs.items()}
            row = {
                "loss": name,
                "B": batch,
                "D": dim,
                "median_s": median,
                "runs_s": runs,
                "time_ratio": median["ours"] / median["pml"],
                "peak_bytes": {k: peak_bytes(fn, device) for k, fn in steps.items()},
                "values": {
                    "ours": float(ours(x, labels).detach()),
                    "pml": float(pml(x, labels).detach()),
                },
            }
            print({k: v for k, v in row.items() if k != "runs_s"}, flush=True)
            rows.append(row)
    return rows


# -------------------------------------------------------------------------------- retrieval


def retrieval_section(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    n, classes = (2000, 400) if args.dry_run else (RETRIEVAL_N, RETRIEVAL_CLASSES)
    x, y = sop_like(n, classes)
    x, y = x.to(device), y.to(device)
    memory = args.retrieval_memory_gib << 30

    def ours() -> dict[str, float]:
        return evaluate(
            x, y, metrics=list(RETRIEVAL_OURS), memory_bytes=memory, device=device
        ).to_dict()

    runs = alternate(
        {"ours": ours, "floor": floor_product(x, memory)}, args.retrieval_repeats, device
    )
    median = {k: statistics.median(v) for k, v in runs.items()}
    row = {
        "N": n,
        "D": x.shape[1],
        "classes": classes,
        "memory_bytes": memory,
        "median_s": median,
        "runs_s": runs,
        "ours_over_floor": median["ours"] / median["floor"],
        "floor_tflops": 2 * n * n * x.shape[1] / median["floor"] / 1e12,
        "values": ours(),
    }
    print(row, flush=True)
    return row


def device_info(device: torch.device) -> dict[str, Any]:
    if device.type != "cuda":
        return {"type": "cpu", "name": "CPU (dry run)"}
    props = torch.cuda.get_device_properties(device)
    return {
        "type": "cuda",
        "name": torch.cuda.get_device_name(device),
        "capability": list(torch.cuda.get_device_capability(device)),
        "memory_gib": props.total_memory / 2**30,
        "cuda": torch.version.cuda,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", default=["train", "losses", "retrieval"],
                        choices=["train", "losses", "retrieval"])  # fmt: skip
    parser.add_argument("--steps", type=int, default=20, help="training steps per window")
    parser.add_argument("--repeats", type=int, default=7, help="timed windows / rounds")
    parser.add_argument("--retrieval-repeats", type=int, default=3)
    parser.add_argument("--retrieval-memory-gib", type=int, default=8, help="ranking scratch")
    parser.add_argument("--dry-run", action="store_true", help="toy sizes on the CPU")
    parser.add_argument("--compile-on-cpu", action="store_true", help="dry run: compile too")
    parser.add_argument("--out-dir", default=str(RESULTS_DIR), help="where the JSON goes")
    args = parser.parse_args()
    if args.dry_run:
        args.steps, args.repeats, args.retrieval_repeats = 1, 1, 1
        args.retrieval_memory_gib = 1
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        parser.error("no CUDA device: run on a GPU machine, or pass --dry-run")
    else:
        device = torch.device("cuda")
    start = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "GPU: training images/s (trainer vs bare loop, eager vs compiled), pair and "
        "proxy losses vs PML, exact retrieval at N = 1M vs the matmul floor",
        "device": device_info(device),
        "dry_run": args.dry_run,
        "load_average_1m_before": os.getloadavg()[0],
    }
    if "train" in args.sections:
        result["train"] = train_section(args, device)
    if "losses" in args.sections:
        result["losses"] = loss_section(args, device)
    if "retrieval" in args.sections:
        result["retrieval"] = retrieval_section(args, device)
    result["wall_s"] = time.perf_counter() - start
    every = len(args.sections) == 3
    name = "gpu_dry_run" if args.dry_run else "gpu" if every else "gpu_" + "_".join(args.sections)
    print(f"-> {write_result(name, result, Path(args.out_dir))}")


if __name__ == "__main__":
    main()
