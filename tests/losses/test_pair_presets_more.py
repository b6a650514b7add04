"""The extended presets (supcon, ntxent, nca, instance, intra_pair_variance, snr_contrastive,
tuplet_margin, tcm) and the angular loss: loop references with and without a reference set,
gradcheck, parity with pytorch-metric-learning (float64, values and gradients), edge cases."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from pair_refs_more import REFERENCES, cosine, snr
from pair_refs_more import instance as instance_ref
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses

from dmlkit.losses import LOSSES, AngularLoss, PairLoss, create
from tests.losses.grads import value_and_grad

NAMES = sorted(REFERENCES)
ALL = [*NAMES, "instance"]


def batch(seed: int, size: int = 10, dim: int = 5, classes: int = 3) -> tuple[torch.Tensor, list]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(size, dim, generator=g, dtype=torch.float64)
    return x, torch.randint(0, classes, (size,), generator=g).tolist()


def test_registered_with_family_and_source() -> None:
    for name in ALL:
        info = LOSSES.info(name)
        assert info.family and info.source, name
    assert all(isinstance(create(n), PairLoss) for n in ALL if n != "angular")
    assert isinstance(create("angular"), AngularLoss)


def hand_placed() -> tuple[torch.Tensor, list[int]]:
    """Eight 3-D points on a spiral, off the unit sphere, four classes (one of three)."""
    pts = []
    for k, a in enumerate([0, 20, 40, 70, 100, 150, 200, 300]):
        rad = math.radians(a)
        pts.append([math.cos(rad) * (1 + 0.1 * k), math.sin(rad), 0.3 * k - 1.0])
    return torch.tensor(pts, dtype=torch.float64), [0, 0, 1, 1, 2, 2, 3, 0]


@pytest.mark.parametrize("name", NAMES)
def test_matches_loop_reference_hand_placed(name: str) -> None:
    x, y = hand_placed()
    ours = create(name)(x, torch.tensor(y)).item()
    assert ours == pytest.approx(REFERENCES[name](x, y), rel=1e-9, abs=1e-12)
    assert ours > 0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_loop_reference_random(name: str, seed: int) -> None:
    x, y = batch(seed)
    ours = create(name)(x, torch.tensor(y)).item()
    assert ours == pytest.approx(REFERENCES[name](x, y), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_matches_loop_reference_with_ref_emb(name: str) -> None:
    x, y = batch(3, size=7, dim=4)
    r, ry = batch(4, size=9, dim=4)
    ours = create(name)(x, torch.tensor(y), r, torch.tensor(ry)).item()
    assert ours == pytest.approx(REFERENCES[name](x, y, (r, ry)), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_instance_matches_loop_reference(seed: int) -> None:
    x, _ = batch(seed, size=7, dim=4)
    y = [5, 2, 5, 9, 2, 2, 7]  # arbitrary ids: the target column is the rank among {2, 5, 7, 9}
    for gamma in (64.0, 2.0):
        ours = create("instance", gamma=gamma)(x, torch.tensor(y)).item()
        assert ours == pytest.approx(instance_ref(x, y, gamma), rel=1e-9)


@pytest.mark.parametrize("name", ALL)
def test_gradcheck(name: str) -> None:
    x, _ = batch(5, size=6, dim=3)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    loss = create(name, gamma=2.0) if name == "instance" else create(name)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda e: loss(e, y), (x,))


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_with_ref_emb(name: str) -> None:
    x, _ = batch(6, size=5, dim=3)
    r, _ = batch(7, size=6, dim=3)
    y, ry = torch.tensor([0, 0, 1, 1, 2]), torch.tensor([0, 1, 1, 2, 2, 0])
    loss = create(name)
    x.requires_grad_(True)
    r.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda e, f: loss(e, y, f, ry), (x, r))


PML: dict[str, tuple[Callable, Callable]] = {
    "supcon": (
        lambda: create("supcon", temperature=0.1, reduction="mean_nonzero"),
        lambda: pml_losses.SupConLoss(temperature=0.1),
    ),
    "ntxent": (lambda: create("ntxent", temperature=0.07), lambda: pml_losses.NTXentLoss(0.07)),
    "nca": (
        lambda: create("nca", scale=1.0),
        lambda: pml_losses.NCALoss(
            distance=pml_distances.LpDistance(normalize_embeddings=False, power=2)
        ),
    ),
    "nca_pml_default": (
        lambda: create("nca", similarity="cosine", scale=2.0),
        lambda: pml_losses.NCALoss(softmax_scale=1.0),
    ),
    "intra_pair_variance": (
        lambda: create("intra_pair_variance", pos_eps=0.05, neg_eps=0.02),
        lambda: pml_losses.IntraPairVarianceLoss(pos_eps=0.05, neg_eps=0.02),
    ),
    "snr_contrastive": (
        lambda: create("snr_contrastive", pos_margin=0.1, neg_margin=1.2),
        lambda: pml_losses.SignalToNoiseRatioContrastiveLoss(
            pos_margin=0.1,
            neg_margin=1.2,
            distance=pml_distances.SNRDistance(normalize_embeddings=False),
        ),
    ),
    "tuplet_margin": (
        lambda: create("tuplet_margin", margin=5.73, scale=32.0),
        lambda: pml_losses.TupletMarginLoss(margin=5.73, scale=32.0),
    ),
    "angular": (lambda: create("angular", alpha=40.0), lambda: pml_losses.AngularLoss(alpha=40)),
    "tcm": (lambda: create("tcm"), lambda: pml_losses.ThresholdConsistentMarginLoss()),
}
# PML's AngularLoss multiplies by the raw reference rows: compare on unit rows
UNIT_INPUT = {"angular"}
# PML 2.9's ThresholdConsistentMarginLoss indexes the batch with reference indices under ref_emb
NO_REF_PARITY = {"tcm"}


def _pml_inputs(case: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(40, 12, generator=g, dtype=torch.float64)
    return x, torch.randint(0, 6, (40,), generator=g)


def _prepare(case: str) -> Callable[[torch.Tensor], torch.Tensor]:
    return (lambda e: F.normalize(e, dim=1)) if case in UNIT_INPUT else (lambda e: e)


@pytest.mark.parametrize("case", sorted(PML))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parity_with_pml(case: str, seed: int) -> None:
    ours, theirs = PML[case][0](), PML[case][1]()
    x, y = _pml_inputs(case, seed)
    prep = _prepare(case)
    v1, g1 = value_and_grad(lambda e: ours(prep(e), y), x)
    v2, g2 = value_and_grad(lambda e: theirs(prep(e), y), x)
    torch.testing.assert_close(v1, v2, rtol=1e-7, atol=1e-12)
    torch.testing.assert_close(g1, g2, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("case", sorted(set(PML) - NO_REF_PARITY))
@pytest.mark.parametrize("seed", [0, 1])
def test_parity_with_pml_ref_emb(case: str, seed: int) -> None:
    ours, theirs = PML[case][0](), PML[case][1]()
    x, y = _pml_inputs(case, seed)
    r, ry = _pml_inputs(case, seed + 10)
    r, ry = r[:25], ry[:25]
    both = torch.cat([x, r])
    prep = _prepare(case)
    v1, g1 = value_and_grad(lambda e: ours(prep(e[:40]), y, prep(e[40:]), ry), both)
    v2, g2 = value_and_grad(
        lambda e: theirs(prep(e[:40]), y, ref_emb=prep(e[40:]), ref_labels=ry), both
    )
    torch.testing.assert_close(v1, v2, rtol=1e-7, atol=1e-12)
    torch.testing.assert_close(g1, g2, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("seed", [0, 1])
def test_instance_parity_with_pml(seed: int) -> None:
    x, y = _pml_inputs("instance", seed)
    v1, g1 = value_and_grad(lambda e: create("instance", gamma=16.0)(e, y), x)
    v2, g2 = value_and_grad(lambda e: pml_losses.InstanceLoss(gamma=16)(e, y), x)
    torch.testing.assert_close(v1, v2, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(g1, g2, rtol=1e-7, atol=1e-12)


def test_snr_similarity_matches_pml_distance() -> None:
    x, _ = batch(8, size=6, dim=5)
    r, _ = batch(9, size=4, dim=5)
    dist = pml_distances.SNRDistance(normalize_embeddings=False)
    sim = create("snr_contrastive").similarity
    torch.testing.assert_close(sim(x, r), -dist(x, r), rtol=1e-12, atol=1e-12)
    expected = [[-snr(x[i], r[j]) for j in range(4)] for i in range(6)]
    torch.testing.assert_close(sim(x, r), torch.tensor(expected, dtype=torch.float64))


def REFERENCE_SNR(a: torch.Tensor, b: torch.Tensor) -> float:
    from pair_refs_more import snr

    return snr(a, b)


# anchors need a positive (and, for the per-positive-pair forms, a negative) to contribute
NEEDS_POSITIVE = {"supcon", "ntxent", "nca", "tuplet_margin", "angular"}


@pytest.mark.parametrize("name", sorted(NEEDS_POSITIVE))
def test_no_positive_pair_gives_zero_connected(name: str) -> None:
    x, _ = batch(10, size=5, dim=3)
    x.requires_grad_(True)
    loss = create(name)(x, torch.arange(5))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert x.grad is not None and torch.count_nonzero(x.grad) == 0


@pytest.mark.parametrize("name", ["ntxent", "tuplet_margin", "angular", "nca"])
def test_one_class_gives_zero(name: str) -> None:
    x, _ = batch(11, size=5, dim=3)
    assert create(name)(x, torch.zeros(5, dtype=torch.long)).item() == pytest.approx(0.0, abs=0)


def test_supcon_one_class_still_pulls_positives_together() -> None:
    # PML returns 0 without negatives; ours keeps LSE_P - mean_P (documented)
    x, _ = batch(12, size=5, dim=3)
    y = [0] * 5
    value = create("supcon")(x, torch.tensor(y)).item()
    assert value > 0 and value == pytest.approx(REFERENCES["supcon"](x, y), rel=1e-12)


@pytest.mark.parametrize("name", ["intra_pair_variance", "snr_contrastive", "tcm"])
def test_one_sided_batches_charge_the_side_present(name: str) -> None:
    x, _ = batch(13, size=6, dim=4)
    for y in ([0, 1, 2, 3, 4, 5], [0] * 6):
        assert create(name)(x, torch.tensor(y)).item() == pytest.approx(
            REFERENCES[name](x, y), rel=1e-9, abs=1e-15
        )


@pytest.mark.parametrize("name", ALL)
def test_batch_permutation_and_label_renaming(name: str) -> None:
    x, y = batch(14, size=9, dim=4)
    labels = torch.tensor(y)
    loss = create(name)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(0))
    base = loss(x, labels)
    if name != "instance":  # instance: a column is a class by its position in the batch
        torch.testing.assert_close(loss(x[perm], labels[perm]), base, rtol=1e-12, atol=1e-12)
    # renaming labels by an increasing map keeps the order of the distinct labels
    torch.testing.assert_close(loss(x, labels * 7 + 3), base, rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_multi_hot_labels_of_single_classes_equal_class_ids(name: str) -> None:
    x, y = batch(15, size=8, dim=4)
    labels = torch.tensor(y)
    loss = create(name)
    torch.testing.assert_close(
        loss(x, F.one_hot(labels, 3)), loss(x, labels), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("name", ALL)
def test_float32_under_bfloat16_autocast(name: str) -> None:
    x, y = batch(16, size=8, dim=4)
    emb = x.to(torch.bfloat16)
    loss = create(name)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(emb, torch.tensor(y))
    assert value.dtype == torch.float32 and torch.isfinite(value)
    assert value.item() == pytest.approx(loss(emb.float(), torch.tensor(y)).item(), rel=1e-5)


def test_tuplet_duplicates_have_finite_gradients() -> None:
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], requires_grad=True)
    loss = create("tuplet_margin")(x, torch.tensor([0, 0, 1, 1]))
    loss.backward()
    assert torch.isfinite(loss) and x.grad is not None and torch.isfinite(x.grad).all()


def test_instance_refuses_what_it_cannot_mean() -> None:
    x, y = batch(17, size=6, dim=3)
    loss = create("instance")
    with pytest.raises(ValueError, match="ref_emb: expected None"):
        loss(x, torch.tensor(y), x.clone(), torch.tensor(y))
    with pytest.raises(ValueError, match="labels: expected class ids"):
        loss(x, F.one_hot(torch.tensor(y), 3))
    with pytest.raises(ValueError, match=r"chunk_size: expected None.*ranks"):
        loss.chunked(2)


@pytest.mark.parametrize(
    "name,kwargs,message",
    [
        ("supcon", {"temperature": 0.0}, "temperature: expected a finite value > 0"),
        ("ntxent", {"temperature": -1.0}, "temperature: expected a finite value > 0"),
        ("nca", {"scale": 0.0}, "scale: expected a finite value > 0"),
        ("angular", {"alpha": 90.0}, r"alpha: expected an angle in degrees in \(0, 90\)"),
        ("tuplet_margin", {"scale": 0.0}, "scale: expected a finite value > 0"),
        ("intra_pair_variance", {"pos_eps": -0.1}, "pos_eps: expected a finite value >= 0"),
        ("supcon", {"reduction": "avg"}, "reduction: expected one of"),
    ],
)
def test_bad_hyperparameters_are_clear_errors(name: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create(name, **kwargs)


def test_snr_refuses_constant_rows() -> None:
    x, y = batch(18, size=4, dim=3)
    x[2] = 0.7
    with pytest.raises(ValueError, match=r"emb: expected rows with a non-zero variance.*rows 2"):
        create("snr_contrastive")(x, torch.tensor(y))


def test_intra_pair_variance_refuses_chunks_naming_the_reason() -> None:
    with pytest.raises(ValueError, match=r"chunk_size.*mean over all pairs of the batch"):
        create("intra_pair_variance").chunked(4)


def test_cosine_reference_helper_is_the_cosine() -> None:
    a, b = torch.tensor([3.0, 4.0]), torch.tensor([4.0, 3.0])
    assert cosine(a, b) == pytest.approx(24.0 / 25.0)
