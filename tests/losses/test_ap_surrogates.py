"""Average-precision surrogates: loop references, parity with pytorch-metric-learning, gradcheck,
references, miners, multi-hot labels and edge cases."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses

from dmlkit.losses import create, pair_weights
from dmlkit.losses.ap_surrogates import FastAPLoss, PNPLoss, SmoothAPLoss, soft_ranks_ahead
from dmlkit.losses.miners import ThresholdMiner
from tests.losses import ap_refs
from tests.losses.grads import value_and_grad

VARIANTS = ["O", "Ds", "Dq", "Iu", "Ib"]
Reference = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

# (our loss, loop reference on (S, P, N)) at non-default settings that keep the sigmoids soft
LOOP_CASES: dict[str, tuple[Callable[[], torch.nn.Module], Reference]] = {
    "smooth_ap": (lambda: SmoothAPLoss(0.2), lambda s, p, n: ap_refs.smooth_ap(s, p, n, 0.2)),
    "fast_ap": (lambda: FastAPLoss(6), lambda s, p, n: ap_refs.fast_ap(s, p, n, 6)),
    **{
        f"pnp_{v}": (
            (lambda v=v: PNPLoss(v, 0.3, alpha=1.5, b=3.0)),
            (lambda s, p, n, v=v: ap_refs.pnp(s, p, n, 0.3, v, alpha=1.5, b=3.0)),
        )
        for v in VARIANTS
    },
}


def _batch(seed: int, size: int = 9, dim: int = 4, classes: int = 3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(size, dim, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (size,), generator=g)
    return x, y


# ---------------------------------------------------------------- explicit-loop references


@pytest.mark.parametrize("case", sorted(LOOP_CASES))
@pytest.mark.parametrize("seed", [0, 1])
def test_batch_equals_the_loop_reference(case: str, seed: int) -> None:
    make, ref = LOOP_CASES[case]
    x, y = _batch(seed)
    pos, neg = ap_refs.class_masks(y, y, exclude_self=True)
    expected = ref(ap_refs.cosine(x, x), pos, neg)
    torch.testing.assert_close(make()(x, y), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", sorted(LOOP_CASES))
def test_references_and_multi_hot_labels_equal_the_loop_reference(case: str) -> None:
    make, ref = LOOP_CASES[case]
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 4, generator=g, dtype=torch.float64)
    r = torch.randn(7, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([[1, 0, 0], [0, 1, 1], [1, 1, 0], [0, 0, 1], [0, 1, 0]])
    ry = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [0, 1, 1], [1, 0, 0], [0, 0, 1]])
    pos, neg = ap_refs.class_masks(y, ry, exclude_self=False)
    expected = ref(ap_refs.cosine(x, r), pos, neg)
    torch.testing.assert_close(make()(x, y, r, ry), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", sorted(LOOP_CASES))
def test_pairs_a_relation_ignores_are_not_ranked(case: str) -> None:
    # hierarchical relation: same fine label positive, other coarse group negative, same coarse
    # group but other fine label neither (left out of every rank)
    make, ref = LOOP_CASES[case]
    x, _ = _batch(15, size=10)
    fine = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 0, 2])

    def relation(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        same = a[:, None] == b[None, :]
        return same, (a[:, None] // 2) != (b[None, :] // 2)

    loss = make()
    loss.relation_fn = relation
    pos, neg = relation(fine, fine)
    pos = pos & ~torch.eye(10, dtype=torch.bool)
    assert (~pos & ~neg & ~torch.eye(10, dtype=torch.bool)).any()
    torch.testing.assert_close(
        loss(x, fine), ref(ap_refs.cosine(x, x), pos, neg), rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("case", sorted(LOOP_CASES))
def test_a_miner_ranks_among_the_kept_references_only(case: str) -> None:
    make, ref = LOOP_CASES[case]
    x, y = _batch(4, size=10)
    loss = make()
    loss.miner = ThresholdMiner(pos_below=0.5, neg_above=-0.3)
    sim = ap_refs.cosine(x, x)
    pos, neg = ap_refs.class_masks(y, y, exclude_self=True)
    pos, neg = pos & (sim < 0.5), neg & (sim > -0.3)
    assert pos.any() and (~pos & ap_refs.class_masks(y, y, True)[0]).any()  # the miner drops some
    torch.testing.assert_close(loss(x, y), ref(sim, pos, neg), rtol=1e-10, atol=1e-12)


def test_soft_ranks_count_references_ahead_of_each_positive() -> None:
    sim = torch.tensor([[0.9, 0.5, 0.7, 0.1], [0.2, 0.3, 0.8, 0.6]], dtype=torch.float64)
    pos = torch.tensor([[True, True, False, False], [False, False, False, True]])
    neg = torch.tensor([[False, False, True, True], [True, True, True, False]])
    hard = lambda d: (d > 0).to(d.dtype)  # noqa: E731  (the exact rank step)
    rows, ahead_pos, ahead_neg = soft_ranks_ahead(sim, pos, neg, hard)
    assert rows.tolist() == [0, 0, 1]
    assert ahead_pos.tolist() == [0.0, 1.0, 0.0]  # 0.9 first; 0.5 after 0.9
    assert ahead_neg.tolist() == [0.0, 1.0, 1.0]  # 0.7 ahead of 0.5; 0.8 ahead of 0.6


# ---------------------------------------------------------------- parity with PML (float64)


# NO_SELF: self_index = -1 everywhere counts the anchor as its own positive, as PML does
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pnp_matches_pml(variant: str, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(24, 8, generator=g, dtype=torch.float64)
    # every class at least twice: PML adds the anchor to its positives only when it has another
    y = (torch.arange(24) % 5)[torch.randperm(24, generator=g)]
    self_pos = torch.full((24,), -1)  # NO_SELF
    ours = value_and_grad(lambda e: create("pnp", variant=variant)(e, y, self_index=self_pos), x)
    theirs = value_and_grad(lambda e: pml_losses.PNPLoss(variant=variant)(e, y), x)
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_ap_matches_pml(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(24, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (24,), generator=g)
    ours = value_and_grad(lambda e: create("fast_ap")(e, y), x)
    theirs = value_and_grad(lambda e: pml_losses.FastAPLoss()(e, y), x)
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("classes", "per_class"), [(3, 3), (4, 4), (5, 5)])
def test_smooth_ap_matches_pml_where_pml_groups_classes_correctly(
    classes: int, per_class: int
) -> None:
    # PML reshapes the batch into B // (B // classes) groups, which are the classes only when
    # there are as many classes as items per class; it also accumulates AP in float32 (hence the
    # float32 tolerance and result dtype)
    g = torch.Generator().manual_seed(classes)
    x = torch.randn(classes * per_class, 6, generator=g, dtype=torch.float64)
    y = torch.arange(classes).repeat_interleave(per_class)
    self_pos = torch.full((y.numel(),), -1)  # NO_SELF
    ours = value_and_grad(lambda e: create("smooth_ap")(e, y, self_index=self_pos), x)
    theirs = value_and_grad(lambda e: pml_losses.SmoothAPLoss()(e, y), x)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7, check_dtype=False)


def test_smooth_ap_is_right_where_pml_regroups_unequal_shapes() -> None:
    # 4 classes of 3: PML groups 3 blocks of 4; ours equals the loop reference on the classes
    x, _ = _batch(5, size=12)
    y = torch.arange(4).repeat_interleave(3)
    pos, neg = ap_refs.class_masks(y, y, exclude_self=False)
    expected = ap_refs.smooth_ap(ap_refs.cosine(x, x), pos, neg, 0.01)
    ours = create("smooth_ap")(x, y, self_index=torch.full((12,), -1))
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-12)
    assert abs(float(pml_losses.SmoothAPLoss()(x, y)) - float(expected)) > 1e-3


def test_smooth_ap_takes_unequal_class_counts() -> None:
    x, _ = _batch(6, size=9)
    y = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 2])
    pos, neg = ap_refs.class_masks(y, y, exclude_self=True)
    expected = ap_refs.smooth_ap(ap_refs.cosine(x, x), pos, neg, 0.01)
    torch.testing.assert_close(create("smooth_ap")(x, y), expected, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="same number of elements"):
        pml_losses.SmoothAPLoss()(x, y)


@pytest.mark.parametrize("name", ["smooth_ap", "pnp", "fast_ap"])
def test_references_equal_to_the_batch_give_the_batch_loss(name: str) -> None:
    x, y = _batch(7, size=10)
    loss = create(name)
    direct = value_and_grad(lambda e: loss(e, y), x)
    via_ref = value_and_grad(
        lambda e: loss(e, y, e.clone(), y.clone(), self_index=torch.arange(10)), x
    )
    torch.testing.assert_close(via_ref, direct, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- gradients and invariances


@pytest.mark.parametrize("case", sorted(LOOP_CASES))
def test_gradcheck(case: str) -> None:
    make, _ = LOOP_CASES[case]
    x, y = _batch(8, size=6, dim=3, classes=2)
    r = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    ry = torch.tensor([0, 1, 1, 0])
    loss = make()
    assert torch.autograd.gradcheck(lambda e: loss(e, y), (x.requires_grad_(True),))
    assert torch.autograd.gradcheck(lambda e, f: loss(e, y, f, ry), (x, r.requires_grad_(True)))


@pytest.mark.parametrize("name", ["smooth_ap", "pnp", "fast_ap"])
def test_batch_permutation_and_label_renaming_change_nothing(name: str) -> None:
    x, y = _batch(10, size=12)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    loss = create(name)
    torch.testing.assert_close(loss(x[perm], (y[perm] + 7) * 3), loss(x, y))


# ---------------------------------------------------------------- edge cases


@pytest.mark.parametrize("name", ["smooth_ap", "pnp", "fast_ap"])
def test_no_positive_anywhere_gives_a_connected_zero(name: str) -> None:
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    loss = create(name)(x, torch.arange(5))
    loss.backward()
    assert loss.item() == 0.0 and x.grad is not None and not x.grad.any()


@pytest.mark.parametrize("name", ["smooth_ap", "pnp", "fast_ap"])
def test_anchors_without_positives_are_left_out(name: str) -> None:
    # anchors 4 and 5 are alone in their class: the loss is that of the others' rows
    x, _ = _batch(11, size=6)
    y = torch.tensor([0, 0, 1, 1, 2, 3])
    loss = create(name)
    full = loss(x, y)
    rows = loss(x[:4], y[:4], x, y, self_index=torch.arange(4))
    torch.testing.assert_close(full, rows)


@pytest.mark.parametrize("name", ["smooth_ap", "pnp", "fast_ap"])
def test_one_class_is_perfect_precision(name: str) -> None:
    # no negatives: AP is 1 (Smooth-AP, FastAP) and no negative is ahead (PNP): loss 0
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    loss = create(name)(x, torch.zeros(6, dtype=torch.long))
    loss.backward()
    torch.testing.assert_close(loss.detach(), torch.zeros((), dtype=torch.float64))
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("case", sorted(LOOP_CASES))
def test_ties_equal_the_loop_reference(case: str) -> None:
    make, ref = LOOP_CASES[case]
    base = torch.randn(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(12))
    x = base[torch.tensor([0, 0, 0, 1, 1, 0])]  # identical rows: every difference is 0
    y = torch.tensor([0, 0, 1, 1, 0, 1])
    pos, neg = ap_refs.class_masks(y, y, exclude_self=True)
    expected = ref(ap_refs.cosine(x, x), pos, neg)
    x.requires_grad_(True)
    value = make()(x, y)
    value.backward()
    torch.testing.assert_close(value.detach(), expected, rtol=1e-10, atol=1e-12)
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", ["smooth_ap", "pnp", "fast_ap"])
def test_autocast_keeps_similarities_in_float32(name: str) -> None:
    x, y = _batch(13, size=12)
    x32 = x.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = create(name)(x32, y)
    assert under.dtype == torch.float32
    torch.testing.assert_close(under, create(name)(x32, y))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SmoothAPLoss(temperature=0.0), "temperature"),
        (lambda: PNPLoss(variant="X"), "variant"),
        (lambda: PNPLoss(alpha=-1.0), "alpha"),
        (lambda: FastAPLoss(num_bins=0), "num_bins"),
        (lambda: FastAPLoss(num_bins=2.5), "num_bins"),  # type: ignore[arg-type]
        (lambda: SmoothAPLoss(miner="hard"), "miner"),  # type: ignore[arg-type]
    ],
)
def test_bad_settings_are_clear_errors(build: Callable[[], object], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message) as info:
        build()
    assert "expected" in str(info.value)


@pytest.mark.parametrize("name", ["smooth_ap", "pnp", "fast_ap"])
def test_pair_weights_push_every_negative(name: str) -> None:
    # dL/dS: a negative more similar to the anchor never lowers the loss (it can only move
    # ahead of positives); self-pairs, outside the masks, get no weight
    x, y = _batch(14, size=12)
    weights = pair_weights(create(name), x, y)
    neg = y[:, None] != y[None, :]
    assert (weights[neg] >= 0).all() and weights[neg].max() > 0
    assert not weights.diagonal().any()


def test_pair_weights_pull_positives_as_a_whole() -> None:
    # raising all of an anchor's positives together only moves negatives back (Smooth-AP), and
    # PNP, which ranks positives among negatives only, pulls each positive on its own
    x, y = _batch(15, size=12)
    pos = (y[:, None] == y[None, :]) & ~torch.eye(12, dtype=torch.bool)
    smooth = pair_weights(create("smooth_ap", temperature=0.1), x, y)
    assert ((smooth * pos).sum(dim=1) <= 1e-15).all() and (smooth * pos).sum() < 0
    pnp_weights = pair_weights(create("pnp", temperature=0.1), x, y)
    assert (pnp_weights[pos] <= 0).all() and pnp_weights[pos].min() < 0
