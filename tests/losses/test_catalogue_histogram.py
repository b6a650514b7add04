"""The catalogue cases of ``benchmarks/catalogue_histogram.py`` compute the same loss on both sides
(where their note does not say otherwise) and run forward and backward."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.catalogue_histogram import CASES

SAME_VALUE = {
    "histogram",
    "dynamic_soft_margin",
    "manifold",
    "miner_pair_margin",
    "miner_batch_easy_hard",
    "miner_hdc",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_runs_and_matches_the_peer(name: str) -> None:
    case = CASES[name]
    classes, dim = 6, 16
    g = torch.Generator().manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(48, dim, generator=g), dim=1)
    labels = torch.arange(48) % classes
    values = {}
    for side, factory in (("ours", case.ours), ("peer", case.peer)):
        assert factory is not None
        fn = factory(classes, dim)
        for _ in range(2):  # a second step: stateful losses keep working
            x = emb.clone().requires_grad_(True)
            loss = fn(x, labels)
            loss.backward()
            assert torch.isfinite(loss) and x.grad is not None and torch.isfinite(x.grad).all()
        values[side] = float(loss)
    assert name.startswith("miner_") or name in SAME_VALUE
    if name in SAME_VALUE:
        assert values["ours"] == pytest.approx(values["peer"], rel=1e-4, abs=1e-6)
    else:
        assert case.note  # says why the values differ
