"""Proxy losses: explicit-loop references, gradcheck, PML parity, proxies under autocast and in
checkpoints, input errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses

from dmlkit.config import OptimizerConfig
from dmlkit.core import lipschitz_normalize
from dmlkit.losses import Proxies, ProxyLoss, create
from dmlkit.training import load_checkpoint, save_checkpoint
from dmlkit.training.optim import parameter_groups
from tests.losses import proxy_refs as ref

C, D = 5, 6


def batch(seed: int, b: int = 10, d: int = D, c: int = C) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, c, (b,), generator=g)
    y[:2] = torch.tensor([0, 0])  # at least one class with two samples
    return x, y


def make(name: str, k: int, **kwargs: float) -> ProxyLoss:
    loss = create(name, num_classes=C, embedding_dim=D, per_class=k, **kwargs)
    assert isinstance(loss, ProxyLoss)
    return loss.double()


REFERENCES: dict[str, tuple[dict, Callable]] = {
    "proxy_nca": ({}, lambda x, y, p, k: ref.proxy_softmax(x, y, p, k, 2.0, False)),
    "proxy_nca_excl": (
        {"exclude_positives": True, "temperature": 0.5},
        lambda x, y, p, k: ref.proxy_softmax(x, y, p, k, 4.0, True),
    ),
    "proxy_nca_pp": ({}, lambda x, y, p, k: ref.proxy_softmax(x, y, p, k, 18.0, False)),
    "normalized_softmax": ({}, lambda x, y, p, k: ref.proxy_softmax(x, y, p, k, 20.0, False)),
    "proxy_anchor": ({}, lambda x, y, p, k: ref.proxy_anchor(x, y, p, k, 0.1, 32.0)),
    "proxy_anchor_m": (
        {"margin": 0.3, "alpha": 4.0},
        lambda x, y, p, k: ref.proxy_anchor(x, y, p, k, 0.3, 4.0),
    ),
    "soft_triple": ({}, lambda x, y, p, k: ref.soft_triple(x, y, p, k, 20.0, 0.1, 0.2, 0.01)),
    "soft_triple_p": (
        {"scale": 5.0, "gamma": 0.5, "tau": 1.0, "margin": 0.2},
        lambda x, y, p, k: ref.soft_triple(x, y, p, k, 5.0, 0.5, 1.0, 0.2),
    ),
    # gamma < 1/80: the softmax over the centres is shifted by its max (no overflow of e^(S/gamma))
    "soft_triple_s": (
        {"gamma": 0.01},
        lambda x, y, p, k: ref.soft_triple(x, y, p, k, 20.0, 0.01, 0.2, 0.01),
    ),
}


def _name(case: str) -> str:
    return case.removesuffix("_excl").removesuffix("_m").removesuffix("_p").removesuffix("_s")


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("case", sorted(REFERENCES))
def test_matches_the_explicit_loop(case: str, k: int) -> None:
    kwargs, reference = REFERENCES[case]
    loss = make(_name(case), k, **kwargs)
    x, y = batch(k)
    expected = reference(x, y.tolist(), loss.proxies.weight.detach(), k)
    assert float(loss(x, y).detach()) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("case", sorted(REFERENCES))
def test_gradcheck_embeddings_and_proxies(case: str) -> None:
    kwargs, _ = REFERENCES[case]
    loss = make(_name(case), 2, **kwargs)
    x, y = batch(3, b=6)
    x.requires_grad_(True)

    def fn(emb: torch.Tensor, proxies: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(loss, {"proxies.weight": proxies}, (emb, y))

    proxies = loss.proxies.weight.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (x, proxies))


PML: dict[str, tuple[Callable, Callable, Callable]] = {
    # ours, PML's, and how PML stores a (C, D) proxy matrix
    "proxy_nca": (
        lambda: make("proxy_nca", 1),
        lambda: pml_losses.ProxyNCALoss(C, D),
        lambda m: m.proxies,
    ),
    "proxy_nca_scale": (
        lambda: make("proxy_nca", 1, temperature=0.25),
        lambda: pml_losses.ProxyNCALoss(C, D, softmax_scale=4.0),
        lambda m: m.proxies,
    ),
    "proxy_anchor": (
        lambda: make("proxy_anchor", 1),
        lambda: pml_losses.ProxyAnchorLoss(C, D),
        lambda m: m.proxies,
    ),
    "proxy_anchor_m": (
        lambda: make("proxy_anchor", 1, margin=0.2, alpha=8.0),
        lambda: pml_losses.ProxyAnchorLoss(C, D, margin=0.2, alpha=8.0),
        lambda m: m.proxies,
    ),
    "normalized_softmax": (
        lambda: make("normalized_softmax", 1, temperature=0.1),
        lambda: pml_losses.NormalizedSoftmaxLoss(C, D, temperature=0.1),
        lambda m: m.W.T,
    ),
    "soft_triple": (
        lambda: make("soft_triple", 4, tau=0.0),
        lambda: pml_losses.SoftTripleLoss(C, D, centers_per_class=4),
        lambda m: m.fc.T,
    ),
    "soft_triple_p": (
        lambda: make("soft_triple", 3, scale=10.0, gamma=0.3, tau=0.0, margin=0.1),
        lambda: pml_losses.SoftTripleLoss(C, D, centers_per_class=3, la=10, gamma=0.3, margin=0.1),
        lambda m: m.fc.T,
    ),
}


@pytest.mark.parametrize("case", sorted(PML))
@pytest.mark.parametrize("seed", [0, 1])
def test_parity_with_pml_values_and_gradients(case: str, seed: int) -> None:
    build_ours, build_pml, pml_view = PML[case]
    ours, theirs = build_ours(), build_pml().double()
    with torch.no_grad():
        pml_view(theirs).copy_(ours.proxies.weight)
    x, y = batch(seed, b=16)
    values, grads = [], []
    for loss, params in ((ours, [ours.proxies.weight]), (theirs, list(theirs.parameters()))):
        emb = x.clone().requires_grad_(True)
        value = loss(emb, y)
        g_emb, g_prox = torch.autograd.grad(value, [emb, params[0]])
        values.append(value.detach())
        grads.append((g_emb, g_prox))
    torch.testing.assert_close(values[0], values[1], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-7, atol=1e-10)
    g_pml_prox = grads[1][1] if grads[1][1].shape == grads[0][1].shape else grads[1][1].T
    torch.testing.assert_close(grads[0][1], g_pml_prox, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("name", ["proxy_nca", "proxy_anchor", "soft_triple", "normalized_softmax"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_proxies_stay_float32_under_autocast_and_get_gradients(
    name: str, dtype: torch.dtype
) -> None:
    loss = create(name, num_classes=C, embedding_dim=D, per_class=2)
    net = torch.nn.Linear(D, D)
    x, y = batch(5)
    with torch.autocast("cpu", dtype=dtype):
        emb = net(x.float())
        assert emb.dtype == dtype
        value = loss(emb, y)
    value.backward()
    weight = loss.proxies.weight
    assert weight.dtype == torch.float32 and weight.device.type == "cpu"
    assert value.dtype == torch.float32 and torch.isfinite(value)
    assert weight.grad is not None and weight.grad.dtype == torch.float32
    assert weight.grad.abs().sum() > 0


def test_checkpoint_restores_the_proxies_exactly(tmp_path: Path) -> None:
    loss = create("soft_triple", num_classes=C, embedding_dim=D, per_class=3)
    with torch.no_grad():
        loss.proxies.weight.add_(torch.randn_like(loss.proxies.weight))
    save_checkpoint({"loss": loss.state_dict()}, tmp_path / "c.pt")
    fresh = create("soft_triple", num_classes=C, embedding_dim=D, per_class=3)
    assert not torch.equal(fresh.proxies.weight, loss.proxies.weight)
    fresh.load_state_dict(load_checkpoint(tmp_path / "c.pt")["loss"])
    assert torch.equal(fresh.proxies.weight, loss.proxies.weight)
    assert list(fresh.state_dict()) == ["proxies.weight"]


def test_proxies_have_their_own_optimizer_group() -> None:
    loss = create("proxy_anchor", num_classes=C, embedding_dim=D, proxy_lr=0.5)

    class Model(torch.nn.Linear):
        def param_groups(self, backbone_lr: float, head_lr: float, wd: float) -> list[dict]:
            return [{"name": "head", "params": list(self.parameters()), "lr": head_lr}]

    config = OptimizerConfig(lr=0.1, weight_decay=1e-4, loss_weight_decay=1e-3)
    groups = {g["name"]: g for g in parameter_groups(config, Model(2, 2), loss)}
    assert set(groups) == {"head", "proxies"}
    assert groups["proxies"]["params"] == [loss.proxies.weight]
    assert (groups["proxies"]["lr"], groups["proxies"]["weight_decay"]) == (0.5, 0.0)


def test_proxies_layout_and_assign() -> None:
    proxies = Proxies(3, 2, 4)
    assert proxies.labels.tolist() == [0, 0, 1, 1, 2, 2]
    values = torch.arange(24.0).view(3, 2, 4)
    proxies.assign(values)
    assert torch.equal(proxies.per_class_view(), values)
    assert torch.equal(proxies()[3], values[1, 1])
    with pytest.raises(ValueError, match=r"values: expected shape \(3, 2, 4\)"):
        proxies.assign(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="finite"):
        proxies.assign(torch.full((3, 2, 4), float("nan")))
    with pytest.raises(ValueError, match="per_class: expected a positive int, got 0"):
        Proxies(3, 0, 4)


@pytest.mark.parametrize("name", ["proxy_nca", "proxy_anchor", "soft_triple"])
def test_bad_inputs_name_what_was_expected(name: str) -> None:
    loss = create(name, num_classes=C, embedding_dim=D)
    x, y = batch(0)
    x = x.float()
    with pytest.raises(ValueError, match=r"labels: expected class ids in 0\.\.4"):
        loss(x, torch.full_like(y, C))
    with pytest.raises(ValueError, match="emb: expected dimension 6"):
        loss(x[:, :4], y)
    with pytest.raises(TypeError, match="labels"):
        loss(x, y.float())
    with pytest.raises(ValueError, match=r"labels: expected class ids of shape \(B,\)"):
        loss(x, torch.nn.functional.one_hot(y, C))
    with pytest.raises(ValueError, match="emb"):
        loss(torch.full_like(x, float("nan")), y)


@pytest.mark.parametrize("name", ["proxy_nca", "proxy_anchor", "soft_triple", "proxy_nca_pp"])
def test_one_class_batch_and_large_inputs_are_finite(name: str) -> None:
    loss = create(name, num_classes=C, embedding_dim=D, per_class=2)
    x = torch.randn(8, D) * 1e4
    x.requires_grad_(True)
    value = loss(x, torch.full((8,), 3))
    value.backward()
    assert torch.isfinite(value) and x.grad is not None and torch.isfinite(x.grad).all()


def test_lipschitz_normalize_is_identity_inside_the_ball() -> None:
    x = torch.tensor([[0.3, 0.4], [3.0, 4.0], [0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    out = lipschitz_normalize(x)
    assert out.tolist() == [[0.3, 0.4], [0.6, 0.8], [0.0, 0.0]]
    (jac_inside,) = torch.autograd.grad(out[0, 0], x, retain_graph=True)
    assert jac_inside.tolist() == [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
    assert torch.autograd.gradcheck(lipschitz_normalize, (x.detach()[:2].clone().requires_grad_(),))


@pytest.mark.parametrize("name", ["proxy_nca", "proxy_anchor", "soft_triple"])
def test_float64_embeddings_with_float32_proxies_compute_in_float64(name: str) -> None:
    loss = create(name, num_classes=C, embedding_dim=D, per_class=2)
    x, y = batch(4)
    value = loss(x, y)
    assert value.dtype == torch.float64
    reference = loss.double()(x, y)
    torch.testing.assert_close(value, reference, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("gamma", [0.1, 0.01])
def test_soft_triple_graphs_alive_together_and_retained_backward(gamma: float) -> None:
    """SoftTriple reuses scratch memory between calls: two graphs built before either backward
    (gradient accumulation) and a second backward through a retained graph must still give the
    gradients of separate calls."""
    loss = make("soft_triple", 3, gamma=gamma)
    (x1, y1), (x2, y2) = batch(5), batch(6)

    def grads(*pairs: tuple[torch.Tensor, torch.Tensor]) -> list[torch.Tensor]:
        xs = [x.clone().requires_grad_(True) for x, _ in pairs]
        total = sum(loss(x, y) for x, (_, y) in zip(xs, pairs, strict=True))
        total.backward()
        out = [x.grad for x in xs] + [loss.proxies.weight.grad.clone()]
        loss.proxies.weight.grad = None
        return out

    apart = [grads((x1, y1)), grads((x2, y2))]
    together = grads((x1, y1), (x2, y2))
    torch.testing.assert_close(together[0], apart[0][0], rtol=0, atol=1e-12)
    torch.testing.assert_close(together[1], apart[1][0], rtol=0, atol=1e-12)
    torch.testing.assert_close(together[2], apart[0][1] + apart[1][1], rtol=0, atol=1e-12)

    x = x1.clone().requires_grad_(True)
    value = loss(x, y1)
    first = torch.autograd.grad(value, x, retain_graph=True)[0]
    loss(x2, y2)  # another call in between uses the same scratch memory
    second = torch.autograd.grad(value, x)[0]
    torch.testing.assert_close(second, first, rtol=0, atol=0)
