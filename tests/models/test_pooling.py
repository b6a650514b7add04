"""Global pooling against explicit loops over positions and tokens."""

from __future__ import annotations

import pytest
import torch

from dmlkit.models import GlobalPool


def _loop_pool(x: torch.Tensor, mode: str) -> torch.Tensor:
    """Reference over a (B, C, P) tensor of positions, one position at a time."""
    b, c, p = x.shape
    out = torch.empty(b, c, dtype=x.dtype)
    for i in range(b):
        for j in range(c):
            values = [float(x[i, j, k]) for k in range(p)]
            avg, top = sum(values) / p, max(values)
            out[i, j] = {"avg": avg, "max": top, "avg+max": avg + top}[mode]
    return out


@pytest.mark.parametrize("mode", ["avg", "max", "avg+max"])
def test_map_pooling_matches_a_loop_over_positions(mode: str) -> None:
    x = torch.randn(3, 5, 4, 2, dtype=torch.float64)
    expected = _loop_pool(x.reshape(3, 5, 8), mode)
    torch.testing.assert_close(GlobalPool(mode)(x), expected)
    channels_last = x.to(memory_format=torch.channels_last)
    torch.testing.assert_close(GlobalPool(mode)(channels_last), expected)


@pytest.mark.parametrize("mode", ["avg", "max", "avg+max"])
def test_token_pooling_skips_the_prefix_tokens(mode: str) -> None:
    x = torch.randn(2, 1 + 6, 4, dtype=torch.float64)
    x[:, 0] = 100.0  # a class token that must not enter avg/max
    expected = _loop_pool(x[:, 1:].transpose(1, 2), mode)
    torch.testing.assert_close(GlobalPool(mode, "tokens", num_prefix_tokens=1)(x), expected)


def test_class_token_and_vector_identity() -> None:
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(GlobalPool("token", "tokens", 1)(x), x[:, 0])
    v = torch.randn(4, 7)
    assert GlobalPool("none", "vector")(v) is v


def test_hand_values() -> None:
    x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])  # (1, 1, 2, 2)
    assert GlobalPool("avg")(x).item() == 3.0
    assert GlobalPool("max")(x).item() == 6.0
    assert GlobalPool("avg+max")(x).item() == 9.0


def test_bad_arguments_name_the_choices() -> None:
    with pytest.raises(ValueError, match=r"expected one of .*'avg'"):
        GlobalPool("gem")
    with pytest.raises(ValueError, match="'none'"):
        GlobalPool("avg", "vector")
    with pytest.raises(ValueError, match="class token"):
        GlobalPool("token", "tokens", 0)
    with pytest.raises(ValueError, match="layout"):
        GlobalPool("avg", "volume")
    with pytest.raises(ValueError, match="4-D map input, got shape"):
        GlobalPool("avg")(torch.randn(2, 3))
