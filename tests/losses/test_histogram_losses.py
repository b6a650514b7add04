"""Histogram loss, dynamic soft margin loss and manifold loss: explicit-loop references, parity with
pytorch-metric-learning 2.9 in float64 (values and gradients), gradcheck and edge cases."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses

from dmlkit.losses import DynamicSoftMarginLoss, HistogramLoss, ManifoldLoss, create
from dmlkit.losses.chunks import triplet_chunks

F64 = torch.float64


@contextmanager
def float64_default() -> Iterator[None]:
    """PML's histogram multiplies integer bin indices by a Python float, which takes the default
    dtype; in float64 parity tests that default is float64 too."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _batch(seed: int, b: int = 12, dim: int = 5, classes: int = 4) -> tuple[torch.Tensor, ...]:
    """float64 embeddings with every class present at least twice."""
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(b, dim, generator=g, dtype=F64)
    labels = torch.arange(b) % classes
    return emb, labels[torch.randperm(b, generator=g)]


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True)


def _grads(fn, emb: torch.Tensor) -> tuple[float, torch.Tensor]:
    x = emb.clone().requires_grad_(True)
    loss = fn(x)
    loss.backward()
    return float(loss), x.grad


# ------------------------------------------------------------------ histogram


def _histogram_loop(sims_pos: list[float], sims_neg: list[float], num_bins: int) -> float:
    width = 2.0 / num_bins

    def density(values: list[float]) -> list[float]:
        h = [0.0] * (num_bins + 1)
        for v in values:
            r = min(math.floor((v + 1) / width), num_bins - 1)
            u = (v + 1) / width - r
            h[r] += (1 - u) / len(values)
            h[r + 1] += u / len(values)
        return h

    hp, hn = density(sims_pos), density(sims_neg)
    return sum(hn[r] * sum(hp[: r + 1]) for r in range(num_bins + 1))


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


@pytest.mark.parametrize("num_bins", [10, 37, 100])
def test_histogram_matches_loop_and_pml(num_bins: int) -> None:
    emb, labels = _batch(0, b=14)
    pos, neg = [], []
    for i in range(len(emb)):
        for j in range(i + 1, len(emb)):
            (pos if labels[i] == labels[j] else neg).append(_cos(emb[i], emb[j]))
    want = _histogram_loop(pos, neg, num_bins)
    ours, g_ours = _grads(lambda x: HistogramLoss(num_bins)(x, labels), emb)
    with float64_default():
        theirs, g_theirs = _grads(
            lambda x: pml_losses.HistogramLoss(n_bins=num_bins)(x, labels), emb
        )
    assert ours == pytest.approx(want, abs=1e-12) and ours == pytest.approx(theirs, abs=1e-12)
    assert torch.allclose(g_ours, g_theirs, atol=1e-10) and g_ours.abs().sum() > 0


def test_histogram_with_reference_matches_loop() -> None:
    emb, labels = _batch(1, b=6)
    ref, ref_labels = _batch(2, b=9)
    pos = [_cos(emb[i], ref[j]) for i in range(6) for j in range(9) if labels[i] == ref_labels[j]]
    neg = [_cos(emb[i], ref[j]) for i in range(6) for j in range(9) if labels[i] != ref_labels[j]]
    got = HistogramLoss(20)(emb, labels, ref, ref_labels)
    assert float(got) == pytest.approx(_histogram_loop(pos, neg, 20), abs=1e-12)


def test_histogram_counts_negatives_between_singletons() -> None:
    """Every labelled pair counts (PML leaves out negatives between items without positives)."""
    emb, _ = _batch(3, b=6)
    labels = torch.tensor([0, 0, 1, 2, 3, 3])
    pos = [_cos(emb[0], emb[1]), _cos(emb[4], emb[5])]
    neg = [
        _cos(emb[i], emb[j]) for i in range(6) for j in range(i + 1, 6) if labels[i] != labels[j]
    ]
    assert float(HistogramLoss(25)(emb, labels)) == pytest.approx(
        _histogram_loop(pos, neg, 25), abs=1e-12
    )


def test_histogram_gradcheck() -> None:
    emb, labels = _batch(4, b=8, dim=3)
    ref, ref_labels = _batch(5, b=7, dim=3)
    loss = HistogramLoss(15)
    assert torch.autograd.gradcheck(lambda x: loss(x, labels), (emb.clone().requires_grad_(True),))
    assert torch.autograd.gradcheck(
        lambda x, r: loss(x, labels, r, ref_labels),
        (emb.clone().requires_grad_(True), ref.clone().requires_grad_(True)),
    )


@pytest.mark.parametrize("labels", [torch.zeros(6, dtype=torch.long), torch.arange(6)])
def test_histogram_without_a_side_is_zero_and_connected(labels: torch.Tensor) -> None:
    emb = torch.randn(6, 4, dtype=F64, requires_grad=True)
    loss = HistogramLoss()(emb, labels)
    loss.backward()
    assert float(loss) == 0.0 and emb.grad is not None and not emb.grad.any()


def test_histogram_duplicates_fall_in_the_last_bin() -> None:
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=F64)
    loss = HistogramLoss(10)(emb, torch.tensor([0, 0, 1, 1]))
    # positives at s = 1 (last node), negatives at s = 0: a negative is never more similar
    assert float(loss) == pytest.approx(0.0, abs=1e-12)
    flipped = HistogramLoss(10)(emb, torch.tensor([0, 1, 0, 1]))
    assert float(flipped) == pytest.approx(1.0, abs=1e-12)


def test_histogram_is_float32_under_autocast() -> None:
    emb, labels = _batch(6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = HistogramLoss()(emb.float(), labels)
    assert loss.dtype == torch.float32
    assert float(loss) == pytest.approx(float(HistogramLoss()(emb, labels)), abs=1e-5)


def test_histogram_rejects_bad_bins() -> None:
    for bad in (0, 2.5, -3):
        with pytest.raises(ValueError, match="num_bins: expected an integer >= 1"):
            HistogramLoss(bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------ dynamic soft margin


class LoopDSM:
    """Explicit-loop dynamic soft margin: triplets by three loops, normalised batch histogram."""

    def __init__(self, min_val: float, num_bins: int, momentum: float) -> None:
        self.min_val, self.num_bins, self.momentum = min_val, num_bins, momentum
        self.width = 2 * abs(min_val) / num_bins
        self.hist = [0.0] * num_bins
        self.weights: list[float] = []

    def __call__(self, emb, labels, ref=None, ref_labels=None) -> float:
        ref, ref_labels = (emb, labels) if ref is None else (ref, ref_labels)
        x = _unit(emb)
        y = _unit(ref)
        same = ref is emb
        xs = []
        for a in range(len(x)):
            for p in range(len(y)):
                if (same and p == a) or labels[a] != ref_labels[p]:
                    continue
                for n in range(len(y)):
                    if labels[a] != ref_labels[n]:
                        xs.append(float((x[a] - y[p]).norm() - (x[a] - y[n]).norm()))
        if not xs:
            return 0.0
        batch = [0.0] * self.num_bins
        for v in xs:
            t = min(max((v - self.min_val) / self.width, 0.0), self.num_bins - 1)
            k = min(math.floor(t), self.num_bins - 2)
            batch[k] += (1 - (t - k)) / len(xs)
            batch[k + 1] += (t - k) / len(xs)
        m = self.momentum if sum(self.hist) != 0 else 1.0
        mixed = [(1 - m) * h + m * b for h, b in zip(self.hist, batch, strict=True)]
        self.hist = [h / sum(mixed) for h in mixed]
        cdf = [sum(self.hist[: k + 1]) for k in range(self.num_bins)]
        weight = [
            cdf[math.floor(min(max((v - self.min_val) / self.width, 0), self.num_bins - 1))]
            for v in xs
        ]
        self.weights = weight
        return sum(w * v for w, v in zip(weight, xs, strict=True)) / len(xs)


@pytest.mark.parametrize(("num_bins", "momentum"), [(10, 0.01), (25, 0.3), (40, 1.0)])
def test_dsm_matches_loop_over_steps(num_bins: int, momentum: float) -> None:
    ours = DynamicSoftMarginLoss(-2.0, num_bins, momentum)
    loop = LoopDSM(-2.0, num_bins, momentum)
    for step in range(3):
        emb, labels = _batch(10 + step, b=9, classes=3)
        assert float(ours(emb, labels)) == pytest.approx(loop(emb, labels), abs=1e-12)
        assert torch.allclose(ours.hist, torch.tensor(loop.hist, dtype=F64), atol=1e-12)


def _pml_dsm(num_bins: int, momentum: float) -> torch.nn.Module:
    """PML's loss with its histogram update fed detached values (constant weights)."""
    loss = pml_losses.DynamicSoftMarginLoss(num_bins=num_bins, momentum=momentum)
    update = loss.update_histogram
    loss.update_histogram = lambda data: update(data.detach())  # type: ignore[method-assign]
    return loss


@pytest.mark.parametrize("with_ref", [False, True])
def test_dsm_matches_pml_values_and_gradients(with_ref: bool) -> None:
    """Momentum 1 (and every first batch): PML's values; gradients with weights held constant."""
    ours = DynamicSoftMarginLoss(num_bins=30, momentum=1.0)
    theirs = _pml_dsm(30, 1.0)
    for step in range(3):
        emb, labels = _batch(20 + step, b=10, classes=3)
        ref, ref_labels = _batch(30 + step, b=8, classes=4) if with_ref else (None, None)
        r = ref.clone().requires_grad_(True) if with_ref else None
        rr = ref.clone().requires_grad_(True) if with_ref else None
        a, ga = _grads(lambda x, r=r, y=labels, ry=ref_labels: ours(x, y, r, ry), emb)
        b, gb = _grads(lambda x, r=rr, y=labels, ry=ref_labels: theirs(x, y, None, r, ry), emb)
        assert a == pytest.approx(b, abs=1e-12)
        assert torch.allclose(ga, gb, atol=1e-12) and ga.abs().sum() > 0
        if with_ref:
            assert torch.allclose(r.grad, rr.grad, atol=1e-12)
        assert torch.allclose(ours.hist, theirs.hist_, atol=1e-12)


def test_dsm_first_step_matches_pml_at_default_settings() -> None:
    emb, labels = _batch(40)
    ours = create("dynamic_soft_margin")
    theirs = pml_losses.DynamicSoftMarginLoss()
    # PML indexes past its 10 bins for x >= 1.6; this batch stays below
    assert float(ours(emb, labels)) == pytest.approx(float(theirs(emb, labels)), abs=1e-12)


def test_dsm_chunks_give_the_same_loss() -> None:
    import dmlkit.losses.dynamic_soft_margin as dsm

    emb, labels = _batch(41)
    whole = float(DynamicSoftMarginLoss(num_bins=20)(emb, labels))
    original = dsm.triplet_chunks
    dsm.triplet_chunks = lambda pos, neg: triplet_chunks(pos, neg, budget=5)  # type: ignore[assignment]
    try:
        small = float(DynamicSoftMarginLoss(num_bins=20)(emb, labels))
    finally:
        dsm.triplet_chunks = original
    assert whole == pytest.approx(small, abs=1e-14)


@pytest.mark.parametrize("budget", [1, 7, 1000])
def test_triplet_chunks_list_every_triplet_once(budget: int) -> None:
    g = torch.Generator().manual_seed(3)
    pos = torch.rand(9, 11, generator=g) < 0.3
    neg = ~pos & (torch.rand(9, 11, generator=g) < 0.6)
    got = [
        (ap // 11, ap % 11, an % 11)
        for aps, ans in triplet_chunks(pos, neg, budget)
        for ap, an in zip(aps.tolist(), ans.tolist(), strict=True)
        if ap // 11 == an // 11
    ]
    assert len(got) == sum(len(c[0]) for c in triplet_chunks(pos, neg, budget))
    want = [
        (a, p, n) for a in range(9) for p in range(11) for n in range(11) if pos[a, p] and neg[a, n]
    ]
    assert sorted(got) == want and len(got) == len(set(got)) and want


def test_dsm_gradient_is_the_weighted_mean_with_constant_weights() -> None:
    """The CDF weights are constants by design, so the gradient is that of ``Σ w x / T`` with ``w``
    fixed (a plain gradcheck would also differentiate the histogram); checked against loops."""
    emb, labels = _batch(42, b=7, dim=3, classes=3)
    loop = LoopDSM(-2.0, 12, 1.0)
    loop(emb, labels)
    x = emb.clone().requires_grad_(True)
    u = x / x.norm(dim=1, keepdim=True)
    terms = [
        (u[a] - u[p]).norm() - (u[a] - u[n]).norm()
        for a in range(7)
        for p in range(7)
        if p != a and labels[a] == labels[p]
        for n in range(7)
        if labels[a] != labels[n]
    ]
    reference = sum(w * t for w, t in zip(loop.weights, terms, strict=True)) / len(terms)
    reference.backward()
    _, grad = _grads(lambda e: DynamicSoftMarginLoss(num_bins=12, momentum=1.0)(e, labels), emb)
    assert torch.allclose(grad, x.grad, atol=1e-12) and grad.abs().sum() > 0


def test_dsm_extreme_triplets_use_the_last_node() -> None:
    """x near 2 (positive opposite, negative identical) is clamped, where PML indexes out of range."""
    emb = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 1e-9]], dtype=F64, requires_grad=True)
    loss = DynamicSoftMarginLoss(num_bins=10, momentum=1.0)(emb, torch.tensor([0, 0, 1]))
    loss.backward()
    # anchor 0: x = 2 - 1e-9 with weight CDF[last] = 1; anchor 1: x = 0
    assert float(loss) == pytest.approx(1.0, abs=1e-6) and torch.isfinite(emb.grad).all()


@pytest.mark.parametrize("labels", [torch.zeros(5, dtype=torch.long), torch.arange(5)])
def test_dsm_without_triplets_is_zero_and_keeps_the_histogram(labels: torch.Tensor) -> None:
    loss_fn = DynamicSoftMarginLoss()
    emb = torch.randn(5, 3, dtype=F64, requires_grad=True)
    loss = loss_fn(emb, labels)
    loss.backward()
    assert float(loss) == 0.0 and not emb.grad.any() and not loss_fn.hist.any()


def test_dsm_is_float32_under_autocast() -> None:
    emb, labels = _batch(45)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = DynamicSoftMarginLoss(num_bins=16)(emb.float(), labels)
    want = DynamicSoftMarginLoss(num_bins=16)(emb, labels)
    assert loss.dtype == torch.float32 and float(loss) == pytest.approx(float(want), abs=1e-5)


def test_dsm_histogram_is_saved_state() -> None:
    emb, labels = _batch(43)
    a = DynamicSoftMarginLoss(num_bins=16)
    a(emb, labels)
    b = DynamicSoftMarginLoss(num_bins=16)
    b.load_state_dict(a.state_dict())
    emb2, labels2 = _batch(44)
    assert float(a(emb2, labels2)) == float(b(emb2, labels2))


def test_dsm_rejects_bad_settings() -> None:
    for kwargs, msg in (
        ({"min_val": 0.5}, "min_val: expected a value < 0"),
        ({"num_bins": 1}, "num_bins: expected an integer >= 2"),
        ({"momentum": 0.0}, "momentum: expected a finite value > 0"),
        ({"momentum": 1.5}, r"momentum: expected a value in \(0, 1\]"),
    ):
        with pytest.raises(ValueError, match=msg):
            DynamicSoftMarginLoss(**kwargs)


# ------------------------------------------------------------------ manifold


def _manifold_reference(
    emb, proxies, labels, lam, alpha, margin, temp=0.5, terms=400
) -> torch.Tensor:
    """Random-walk series ``F = (1 - α) Σ_k (α S̄)^k`` and explicit loops for the two terms."""
    nodes = torch.cat([_unit(emb), _unit(proxies)])
    n, b = len(nodes), len(emb)
    w = torch.zeros(n, n, dtype=F64)
    for i in range(n):
        for j in range(n):
            if i != j:
                w[i, j] = torch.exp(torch.clamp(nodes[i] @ nodes[j], min=0) / temp)
    deg = w.sum(dim=1)
    s_bar = w / torch.sqrt(deg[:, None] * deg[None, :])
    f, power = torch.zeros(n, n, dtype=F64), torch.eye(n, dtype=F64)
    for _ in range(terms):
        f = f + power
        power = alpha * s_bar @ power
    f = (1 - alpha) * f

    def term(z: torch.Tensor) -> torch.Tensor:
        total = torch.zeros((), dtype=F64)
        for i in range(b):
            acc = torch.ones((), dtype=F64)
            for c in range(z.shape[1]):
                x = z[i, c] - z[i, labels[i]] + margin
                if c != labels[i] and x >= 0:
                    acc = acc + torch.exp(x)
            total = total + torch.log(acc)
        return total / b

    ctx = torch.stack(
        [
            torch.stack(
                [f[i] @ f[b + c] / (f[i].norm() * f[b + c].norm()) for c in range(len(proxies))]
            )
            for i in range(b)
        ]
    )
    return term(f[:b, b:]) + lam * term(ctx)


@pytest.mark.parametrize(
    ("lam", "alpha", "margin"), [(1.0, 0.8, 5e-4), (0.0, 0.5, 0.01), (2.5, 0.9, 0.0)]
)
def test_manifold_matches_series_reference(lam: float, alpha: float, margin: float) -> None:
    emb, labels = _batch(50, b=8, dim=4, classes=3)
    loss_fn = ManifoldLoss(3, 4, lam, alpha, margin).double()
    got = loss_fn(emb, labels)
    want = _manifold_reference(emb, loss_fn.proxies.weight.detach(), labels, lam, alpha, margin)
    assert float(got) == pytest.approx(float(want), abs=1e-10) and float(got) > 0


@pytest.mark.parametrize(("lam", "margin"), [(1.0, 5e-4), (0.3, 0.02)])
def test_manifold_matches_pml_values_and_gradients(lam: float, margin: float) -> None:
    """PML inverts in float32, so parity holds to about 1e-6."""
    emb, labels = _batch(51, b=10, dim=5, classes=4)
    ours = ManifoldLoss(4, 5, lambda_c=lam, margin=margin).double()
    theirs = pml_losses.ManifoldLoss(l=5, K=4, lambdaC=lam, margin=margin).double()
    theirs.proxies.data = ours.proxies.weight.detach().clone()
    a, ga = _grads(lambda x: ours(x, labels), emb)
    b, gb = _grads(lambda x: theirs(x, None, indices_tuple=labels), emb)
    assert a == pytest.approx(b, abs=1e-6) and torch.allclose(ga, gb, atol=1e-6)
    assert ga.abs().sum() > 0
    assert torch.allclose(ours.proxies.weight.grad, theirs.proxies.grad, atol=1e-6)


def test_manifold_gradcheck() -> None:
    emb, labels = _batch(52, b=6, dim=3, classes=3)
    loss_fn = ManifoldLoss(3, 3, margin=0.05).double()
    assert torch.autograd.gradcheck(
        lambda x: loss_fn(x, labels), (emb.clone().requires_grad_(True),)
    )


def test_manifold_is_float32_under_autocast_and_trains_proxies() -> None:
    emb, labels = _batch(53)
    loss_fn = ManifoldLoss(4, 5)
    x = emb.float().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = loss_fn(x, labels)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert loss_fn.proxies.weight.grad is not None and loss_fn.proxies.weight.grad.abs().sum() > 0


def test_manifold_rejects_bad_settings_and_labels() -> None:
    for kwargs, msg in (
        ({"alpha": 1.0}, r"alpha: expected a value in \(0, 1\)"),
        ({"lambda_c": -1.0}, "lambda_c: expected a finite value >= 0"),
        ({"lambda_c": math.inf}, "lambda_c: expected a finite value >= 0"),
        ({"temperature": 0.0}, "temperature: expected a finite value > 0"),
    ):
        with pytest.raises(ValueError, match=msg):
            ManifoldLoss(3, 4, **kwargs)
    with pytest.raises(ValueError, match="expected"):
        ManifoldLoss(3, 4)(torch.randn(4, 4), torch.tensor([0, 1, 2, 3]))


def test_new_losses_are_registered_with_family_and_source() -> None:
    from dmlkit.losses import LOSSES

    for name in ("histogram", "dynamic_soft_margin", "manifold"):
        info = LOSSES.info(name)
        assert info.family and info.source
