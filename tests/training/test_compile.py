"""``train.channels_last`` and ``train.compile`` give the eager results within floating-point
tolerance, with unchanged checkpoint keys (torch.compile: inductor on the CPU with gcc)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
from tiny_demo import TINY_DEMO

from dmlkit.config import load_config
from dmlkit.models import create_model
from dmlkit.training import Trainer
from dmlkit.training.compile import (
    ChannelsLastInput,
    compile_step,
    has_convolutions,
    use_channels_last,
)

needs_compiler = pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None,
    reason="torch.compile on the CPU needs a C++ compiler",
)


def test_channels_last_setting() -> None:
    cnn = create_model("small_cnn", embedding_dim=8, in_channels=3, widths=[4, 8])
    mlp = create_model("mlp", embedding_dim=8, in_features=12)
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert has_convolutions(cnn) and not has_convolutions(mlp)
    # default: CNNs compiled on a GPU
    assert use_channels_last(cnn, None, compile=True, device=gpu)
    assert not use_channels_last(cnn, None, compile=False, device=gpu)
    assert not use_channels_last(cnn, None, compile=True, device=cpu)
    assert not use_channels_last(mlp, None, compile=True, device=gpu)
    assert use_channels_last(cnn, True, compile=False, device=cpu)
    assert not use_channels_last(cnn, False, compile=True, device=gpu)
    with pytest.raises(ValueError, match=r"train\.channels_last: expected a model with 2-D conv"):
        use_channels_last(mlp, True, compile=False, device=cpu)
    assert compile_step(cnn, compile=False, channels_last=False) is cnn
    wrapped = compile_step(cnn, compile=False, channels_last=True)
    assert isinstance(wrapped, ChannelsLastInput) and wrapped.module is cnn


def test_channels_last_input_changes_the_layout_only() -> None:
    seen: list[torch.Tensor] = []

    class Probe(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x)
            return x.sum(dim=1)

    x = torch.randn(2, 3, 4, 5)
    out = ChannelsLastInput(Probe())(x)
    assert seen[0].is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(seen[0], x) and torch.equal(out, x.sum(dim=1))
    flat = torch.randn(2, 6)
    assert torch.equal(ChannelsLastInput(Probe())(flat), flat.sum(dim=1))


@needs_compiler
@pytest.mark.slow
def test_compiled_step_equals_eager_forward_and_backward() -> None:
    torch.manual_seed(0)
    eager = create_model("small_cnn", embedding_dim=16, in_channels=3, widths=[8, 16])
    model = copy.deepcopy(eager).to(memory_format=torch.channels_last)
    step = compile_step(model, compile=True, channels_last=True)
    x = torch.randn(12, 3, 16, 16)
    a, b = eager(x), step(x)
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    (a * torch.arange(16.0)).sum().backward()
    (b * torch.arange(16.0)).sum().backward()
    for (name, p), q in zip(eager.named_parameters(), model.parameters(), strict=True):
        # float32 sums in another order (BN statistics, fused kernels): relative to the norm
        assert float((p.grad - q.grad).norm() / p.grad.norm()) < 1e-4, name
    assert list(model.state_dict()) == list(eager.state_dict())


def _train(tmp_path: Path, *settings: str) -> tuple[list[float], dict[str, torch.Tensor]]:
    config = load_config(
        None,
        [
            *TINY_DEMO,
            "train.steps=4",
            "train.log_every=1",
            "train.progress=false",
            "eval.before=false",
            "eval.metrics=[recall]",
            "eval.select_metric=recall@1",
            "eval.ks=[1]",
            "output.report=false",
            f"output.dir={tmp_path}",
            *settings,
        ],
    )
    run = tmp_path / "-".join(["run", *settings])
    trainer = Trainer(config, run)
    trainer.fit()
    log = (run / "log.jsonl").read_text().splitlines()
    losses = [r["loss"] for r in map(json.loads, log) if r["kind"] == "train"]
    return losses, trainer.model.state_dict()


@pytest.mark.parametrize(
    "settings",
    [
        ("train.channels_last=true",),
        pytest.param(
            ("train.compile=true", "train.channels_last=true"),
            marks=[needs_compiler, pytest.mark.slow],
        ),
    ],
    ids=["channels_last", "compile"],
)
def test_a_fast_run_trains_like_an_eager_one(tmp_path: Path, settings: tuple[str, ...]) -> None:
    eager_losses, eager_state = _train(tmp_path)
    losses, state = _train(tmp_path, *settings)
    assert len(losses) == len(eager_losses) == 4
    assert losses == pytest.approx(eager_losses, rel=1e-3, abs=1e-4)
    assert list(state) == list(eager_state)
    for name, value in state.items():
        assert torch.allclose(value.float(), eager_state[name].float(), atol=1e-3, rtol=1e-3), name
