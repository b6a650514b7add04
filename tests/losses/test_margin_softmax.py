"""Margin softmax losses: explicit-loop references, PML parity (values and gradients for the
embeddings and the class weights), gradcheck, the margin transforms, edge cases and errors."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses

from dmlkit.losses import (
    AdditiveAngularMargin,
    MarginSoftmaxLoss,
    MultiplicativeAngularMargin,
    Proxies,
    create,
)

C, D = 4, 5
NAMES = ["arcface", "subcenter_arcface", "cosface", "sphereface", "large_margin_softmax", "p2sgrad"]


def batch(seed: int, b: int = 9, c: int = C) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, D, generator=g, dtype=torch.float64) * 2.0
    y = torch.randint(0, c, (b,), generator=g)
    return x, y


def make(name: str, c: int = C, **options: float) -> MarginSoftmaxLoss:
    torch.manual_seed(0)
    loss = create(name, num_classes=c, embedding_dim=D, **options)
    assert isinstance(loss, MarginSoftmaxLoss)
    return loss.double()


# ---- explicit loops: the papers' formulas, sample by sample, class by class ------------------


def psi_arcface(theta: float, m: float) -> float:
    return math.cos(theta + m) if theta <= math.pi - m else math.cos(theta) - m * math.sin(m)


def psi_multiplicative(theta: float, m: int) -> float:
    k = min(math.floor(theta * m / math.pi), m)
    return (-1) ** k * math.cos(m * theta) - 2 * k


def cross_entropy(logits: list[float], label: int) -> float:
    top = max(logits)
    return top + math.log(sum(math.exp(z - top) for z in logits)) - logits[label]


def reference(name: str, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, k: int = 1) -> float:
    """The loss by loops over samples and classes (defaults of each preset)."""
    total = 0.0
    for i in range(x.shape[0]):
        xi = x[i].tolist()
        x_norm = math.sqrt(sum(v * v for v in xi))
        logits, errors = [], []
        for j in range(w.shape[0] // k):
            cosines = []
            for r in range(j * k, (j + 1) * k):
                wr = w[r].tolist()
                w_norm = math.sqrt(sum(v * v for v in wr))
                cosines.append(sum(a * b for a, b in zip(xi, wr, strict=True)) / (x_norm * w_norm))
            cos = max(cosines)
            theta = math.acos(max(-1.0, min(1.0, cos)))
            own = j == int(y[i])
            if name in ("arcface", "subcenter_arcface"):
                logits.append(64.0 * (psi_arcface(theta, 0.5) if own else cos))
            elif name == "cosface":
                logits.append(64.0 * (cos - 0.35 if own else cos))
            elif name == "sphereface":
                logits.append(x_norm * (psi_multiplicative(theta, 4) if own else cos))
            elif name == "large_margin_softmax":
                w_norm = math.sqrt(sum(v * v for v in w[j].tolist()))
                logits.append(x_norm * w_norm * (psi_multiplicative(theta, 4) if own else cos))
            else:  # p2sgrad
                errors.append((cos - (1.0 if own else 0.0)) ** 2)
        total += sum(errors) / len(errors) if errors else cross_entropy(logits, int(y[i]))
    return total / x.shape[0]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_the_explicit_loop(name: str, seed: int) -> None:
    loss = make(name)
    x, y = batch(seed)
    w = loss.proxies.weight.detach()
    expected = reference(name, x, y, w, loss.proxies.per_class)
    assert float(loss(x, y)) == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_arcface_beyond_pi_minus_m_takes_the_linear_branch() -> None:
    """Samples pointing away from their class (θ > π - m) use ``cos θ - m sin m``."""
    loss = make("arcface")
    w = loss.proxies.weight.detach()
    y = torch.tensor([0, 1, 2, 3])
    x = -w[y] + 0.01 * torch.randn(4, D, generator=torch.Generator().manual_seed(3)).double()
    cos = torch.nn.functional.cosine_similarity(x, w[y])
    assert bool((torch.acos(cos) > math.pi - 0.5).all())
    assert float(loss(x, y)) == pytest.approx(reference("arcface", x, y, w), rel=1e-10)


# ---- the margin transforms --------------------------------------------------------------------


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5])
def test_multiplicative_margin_is_continuous_and_decreasing(m: int) -> None:
    theta = torch.linspace(0.0, math.pi, 2001, dtype=torch.float64)
    psi = MultiplicativeAngularMargin(m)(torch.cos(theta))
    expected = torch.tensor([psi_multiplicative(float(t), m) for t in theta], dtype=torch.float64)
    torch.testing.assert_close(psi, expected, rtol=0, atol=1e-9)
    assert bool((psi.diff() < 0).all())
    assert float(psi[-1]) == pytest.approx(1.0 - 2.0 * m)
    assert float(psi.diff().abs().max()) < 2.0 * m * m * math.pi / 2000  # no jump at kπ/m


def test_additive_angular_margin_decreases_with_one_drop_at_pi_minus_m() -> None:
    """As the ArcFace code: decreasing in θ, continuous but for a drop of
    ``cos m + m sin m - 1`` where the linear branch takes over at ``θ = π - m``."""
    m = 0.5
    theta = torch.linspace(0.0, math.pi, 4001, dtype=torch.float64)
    steps = AdditiveAngularMargin(m)(torch.cos(theta)).diff()
    assert bool((steps < 0).all())
    jumps = torch.nonzero(steps.abs() > 2e-3).flatten()
    assert jumps.tolist() == [int(torch.searchsorted(theta, math.pi - m)) - 1]
    drop = math.cos(m) + m * math.sin(m) - 1.0
    assert float(-steps[jumps[0]]) == pytest.approx(drop, abs=2e-3)


def test_arcface_gradient_is_finite_where_the_cosine_is_one() -> None:
    loss = make("arcface")
    x = loss.proxies.weight.detach()[[0, 1]].clone().requires_grad_(True)  # cos = 1 exactly
    loss(x, torch.tensor([0, 1])).backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())


# ---- parity with pytorch-metric-learning -------------------------------------------------------


PEERS: dict[str, Callable[[], torch.nn.Module]] = {
    "arcface": lambda: pml_losses.ArcFaceLoss(C, D, margin=math.degrees(0.5)),
    "subcenter_arcface": lambda: pml_losses.SubCenterArcFaceLoss(
        num_classes=C, embedding_size=D, margin=math.degrees(0.5), sub_centers=3
    ),
    "cosface": lambda: pml_losses.CosFaceLoss(C, D),
    "sphereface": lambda: pml_losses.SphereFaceLoss(C, D),
    "large_margin_softmax": lambda: pml_losses.LargeMarginSoftmaxLoss(C, D),
}


@pytest.mark.parametrize("name", sorted(PEERS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parity_with_pml_values_and_gradients(name: str, seed: int) -> None:
    ours, peer = make(name), PEERS[name]().double()
    peer.W.data = ours.proxies.weight.detach().T.clone()  # PML keeps (D, C K), same column order
    x, y = batch(seed)
    x_ours, x_peer = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    value, peer_value = ours(x_ours, y), peer(x_peer, y)
    value.backward()
    peer_value.backward()
    assert float(value) == pytest.approx(float(peer_value), rel=1e-12)
    torch.testing.assert_close(x_ours.grad, x_peer.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours.proxies.weight.grad, peer.W.grad.T, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_p2sgrad_parity_with_pml(seed: int) -> None:
    """Values and embedding gradients agree; for the (unit) weights ours is PML's gradient
    without its radial part (PML differentiates ``w``, we ``w / |w|``). PML re-normalises with
    ``renorm``, which leaves rows of norm ``1 / (1 + 1e-7)``: agreement to about 1e-7."""
    ours, peer = make("p2sgrad"), pml_losses.P2SGradLoss(D, C).double()
    with torch.no_grad():
        ours.proxies.weight.div_(ours.proxies.weight.norm(dim=1, keepdim=True))
    peer.weight.data = ours.proxies.weight.detach().T.clone()
    x, y = batch(seed)
    x_ours, x_peer = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    value, peer_value = ours(x_ours, y), peer(x_peer, y)
    value.backward()
    peer_value.backward()
    assert float(value) == pytest.approx(float(peer_value), rel=1e-6)
    torch.testing.assert_close(x_ours.grad, x_peer.grad, rtol=1e-6, atol=1e-9)
    w, peer_grad = ours.proxies.weight.detach(), peer.weight.grad.T
    tangent = peer_grad - (peer_grad * w).sum(dim=1, keepdim=True) * w
    torch.testing.assert_close(ours.proxies.weight.grad, tangent, rtol=1e-6, atol=1e-9)
    assert float((ours.proxies.weight.grad * w).sum(dim=1).abs().max()) < 1e-14


# ---- gradcheck ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_embeddings_and_weights(name: str) -> None:
    options = {"scale": 2.0} if name in ("arcface", "subcenter_arcface", "cosface") else {}
    loss = make(name, c=3, **options)
    x, y = batch(5, b=4, c=3)
    x.requires_grad_(True)
    w = loss.proxies.weight.detach().clone().requires_grad_(True)

    def with_weights(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(loss, {"proxies.weight": w}, (x, y))

    assert torch.autograd.gradcheck(with_weights, (x, w), eps=1e-6, atol=1e-6)


# ---- edge cases and errors ---------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_one_class_in_the_batch_matches_the_loop(name: str) -> None:
    loss = make(name)
    x, _ = batch(7)
    y = torch.full((x.shape[0],), 2)
    expected = reference(name, x, y, loss.proxies.weight.detach(), loss.proxies.per_class)
    assert float(loss(x, y)) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_a_single_class_problem_is_zero_and_connected(name: str) -> None:
    loss = make(name, c=1)
    x = batch(0)[0].requires_grad_(True)
    value = loss(x, torch.zeros(x.shape[0], dtype=torch.long))
    value.backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())
    if name != "p2sgrad":  # cross-entropy over one class: 0, gradient 0
        assert float(value) == 0.0 and float(x.grad.abs().max()) == 0.0


@pytest.mark.parametrize("name", NAMES)
def test_label_beyond_the_classes_is_a_clear_error(name: str) -> None:
    x, _ = batch(0, b=3)
    with pytest.raises(ValueError, match=r"labels: expected class ids in 0\.\.3 \(num_classes=4\)"):
        make(name)(x, torch.tensor([0, 1, 4]))


@pytest.mark.parametrize("name", NAMES)
def test_scale_invariance_and_huge_or_zero_rows(name: str) -> None:
    """Direction-only losses ignore the embeddings' scale, also at 1e30 in float32 (overflowing
    ``sqrt(Σ x²)``); a zero row gives finite values and gradients."""
    loss = make(name).float()
    x, y = batch(3)
    x = x.float()
    if name not in ("sphereface", "large_margin_softmax"):
        torch.testing.assert_close(loss(x * 1e30, y), loss(x, y), rtol=1e-5, atol=1e-6)
    x = x.clone()
    x[0] = 0.0
    x.requires_grad_(True)
    value = loss(x, y)
    value.backward()
    assert bool(torch.isfinite(value)) and x.grad is not None and bool(torch.isfinite(x.grad).all())


def test_sphereface_logits_grow_with_the_embedding_norm_even_past_float32_sqrt_range() -> None:
    loss = make("sphereface").float()
    x, y = batch(4)
    x = x.float()
    big = loss.logits(x * 1e30, loss.checked(x, y))
    torch.testing.assert_close(big / 1e30, loss.logits(x, y), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_computes_in_float32(name: str, dtype: torch.dtype) -> None:
    loss = make(name).float()
    x, y = batch(2)
    x = x.float()
    with torch.autocast("cpu", dtype=dtype):
        value = loss(x, y)
    assert value.dtype == torch.float32 and loss.proxies.weight.dtype == torch.float32
    torch.testing.assert_close(value, loss(x, y))


def test_sub_centers_that_coincide_give_arcface() -> None:
    sub, plain = make("subcenter_arcface"), make("arcface")
    with torch.no_grad():
        sub.proxies.assign(plain.proxies.weight[:, None, :].expand(C, 3, D))
    x, y = batch(6)
    assert float(sub(x, y)) == pytest.approx(float(plain(x, y)), rel=1e-12)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("arcface", {"margin": 3.2}, r"margin: expected an angle in radians in \[0, pi\)"),
        ("arcface", {"scale": 0.0}, r"scale: expected a finite value > 0"),
        ("cosface", {"margin": -0.1}, r"margin: expected a finite value >= 0"),
        ("sphereface", {"margin": 2.5}, r"margin: expected a positive int"),
        ("large_margin_softmax", {"margin": 0}, r"margin: expected a positive int"),
        ("subcenter_arcface", {"sub_centers": 0}, r"per_class: expected a positive int"),
    ],
)
def test_bad_options_name_what_was_expected(name: str, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create(name, num_classes=C, embedding_dim=D, **options)


def test_weight_norm_magnitude_needs_one_weight_per_class() -> None:
    with pytest.raises(ValueError, match=r"per_class: expected 1 with magnitude"):
        MarginSoftmaxLoss(C, D, MultiplicativeAngularMargin(4), per_class=2,
                          magnitude="embedding_and_weight")  # fmt: skip


def test_weights_are_proxies_with_their_own_group() -> None:
    loss = make("cosface")
    assert isinstance(loss.proxies, Proxies)
    assert loss.proxies.optimizer_group()["params"] == [loss.proxies.weight]
