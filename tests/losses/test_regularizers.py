"""Regularizers and ``Regularized``: explicit loops, PML parity in float64 (alone and added to a
loss, on embeddings and on class weights), gradcheck, errors, and ``loss.regularizers`` in a
config that trains."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import regularizers as pml_regularizers

from dmlkit.config import ConfigError, load_config
from dmlkit.losses import (
    REGULARIZERS,
    CenterInvariantRegularizer,
    LpRegularizer,
    RegularFaceRegularizer,
    Regularized,
    Regularizer,
    SoftTripleLoss,
    SparseCentersRegularizer,
    ZeroMeanRegularizer,
    create,
)
from tests.tiny_demo import TINY_DEMO


def rows(seed: int, n: int = 6, d: int = 4) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---- explicit loops ----------------------------------------------------------------------------


def norm(v: list[float], p: float = 2.0) -> float:
    return sum(abs(a) ** p for a in v) ** (1.0 / p)


def cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (norm(a) * norm(b))


def ref_lp(x: list[list[float]], p: float, power: float) -> float:
    return sum(norm(r, p) ** power for r in x) / len(x)


def ref_zero_mean(x: list[list[float]]) -> float:
    return sum(abs(sum(r)) for r in x) / len(x)


def ref_center_invariant(x: list[list[float]]) -> float:
    squares = [norm(r) ** 2 for r in x]
    mean = sum(squares) / len(squares)
    return sum((s - mean) ** 2 / 4.0 for s in squares) / len(squares)


def ref_regular_face(x: list[list[float]], k: int) -> float:
    return sum(
        max(cos(x[i], x[j]) for j in range(len(x)) if j // k != i // k) for i in range(len(x))
    ) / len(x)


def ref_sparse_centers(x: list[list[float]], k: int, eps: float) -> float:
    classes = len(x) // k
    total = 0.0
    for c in range(classes):
        for a in range(k):
            for b in range(a + 1, k):
                total += math.sqrt(2.0 + eps - 2.0 * cos(x[c * k + a], x[c * k + b]))
    return total / (classes * k * (k - 1))


CASES = [
    ("lp", LpRegularizer(), 1, lambda x: ref_lp(x, 2.0, 1.0)),
    ("lp_p3_q2", LpRegularizer(p=3.0, power=2.0), 1, lambda x: ref_lp(x, 3.0, 2.0)),
    ("zero_mean", ZeroMeanRegularizer(), 1, ref_zero_mean),
    ("center_invariant", CenterInvariantRegularizer(), 1, ref_center_invariant),
    ("regular_face", RegularFaceRegularizer(), 1, lambda x: ref_regular_face(x, 1)),
    ("regular_face_k2", RegularFaceRegularizer(), 2, lambda x: ref_regular_face(x, 2)),
    ("sparse_centers", SparseCentersRegularizer(), 2, lambda x: ref_sparse_centers(x, 2, 1e-5)),
    ("sparse_centers_k3", SparseCentersRegularizer(eps=0.1), 3,
     lambda x: ref_sparse_centers(x, 3, 0.1)),
]  # fmt: skip


@pytest.mark.parametrize(("case", "reg", "k", "ref"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_the_explicit_loop(case: str, reg: Regularizer, k: int, ref, seed: int) -> None:
    x = rows(seed)
    assert float(reg(x, k)) == pytest.approx(ref(x.tolist()), rel=1e-12)


@pytest.mark.parametrize(("case", "reg", "k", "ref"), CASES, ids=[c[0] for c in CASES])
def test_gradcheck(case: str, reg: Regularizer, k: int, ref) -> None:
    x = rows(2).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: reg(t, k), (x,), eps=1e-6, atol=1e-7)


# ---- parity with pytorch-metric-learning -------------------------------------------------------

PEERS = {
    "lp": (LpRegularizer(), pml_regularizers.LpRegularizer(), 1),
    "lp_p1_q3": (LpRegularizer(p=1.0, power=3.0), pml_regularizers.LpRegularizer(p=1, power=3), 1),
    "zero_mean": (ZeroMeanRegularizer(), pml_regularizers.ZeroMeanRegularizer(), 1),
    "center_invariant": (
        CenterInvariantRegularizer(), pml_regularizers.CenterInvariantRegularizer(), 1
    ),
    "regular_face": (RegularFaceRegularizer(), pml_regularizers.RegularFaceRegularizer(), 1),
    # PML's epsilon is the dtype's smallest normal number
    "sparse_centers": (
        SparseCentersRegularizer(eps=torch.finfo(torch.float64).tiny),
        pml_regularizers.SparseCentersRegularizer(num_classes=3, centers_per_class=2),
        2,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(PEERS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parity_with_pml(case: str, seed: int) -> None:
    ours, peer, k = PEERS[case]
    x_ours, x_peer = rows(seed).requires_grad_(True), rows(seed).requires_grad_(True)
    value, peer_value = ours(x_ours, k), peer(x_peer)
    value.backward()
    peer_value.backward()
    assert float(value) == pytest.approx(float(peer_value), rel=1e-12)
    torch.testing.assert_close(x_ours.grad, x_peer.grad, rtol=1e-10, atol=1e-13)


def batch(seed: int, c: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 5, generator=g, dtype=torch.float64), torch.randint(
        0, c, (8,), generator=g
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_regularized_loss_matches_pml_loss_with_both_regularizers(seed: int) -> None:
    """CosFace + 0.01 Lp(embeddings) + 0.1 RegularFace(weights) against PML's CosFaceLoss with an
    embedding and a weight regularizer: values and gradients for embeddings and weights."""
    torch.manual_seed(0)
    base = create("cosface", num_classes=4, embedding_dim=5)
    ours = Regularized(base, [(LpRegularizer(), 0.01), (RegularFaceRegularizer(), 0.1)]).double()
    peer = pml_losses.CosFaceLoss(
        4, 5,
        embedding_regularizer=pml_regularizers.LpRegularizer(), embedding_reg_weight=0.01,
        weight_regularizer=pml_regularizers.RegularFaceRegularizer(), weight_reg_weight=0.1,
    ).double()  # fmt: skip
    peer.W.data = base.proxies.weight.detach().T.clone()
    x, y = batch(seed)
    x_ours, x_peer = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    value, peer_value = ours(x_ours, y), peer(x_peer, y)
    value.backward()
    peer_value.backward()
    assert float(value) == pytest.approx(float(peer_value), rel=1e-12)
    assert float(value) != pytest.approx(float(base(x, y)), rel=1e-3)  # the terms count
    torch.testing.assert_close(x_ours.grad, x_peer.grad, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(base.proxies.weight.grad, peer.W.grad.T, rtol=1e-10, atol=1e-13)


def test_soft_triple_spread_is_the_sparse_centers_regularizer() -> None:
    loss = create("soft_triple", num_classes=3, embedding_dim=5, per_class=4)
    assert isinstance(loss, SoftTripleLoss)
    weight = loss.proxies.weight.detach()
    expected = ref_sparse_centers(weight.double().tolist(), 4, 1e-5)
    assert float(loss.center_spread()) == pytest.approx(expected, rel=1e-5)
    assert float(SparseCentersRegularizer()(weight, 4)) == pytest.approx(expected, rel=1e-5)


# ---- the wrapper: targets, shapes, errors --------------------------------------------------------


def test_weight_regularizers_act_on_the_proxies_of_any_proxy_loss() -> None:
    torch.manual_seed(0)
    base = create("proxy_anchor", num_classes=4, embedding_dim=5, per_class=2)
    wrapped = Regularized(base, [(SparseCentersRegularizer(), 0.5), (ZeroMeanRegularizer(), 2.0)])
    x, y = batch(3)
    x = x.float()
    weight = base.proxies.weight.detach().double().tolist()
    expected = float(base(x, y)) + 0.5 * ref_sparse_centers(weight, 2, 1e-5)
    expected += 2.0 * ref_zero_mean(x.double().tolist())
    assert float(wrapped(x, y)) == pytest.approx(expected, rel=1e-5)


def test_lp_on_weights_and_zero_rows() -> None:
    torch.manual_seed(0)
    base = create("arcface", num_classes=3, embedding_dim=5)
    wrapped = Regularized(base, [(LpRegularizer(target="weights"), 1.0), (LpRegularizer(), 1.0)])
    x = torch.zeros(4, 5, requires_grad=True)
    value = wrapped(x, torch.tensor([0, 1, 2, 0]))
    expected = float(base(x, torch.tensor([0, 1, 2, 0]))) + ref_lp(
        base.proxies.weight.detach().double().tolist(), 2.0, 1.0
    )
    assert float(value) == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())


def test_penalties_are_float32_under_autocast() -> None:
    x = rows(0).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = RegularFaceRegularizer()(x)
    assert value.dtype == torch.float32
    assert float(value) == pytest.approx(ref_regular_face(x.double().tolist(), 1), rel=1e-6)


def test_weight_regularizer_on_a_loss_without_proxies_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"RegularFaceRegularizer acts on class weights: expected"):
        Regularized(create("ms"), [(RegularFaceRegularizer(), 0.1)])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: CenterInvariantRegularizer(target="embeddings"),
            r"target: expected one of \('weights',\)",
        ),
        (
            lambda: LpRegularizer(target="proxies"),
            r"target: expected one of \('embeddings', 'weights'\)",
        ),
        (lambda: LpRegularizer(p=0.5), r"p: expected a value >= 1"),
        (lambda: LpRegularizer(power=-1.0), r"power: expected a finite value > 0"),
        (lambda: SparseCentersRegularizer(eps=0.0), r"eps: expected a finite value > 0"),
        (lambda: RegularFaceRegularizer()(rows(0)[:1]), r"expected at least 2 classes"),
        (lambda: SparseCentersRegularizer()(rows(0), 1), r"expected at least 2 proxies per class"),
        (lambda: SparseCentersRegularizer()(rows(0), 4), r"per_class: expected a divisor"),
        (lambda: Regularized(create("ms"), [(LpRegularizer(), 0.0)]), r"weight: expected a finite"),
        (lambda: Regularized(create("ms"), [(LpRegularizer(), math.nan)]), r"weight: expected"),
        (lambda: Regularized(create("ms"), [("lp", 1.0)]), r"expected a Regularizer"),  # type: ignore[list-item]
    ],
)
def test_bad_regularizers_name_what_was_expected(make, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_every_regularizer_names_its_family_and_source() -> None:
    assert REGULARIZERS.names() == [
        "center_invariant", "lp", "regular_face", "sparse_centers", "zero_mean",
    ]  # fmt: skip
    assert all(
        REGULARIZERS.info(n).family and REGULARIZERS.info(n).source for n in REGULARIZERS.names()
    )


# ---- config ------------------------------------------------------------------------------------

TRAIN = [
    *TINY_DEMO,
    "train.steps=2",
    "train.eval_every=0",
    "eval.before=false",
    "train.progress=false",
    "output.report=false",
    "eval.metrics=[recall]",
    "eval.ks=[1]",
    "eval.select_metric=recall@1",
]


def config(tmp_path: Path, *extra: str):
    return load_config(None, [*TRAIN, f"output.dir={tmp_path}", *extra])


def test_configured_regularizers_train(tmp_path: Path, one_torch_thread: None) -> None:
    from dmlkit.training import Trainer

    cfg = config(
        tmp_path, "loss.name=arcface", "loss.options={}",
        "loss.regularizers=[{name: lp, weight: 0.01}, "
        "{name: regular_face, weight: 0.1}, {name: zero_mean, options: {target: weights}}]",
    )  # fmt: skip
    trainer = Trainer(cfg, tmp_path / "run")
    assert isinstance(trainer.loss_fn, Regularized)
    assert trainer.loss_fn.weights == [0.01, 0.1, 1.0]
    assert [r.target for r in trainer.loss_fn.regularizers] == ["embeddings", "weights", "weights"]
    groups = {g["name"] for g in trainer.optimizer.param_groups}
    assert "proxies" in groups
    before = trainer.loss_fn.loss.proxies.weight.detach().clone()
    metrics = trainer.fit()
    assert math.isfinite(metrics["final"]["recall@1"])
    assert not torch.equal(before, trainer.loss_fn.loss.proxies.weight.detach())


@pytest.mark.parametrize(
    ("regularizers", "message"),
    [
        ("[{name: l3, weight: 0.1}]", r"loss.regularizers\[0\].name: expected one of center_inv"),
        ("[{name: lp, weight: 0.1}, {name: lp, weight: -1}]",
         r"loss.regularizers\[1\].weight: expected a finite positive value, got -1"),
        ("[{name: lp, weight: 0}]", r"loss.regularizers\[0\].weight: expected a finite positive"),
        ("[{name: lp, wieght: 0.1}]", r"loss.regularizers\[0\]: unknown key\(s\) 'wieght'"),
        ("[{name: lp, options: {q: 2}}]",
         r"loss.regularizers\[0\].options: unknown option\(s\) \['q'\] for regularizer 'lp'"),
        ("[{name: lp, options: {target: proxies}}]", r"loss.regularizers\[0\].options: target: expected"),
        ("[{name: regular_face}]", r"loss.regularizers: RegularFaceRegularizer acts on class"),
    ],
)  # fmt: skip
def test_bad_configured_regularizers_are_config_errors(
    tmp_path: Path, regularizers: str, message: str
) -> None:
    from dmlkit.training.build import build_loss

    with pytest.raises(ConfigError, match=message):
        cfg = config(tmp_path, f"loss.regularizers={regularizers}")  # loss: ms (no proxies)
        build_loss(cfg.loss, num_classes=4, embedding_dim=8)


def test_configured_regularizers_round_trip_through_the_saved_config(tmp_path: Path) -> None:
    from dmlkit.config import RegularizerConfig, save_config

    cfg = config(tmp_path, "loss.regularizers=[{name: lp, weight: 1e-3, options: {p: 1}}]")
    assert cfg.loss.regularizers == [RegularizerConfig("lp", 1e-3, {"p": 1})]
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
