"""Distributed training with two gloo processes on the CPU equals one process on the concatenated
batch: parameters after a few steps (pair loss, proxy loss, CCP with its rounds, a pair loss with
cross-batch memory, whose queue is compared too) and evaluation metrics (validation 179 and test
539 items: uneven shards, padding removed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn

from dmlkit.config import load_config
from dmlkit.methods import METHODS, CrossBatchMemory, TrainingMethod
from dmlkit.sampling import MPerClassBatchSampler
from dmlkit.training import Trainer, load_checkpoint
from dmlkit.training.distributed import (
    DistributedContext,
    gather_rows,
    gather_sharded,
    init_distributed,
)

WORLD = 2
MEMORY = "memory_for_ddp_tests"
BASE = [
    "seed=3",
    "data.options.test_fraction=0.3",
    "data.options.val_fraction=0.1",
    "data.image_size=8",
    "data.batch_size=20",
    "data.m=4",
    "data.batches_per_epoch=4",
    "model.name=mlp",
    "model.options={hidden: [32]}",
    "model.frozen_bn=true",
    "model.head_bn=false",
    "model.embedding_dim=16",
    "optimizer.name=sgd",
    "optimizer.lr=0.05",
    "optimizer.momentum=0.9",
    "optimizer.loss_lr=0.5",
    "train.steps=6",
    "train.eval_every=2",
    "train.checkpoint_every=3",
    "train.log_every=1",
    "train.progress=false",
    "train.num_threads=1",
    "eval.metrics=[recall, map@r]",
    "eval.ks=[1, 2]",
    "output.timestamp=false",
    "output.report=false",
]
CASES = {
    "pair": ["loss.name=ms"],
    "proxy": ["loss.name=proxy_anchor"],
    "ccp": [
        "loss.name=ms",
        "method.name=ccp",
        "method.options={per_class: 2, pool: 3, patience: 1, min_delta: 1.0}",
    ],
    "memory": ["loss.name=ms", f"method.name={MEMORY}"],
}


class MemoryMethod(TrainingMethod):
    """The configured loss against a queue of the last 70 rows (it wraps after 2 steps)."""

    def wrap_loss(self, loss: nn.Module) -> nn.Module:
        return CrossBatchMemory(loss, embedding_size=16, memory_size=70)


def _config(case: str, out: Path, name: str) -> Any:
    return load_config(None, [*BASE, *CASES[case], f"output.dir={out}", f"output.name={name}"])


def _states(trainer: Trainer) -> dict[str, Tensor]:
    model = {f"model.{k}": v for k, v in trainer.model.state_dict().items()}
    loss = {f"loss.{k}": v for k, v in trainer.loss_fn.state_dict().items()}
    return {**model, **loss}


def _worker(rank: int, out: Path) -> None:
    torch.set_num_threads(1)
    METHODS.register(MEMORY)(MemoryMethod)
    dist.init_process_group(
        "gloo", init_method=f"file://{out / 'store'}", rank=rank, world_size=WORLD
    )
    try:
        for case in CASES:
            (out / case).mkdir(exist_ok=True)
            trainer = Trainer(_config(case, out / case, "ddp"), out / case / "ddp")
            torch.save(_states(trainer), out / case / f"initial{rank}.pt")
            trainer.fit()
            torch.save(_states(trainer), out / case / f"rank{rank}.pt")
        evaluated = {}
        for split in ("val", "test"):
            emb, labels = trainer.embed(split)
            evaluated[split] = (emb, labels, trainer.score(emb, labels))
        torch.save(evaluated, out / f"evaluated{rank}.pt")
        context = DistributedContext(rank, WORLD)
        x = torch.arange(6.0).view(3, 2) + 10 * rank
        try:
            gather_rows(torch.zeros(rank + 1, 2), context)
            uneven = ""
        except ValueError as err:
            uneven = str(err)
        torch.save(
            {
                "sharded": gather_sharded(x, 5, context),
                "labels": gather_rows(torch.tensor([rank, rank]), context),
                "uneven": uneven,
                "flagged": context.ranks_where(rank == 1, torch.device("cpu")),
                "none_flagged": context.ranks_where(False, torch.device("cpu")),
            },
            out / f"gather{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


class GlobalBatches(MPerClassBatchSampler):
    """One process drawing the global batch of a ``world_size`` run: the ranks' batches of each
    step concatenated in rank order."""

    def __iter__(self) -> Iterator[list[int]]:
        if self.position >= self.num_batches:
            self.position = 0
        for step in range(self.position, self.num_batches):
            self.position = step + 1
            first = step * self.world_size
            yield [i for r in range(self.world_size) for i in self.batch(self.epoch, first + r)]


def _reference(case: str, out: Path) -> Trainer:
    trainer = Trainer(_config(case, out / case, "single"), out / case / "single")
    data = trainer.config.data
    trainer.sampler = GlobalBatches(
        trainer.splits.train.labels,
        m=data.m,
        batch_size=data.batch_size,
        num_batches=data.batches_per_epoch,
        seed=trainer.config.seed,
        world_size=WORLD,
    )
    trainer.loader = trainer.train_loader(trainer.sampler)
    trainer.fit()
    return trainer


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    METHODS.register(MEMORY)(MemoryMethod)
    try:
        out = tmp_path_factory.mktemp("ddp")
        mp.spawn(_worker, args=(out,), nprocs=WORLD, join=True)
        yield out
    finally:
        METHODS._factories.pop(MEMORY)


@pytest.mark.parametrize("case", list(CASES))
def test_two_processes_train_like_one_on_the_concatenated_batch(ddp_run: Path, case: str) -> None:
    reference = _reference(case, ddp_run)
    expected = _states(reference)
    for rank in range(WORLD):
        got = torch.load(ddp_run / case / f"rank{rank}.pt")
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            torch.testing.assert_close(got[key], value, rtol=1e-4, atol=1e-5, msg=key)
    if case == "memory":  # 6 steps of 40 global rows: the queue is full and next writes slot 30
        assert int(expected["loss.filled"]) == 70 and int(expected["loss.position"]) == 30
    initial = torch.load(ddp_run / case / "initial0.pt")
    change = max(float((expected[k] - v).abs().max()) for k, v in initial.items()
                 if v.is_floating_point())  # fmt: skip
    assert change > 1e-3  # the steps moved the weights, so the equality is not trivial


@pytest.mark.parametrize("case", list(CASES))
def test_two_processes_report_the_single_process_metrics(ddp_run: Path, case: str) -> None:
    single = json.loads((ddp_run / case / "single" / "metrics.json").read_text())
    ddp = json.loads((ddp_run / case / "ddp" / "metrics.json").read_text())
    assert ddp["final"]["num_queries"] == single["final"]["num_queries"] == 539
    assert ddp["best_val"]["num_queries"] == 179
    assert ddp["before"] == pytest.approx(single["before"], abs=1e-6)
    # trained weights agree to float tolerance, which can move a near-tied neighbour
    for key in ("final", "best", "best_val"):
        assert ddp[key] == pytest.approx(single[key], abs=2e-3), key
    assert ddp["best_step"] == single["best_step"]
    assert ddp["steps"] == single["steps"] == 6


def test_ccp_switches_its_round_at_the_single_process_step(ddp_run: Path) -> None:
    log = [json.loads(line) for line in (ddp_run / "ccp" / "ddp" / "log.jsonl").open()]
    single = [json.loads(line) for line in (ddp_run / "ccp" / "single" / "log.jsonl").open()]
    losses = [r["loss"] for r in log if r["kind"] == "train"]
    assert losses == pytest.approx([r["loss"] for r in single if r["kind"] == "train"], rel=1e-4)
    assert len(losses) == 6
    for run in ("ddp", "single"):
        state = load_checkpoint(ddp_run / "ccp" / run / "checkpoints" / "last.pt")
        [(name, rounds)] = state["callbacks"]["callbacks"]
        assert name == "CCPRounds" and rounds["switch_steps"] == [4]  # a round switched


def test_only_rank_zero_writes_the_run_folder(ddp_run: Path) -> None:
    run = ddp_run / "pair" / "ddp"
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoints", "config.yaml", "embeddings", "log.csv", "log.jsonl", "metrics.json"
    ]  # fmt: skip
    lines = (run / "log.jsonl").read_text().splitlines()
    assert len([line for line in lines if '"kind": "train"' in line]) == 6


def test_gathers_interleave_shards_and_concatenate_ranks(ddp_run: Path) -> None:
    for rank in range(WORLD):
        got = torch.load(ddp_run / f"gather{rank}.pt")
        # rank 0 holds items 0, 2, 4 (rows 0..5 of arange), rank 1 items 1, 3 and a padding row
        expected = torch.tensor([[0.0, 1], [10, 11], [2, 3], [12, 13], [4, 5]])
        torch.testing.assert_close(got["sharded"], expected)
        assert got["labels"].tolist() == [0, 0, 1, 1]
        assert got["uneven"].endswith("got [1, 2]")


def test_several_processes_need_the_torchrun_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError, match=r"missing \['RANK', 'LOCAL_RANK'"):
        init_distributed(torch.device("cpu"))


def test_one_process_context_leaves_everything_alone() -> None:
    context = init_distributed(torch.device("cpu"))
    assert context == DistributedContext() and context.is_main and not context.is_distributed
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_rows(x, context) is x and gather_sharded(x, 3, context) is x
    assert context.broadcast_object({"a": 1.0}) == {"a": 1.0}


def test_sharded_evaluation_equals_one_process(ddp_run: Path, tmp_path: Path) -> None:
    last = list(CASES)[-1]  # the workers evaluate the model of their last run
    trainer = Trainer(_config(last, tmp_path, "check"), tmp_path / "check")
    states = torch.load(ddp_run / last / "rank0.pt")
    model = {k[6:]: v for k, v in states.items() if k.startswith("model.")}
    trainer.model.load_state_dict(model)
    for rank in range(WORLD):
        evaluated = torch.load(ddp_run / f"evaluated{rank}.pt")
        for split, size in (("val", 179), ("test", 539)):
            emb, labels, metrics = evaluated[split]
            expected_emb, expected_labels = trainer.embed(split)
            assert emb.shape == (size, 16)
            torch.testing.assert_close(emb, expected_emb, rtol=1e-5, atol=1e-6)
            assert torch.equal(labels, expected_labels)
            assert metrics == pytest.approx(trainer.score(expected_emb, expected_labels), abs=1e-6)


def test_every_rank_learns_which_ranks_raised_a_flag(ddp_run: Path) -> None:
    for rank in range(WORLD):
        gathered = torch.load(ddp_run / f"gather{rank}.pt")
        assert gathered["flagged"] == [1] and gathered["none_flagged"] == []
