"""Ranked list loss: loop reference, parity with pytorch-metric-learning, gradcheck, edge cases."""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses

from dmlkit.losses import create, pair_weights
from dmlkit.losses.ranked_list import WeightedRankedListAggregator
from tests.losses.grads import value_and_grad

pytestmark = pytest.mark.filterwarnings("ignore:Values of Tp or Tn are too high")


def reference(
    x: torch.Tensor,
    y: torch.Tensor,
    margin: float,
    alpha: float,
    t_pos: float,
    t_neg: float,
    imbalance: float,
) -> torch.Tensor:
    """Loops over anchors and pairs; distances of the unit vectors."""
    u = [row / row.norm() for row in x]
    total = torch.zeros((), dtype=torch.float64)
    for i in range(len(u)):
        sides = []
        for want_pos, temp in ((True, t_pos), (False, t_neg)):
            num = torch.zeros((), dtype=torch.float64)
            den = torch.zeros((), dtype=torch.float64)
            for j in range(len(u)):
                if j == i or bool(y[i] == y[j]) != want_pos:
                    continue
                d = (u[i] - u[j]).norm()
                loss = d - (alpha - margin) if want_pos else alpha - d
                if loss > 0:
                    w = torch.exp(temp * loss)
                    num, den = num + w * loss, den + w
            sides.append(num / den if den > 0 else num)
        total = total + (1 - imbalance) * sides[0] + imbalance * sides[1]
    return total / len(u)


def _batch(seed: int, size: int = 10, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(size, 5, generator=g, dtype=torch.float64)
    return x, torch.randint(0, classes, (size,), generator=g)


@pytest.mark.parametrize(
    "settings",
    [
        {"margin": 0.4, "alpha": 1.2, "temp_pos": 0.0, "temp_neg": 10.0, "imbalance": 0.5},
        {"margin": 0.6, "alpha": 1.0, "temp_pos": 3.0, "temp_neg": 2.0, "imbalance": 0.3},
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_equals_the_loop_reference(settings: dict[str, float], seed: int) -> None:
    x, y = _batch(seed)
    expected = reference(
        x,
        y,
        settings["margin"],
        settings["alpha"],
        settings["temp_pos"],
        settings["temp_neg"],
        settings["imbalance"],
    )
    torch.testing.assert_close(create("ranked_list", **settings)(x, y), expected)


@pytest.mark.parametrize("t_pos", [0.0, 2.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_pml_up_to_its_denominator_smoothing(t_pos: float, seed: int) -> None:
    # PML adds 1e-5 per reference to each side's sum of weights: with B = 24 and at least one
    # unit weight per active side the relative change is below 24e-5; nothing else differs
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(24, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (24,), generator=g)
    ours = value_and_grad(lambda e: create("ranked_list", temp_pos=t_pos)(e, y), x)
    theirs = value_and_grad(
        lambda e: pml_losses.RankedListLoss(margin=0.4, Tn=10.0, Tp=t_pos)(e, y), x
    )
    torch.testing.assert_close(ours[0], theirs[0], rtol=2.4e-4, atol=0.0)
    scale = theirs[1].abs().max()
    torch.testing.assert_close(ours[1] / scale, theirs[1] / scale, rtol=0.0, atol=2.4e-4)
    assert not torch.equal(ours[0], theirs[0])  # the smoothing is real, and the only gap


def test_gradcheck() -> None:
    x, y = _batch(3, size=7)
    loss = create("ranked_list", temp_pos=1.5, margin=0.8, alpha=1.3)
    assert torch.autograd.gradcheck(lambda e: loss(e, y), (x.requires_grad_(True),))


def test_references_follow_the_engine() -> None:
    x, y = _batch(4, size=8)
    loss = create("ranked_list")
    direct = loss(x, y)
    torch.testing.assert_close(loss(x, y, x.clone(), y.clone(), self_index=torch.arange(8)), direct)


def test_anchors_without_positives_still_push_negatives() -> None:
    # all labels distinct: only the negative side, λ times the mean over anchors
    x, _ = _batch(5, size=6)
    y = torch.arange(6)
    expected = reference(x, y, 0.4, 1.2, 0.0, 10.0, 0.5)
    value = create("ranked_list")(x, y)
    assert value > 0
    torch.testing.assert_close(value, expected)


def test_one_class_pulls_only_positives_beyond_the_boundary() -> None:
    # opposite unit vectors: d = 2 > α - m = 0.8, no negatives: (1 - λ)(2 - 0.8)
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    y = torch.zeros(2, dtype=torch.long)
    value = create("ranked_list")(x, y)
    torch.testing.assert_close(value.detach(), torch.tensor(0.5 * (2.0 - 0.8), dtype=torch.float64))
    x2 = torch.tensor([[1.0, 0.0], [1.0, 1e-3]], dtype=torch.float64, requires_grad=True)
    close = create("ranked_list")(x2, y)  # within α - m: nothing to do
    close.backward()
    assert close.item() == 0.0 and x2.grad is not None and not x2.grad.any()


def test_duplicate_negatives_are_finite() -> None:
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [3.0, -1.0]], dtype=torch.float64, requires_grad=True)
    value = create("ranked_list")(x, torch.tensor([0, 1, 1]))
    value.backward()
    assert math.isfinite(value.item()) and x.grad is not None and torch.isfinite(x.grad).all()
    # d = 0 is the largest violation, α: each duplicate's negative side is α, times λ
    assert value.item() > 0.5 * 1.2 * 2 / 3 - 1e-9


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"imbalance": 1.5}, "imbalance"),
        ({"temp_neg": -1.0}, "temp_neg"),
        ({"reduction": "median"}, "reduction"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WeightedRankedListAggregator(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alpha"):
        create("ranked_list", alpha=-1.0)


def test_pair_weights_sit_on_the_violating_pairs() -> None:
    x, y = _batch(6, size=12)
    weights = pair_weights(create("ranked_list"), x, y)
    u = torch.nn.functional.normalize(x, dim=1)
    dist = torch.cdist(u, u)
    same = y[:, None] == y[None, :]
    eye = torch.eye(12, dtype=torch.bool)
    violating = (same & ~eye & (dist > 0.8)) | (~same & (dist < 1.2))
    assert violating.any() and (~violating).any()
    assert not weights[~violating].any()
    # T_p = 0: a plain mean, every violating positive is pulled
    assert (weights[violating & same] < 0).all()
    # the softmax weights carry gradient: per anchor the violating negatives are pushed as a
    # whole (the derivative of a softmax-weighted mean sums to 1), though one far below the
    # weighted mean can get a small pull
    push = (weights * (violating & ~same)).sum(dim=1)
    has_neg = (violating & ~same).any(dim=1)
    assert (push[has_neg] > 0).all()


def test_autocast_keeps_similarities_in_float32() -> None:
    x, y = _batch(7, size=12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = create("ranked_list")(x.float(), y)
    assert under.dtype == torch.float32
    torch.testing.assert_close(under, create("ranked_list")(x.float(), y))
