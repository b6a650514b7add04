"""core.distance_weighting: inverse-sphere weights, cutoffs, stability at any dimension."""

from __future__ import annotations

import math

import pytest
import torch

from dmlkit.core import distance_weighted_probs, inverse_sphere_log_weights

DIMS = (2, 3, 4, 16, 128, 512, 1024)


@pytest.mark.parametrize("dim", DIMS)
def test_rows_sum_to_one_and_equal_mass_below_the_cutoff(dim: int) -> None:
    d = torch.tensor([[0.1, 0.3, 0.5, 1.0, 1.9, 2.0, 2.5]] * 2, dtype=torch.float64)
    cand = torch.ones_like(d, dtype=torch.bool)
    cand[1, 3] = False
    p = distance_weighted_probs(d, cand, dim)
    assert torch.isfinite(p).all() and (p >= 0).all()
    torch.testing.assert_close(p.sum(1), torch.ones(2, dtype=torch.float64))
    assert p[1, 3] == 0.0
    # everything at or below the lower cutoff (0.5) is equiprobable
    assert p[0, 0].item() == pytest.approx(p[0, 1].item()) == pytest.approx(p[0, 2].item())


@pytest.mark.parametrize("dim", DIMS)
def test_no_nan_at_or_beyond_the_antipode_in_float32(dim: int) -> None:
    d = torch.tensor([[2.0, 2.0 + 1e-7, 3.0, 1.2, 0.0]])
    lw = inverse_sphere_log_weights(d, dim)
    p = distance_weighted_probs(d, torch.ones_like(d, dtype=torch.bool), dim)
    assert torch.isfinite(lw).all() and torch.isfinite(p).all()
    assert p.sum().item() == pytest.approx(1.0, rel=1e-5)


def test_log_weight_formula_and_upper_cutoff() -> None:
    for dim, dist in ((10, 1.0), (3, 0.7), (64, 1.3)):
        lw = inverse_sphere_log_weights(torch.tensor([dist], dtype=torch.float64), dim)
        expected = (2 - dim) * math.log(dist) - (dim - 3) / 2 * math.log(1 - dist * dist / 4)
        assert lw.item() == pytest.approx(expected)
    d = torch.tensor([[0.6, 1.0, 1.39, 1.4, 1.9]], dtype=torch.float64)
    p = distance_weighted_probs(d, torch.ones_like(d, dtype=torch.bool), 128, upper_cutoff=1.4)
    assert (p[0, 3:] == 0).all() and (p[0, :3] > 0).all()
    # in high dimension, 1/q(d) favours near negatives: probabilities fall with distance
    assert p[0, 0] > p[0, 1] > p[0, 2]


def test_empty_rows_and_bad_dimension() -> None:
    d = torch.rand(3, 4, dtype=torch.float64)
    empty = distance_weighted_probs(d, torch.zeros_like(d, dtype=torch.bool), 128)
    assert torch.equal(empty, torch.zeros_like(empty))
    only_far = distance_weighted_probs(
        torch.tensor([[1.8]]), torch.tensor([[True]]), 64, upper_cutoff=1.4
    )
    assert torch.equal(only_far, torch.zeros(1, 1))
    with pytest.raises(ValueError, match="dim: expected an embedding dimension >= 2, got 1"):
        inverse_sphere_log_weights(d, 1)
