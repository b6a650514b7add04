"""CCP: the loss composition, the round logic on a stub trainer, and a real run that resumes
exactly."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from tiny_demo import TINY_DEMO
from torch import Tensor, nn

from dmlkit.config import load_config
from dmlkit.core import lipschitz_normalize
from dmlkit.losses import create
from dmlkit.methods import CCPLoss, CCPRounds, greedy_k_center
from dmlkit.methods.ccp import candidate_indices, pool_size, proxy_centroid_cosine
from dmlkit.training import BatchEnd, Callback, Trainer, load_checkpoint

C, D, K = 4, 6, 2


def batch(seed: int, b: int = 8) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, D, generator=g, dtype=torch.float64)
    y = torch.arange(b) % C
    return x, y


def c1_reference(x: Tensor, y: list[int], refs: Tensor | None, ref_y: list[int], m: float) -> float:
    """XBM-form contrastive on dot products: (1/B)[Σ_pos (1 - s)_+ + Σ_neg (s - m)_+]."""
    same = refs is None
    r = x if same else refs
    total = 0.0
    for i in range(x.shape[0]):
        for j in range(r.shape[0]):
            if same and i == j:
                continue
            s = float(x[i] @ r[j])
            total += max(1.0 - s, 0.0) if y[i] == ref_y[j] else max(s - m, 0.0)
    return total / x.shape[0]


def test_loss_is_weighted_batch_term_plus_proxy_term_on_lipschitz_normalised_vectors() -> None:
    base = create("contrastive", pos_margin=1.0, neg_margin=0.5, similarity="dot")
    loss = CCPLoss(base, C, D, per_class=K).double()
    x, y = batch(0)
    x = x * torch.linspace(0.1, 2.0, 8, dtype=torch.float64)[:, None]  # some rows inside the ball
    z = lipschitz_normalize(x)
    proxies = lipschitz_normalize(loss.proxies.weight.detach())
    labels = y.tolist()
    expected = 0.1 * c1_reference(z, labels, None, labels, 0.5) + c1_reference(
        z, labels, proxies, loss.proxies.labels.tolist(), 0.5
    )
    assert float(loss(x, y).detach()) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("base", ["ms", "triplet", "dro_topk", "contrastive"])
def test_composition_and_gradcheck_for_any_reference_loss(base: str) -> None:
    options = {"triplet": {"similarity": "neg_euclidean"}, "dro_topk": {"k": 12}}
    inner = create(base, **options.get(base, {"similarity": "dot"}))
    loss = CCPLoss(inner, C, D, per_class=K, pair_weight=0.3, proxy_weight=0.7).double()
    x, y = batch(1)
    z = lipschitz_normalize(x)
    p = lipschitz_normalize(loss.proxies.weight)
    expected = 0.3 * inner(z, y) + 0.7 * inner(z, y, p, loss.proxies.labels)
    torch.testing.assert_close(loss(x, y), expected, rtol=1e-12, atol=1e-12)

    def fn(emb: Tensor, proxies: Tensor) -> Tensor:
        return torch.func.functional_call(loss, {"proxies.weight": proxies}, (emb, y))

    emb = x.clone().requires_grad_(True)
    prox = loss.proxies.weight.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (emb, prox))


def test_bases_without_references_and_bad_labels_are_refused() -> None:
    with pytest.raises(
        TypeError, match=r"base: expected a loss with forward\(emb, labels, ref_emb"
    ):
        CCPLoss(create("proxy_anchor", num_classes=C, embedding_dim=D), C, D)
    loss = CCPLoss(create("ms"), C, D)
    with pytest.raises(ValueError, match=r"labels: expected class ids in 0\.\.3"):
        loss(torch.randn(4, D), torch.tensor([0, 1, 2, 4]))


def test_candidate_pool_draws_each_class_without_repeats_until_exhausted() -> None:
    labels = torch.tensor([0, 1, 1, 2, 2, 2, 2, 2, 1, 0, 1, 1])
    index = candidate_indices(labels, 3, 4, torch.Generator().manual_seed(0))
    assert index.shape == (3, 4)
    assert all((labels[index[c]] == c).all() for c in range(3))
    assert len(set(index[1].tolist())) == 4 and len(set(index[2].tolist())) == 4
    assert sorted(index[0].tolist()) == [0, 0, 9, 9]
    assert (pool_size(12, 8), pool_size(7, 4), pool_size(3, 4)) == (12, 7, 12)
    with pytest.raises(ValueError, match="every one of the 4 classes"):
        candidate_indices(labels, 4, 2, torch.Generator())


class StubTrainer:
    """The TrainerView of a linear model on fixed features: embeddings are ``model(features)``."""

    def __init__(self, loss: CCPLoss, items_per_class: int = 5) -> None:
        g = torch.Generator().manual_seed(3)
        self.model = nn.Linear(5, D)
        self.loss_fn = loss
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.scaler = torch.amp.GradScaler("cpu", enabled=False)
        self.device = torch.device("cpu")
        self.step = 0
        self.features = torch.randn(C * items_per_class, 5, generator=g)
        self.train_labels = torch.arange(C).repeat_interleave(items_per_class)
        self.embedded: list[list[int]] = []

    def embed_train_items(self, indices: Sequence[int]) -> Tensor:
        self.embedded.append(list(indices))
        with torch.no_grad():
            return self.model(self.features[list(indices)])

    def train_a_little(self) -> None:
        with torch.no_grad():
            for p in self.model.parameters():
                p.add_(0.01)
        self.step += 1


def rounds(**options: object) -> tuple[CCPRounds, StubTrainer]:
    loss = CCPLoss(create("ms"), C, D, per_class=K)
    callback = CCPRounds(loss, pool=3, patience=3, **options)  # type: ignore[arg-type]
    trainer = StubTrainer(loss)
    callback.on_train_start(trainer)
    return callback, trainer


def run_metrics(callback: CCPRounds, trainer: StubTrainer, values: list[float]) -> list[int]:
    """Feed the validation metric sequence; return the evaluation numbers (1-based) that switched."""
    switched = []
    for n, value in enumerate(values, start=1):
        trainer.train_a_little()
        before = callback.round
        callback.on_eval(trainer, "val", {"map@r": value})
        callback.on_eval(trainer, "test", {"map@r": 1.0})  # other splits are ignored
        if callback.round != before:
            switched.append(n)
    return switched


def test_initial_proxies_are_the_k_center_picks_from_zero() -> None:
    callback, trainer = rounds()
    index = torch.tensor(trainer.embedded[0]).view(C, 3)
    with torch.no_grad():
        pool = trainer.model(trainer.features[index])
    expected, _ = greedy_k_center(pool, torch.zeros(C, K, D), K)
    assert torch.equal(callback.loss.proxies.per_class_view(), expected)
    assert all(torch.equal(callback.loss.proxies.per_class_view()[c, 0],
                           pool[c, pool[c].norm(dim=1).argmax()]) for c in range(C))  # fmt: skip
    assert callback.lam_t == 0.0 and callback.anchor is None


def test_random_initial_proxies_are_kept_until_the_first_switch() -> None:
    loss = CCPLoss(create("ms"), C, D, per_class=K)
    random_init = loss.proxies.weight.detach().clone()
    callback = CCPRounds(loss, pool=3, patience=3, initial="random")
    trainer = StubTrainer(loss)
    callback.on_train_start(trainer)
    assert trainer.embedded == [] and torch.equal(loss.proxies.weight, random_init)
    assert run_metrics(callback, trainer, [0.5, 0.4, 0.4, 0.4]) == [4]
    assert len(trainer.embedded) == 1 and not torch.equal(loss.proxies.weight, random_init)
    with pytest.raises(ValueError, match="initial: expected one of"):
        CCPRounds(loss, initial="zeros")


def test_proxy_centroid_cosine_matches_the_pairwise_loop() -> None:
    g = torch.Generator().manual_seed(0)
    proxies = torch.randn(6, 3, 4, generator=g) + torch.tensor([2.0, 0, 0, 0])
    unit = torch.nn.functional.normalize(proxies.mean(dim=1), dim=1)
    pairs = [float(unit[a] @ unit[b]) for a in range(6) for b in range(6) if a != b]
    assert proxy_centroid_cosine(proxies) == pytest.approx(sum(pairs) / len(pairs), abs=1e-6)
    same_direction = torch.rand(5, 2, 4, generator=g) * 0.01 + torch.tensor([1.0, 1, 0, 0])
    assert proxy_centroid_cosine(same_direction) > 0.99
    assert proxy_centroid_cosine(proxies[:1]) == 0.0


def test_selecting_proxies_that_point_the_same_way_warns() -> None:
    loss = CCPLoss(create("ms"), C, D, per_class=K)
    trainer = StubTrainer(loss)
    with torch.no_grad():  # every input embeds near one point: an untrained network
        trainer.model.weight.mul_(1e-3)
        trainer.model.bias.fill_(1.0)
    with pytest.warns(UserWarning, match="point the same way for all classes"):
        CCPRounds(loss, pool=3).on_train_start(trainer)


def test_round_switches_exactly_after_patience_non_improving_evaluations() -> None:
    callback, trainer = rounds()
    values = [0.10, 0.20, 0.25, 0.24, 0.24, 0.24]
    assert run_metrics(callback, trainer, values) == [6]
    best_step_weights = callback.anchor
    assert callback.lam_t == 2e-4 and callback.round == 1 and callback.best is None
    assert best_step_weights is not None
    # the anchor holds the weights of the third evaluation (the best), not the current ones
    pairs = zip(trainer.model.parameters(), best_step_weights, strict=True)
    offset = [float((p.detach() - a).mean()) for p, a in pairs]
    assert offset == pytest.approx([0.03, 0.03])
    # the next round counts its first evaluation as an improvement: 1 + 3 evaluations
    assert run_metrics(callback, trainer, [0.01] * 8) == [4, 8]
    assert callback.switch_steps == [6, 10, 14]


def test_new_proxies_start_from_the_best_proxies_of_the_round() -> None:
    callback, trainer = rounds()
    run_metrics(callback, trainer, [0.5, 0.4, 0.4])
    best = callback.best_proxies
    assert best is not None
    trainer.train_a_little()
    callback.on_eval(trainer, "val", {"map@r": 0.4})
    index = torch.tensor(trainer.embedded[-1]).view(C, 3)
    with torch.no_grad():
        pool = trainer.model(trainer.features[index])
    expected, _ = greedy_k_center(pool, best, K)
    assert torch.equal(callback.loss.proxies.per_class_view(), expected)


def test_metric_one_eval_late_reproduces_the_official_lag() -> None:
    callback, trainer = rounds(metric_one_eval_late=True)
    values = [0.10, 0.20, 0.25, 0.24, 0.24, 0.24, 0.24]
    assert run_metrics(callback, trainer, values) == [7]
    assert callback.anchor is not None
    pairs = zip(trainer.model.parameters(), callback.anchor, strict=True)
    offset = [float((p.detach() - a).mean()) for p, a in pairs]
    assert offset == pytest.approx([0.03, 0.03])  # stored at evaluation 4, one after the best


def test_regulariser_after_a_switch_and_restoring_the_best_weights() -> None:
    callback, trainer = rounds(restore_best_at_switch=True, lam=0.5)
    run_metrics(callback, trainer, [0.3, 0.2, 0.2, 0.2])
    assert callback.proximal is not None
    assert float(callback.proximal.value().detach()) == 0.0  # restored: θ = θ̄
    trainer.train_a_little()
    for p in trainer.model.parameters():
        p.grad = torch.zeros_like(p)
    callback.on_after_backward(trainer)
    for p in trainer.model.parameters():
        torch.testing.assert_close(p.grad, torch.full_like(p, 0.5 * 0.01))


def test_state_round_trip() -> None:
    callback, trainer = rounds()
    run_metrics(callback, trainer, [0.1, 0.3, 0.2, 0.2, 0.2, 0.25])
    state = callback.state_dict()
    fresh = CCPRounds(callback.loss, pool=3, patience=3)
    fresh.load_state_dict(state)
    fresh.on_train_start(trainer)
    assert fresh.round == 1 and fresh.best == 0.25 and fresh.stale == 0
    assert fresh.proximal is not None and fresh.proximal.lam == 2e-4
    assert len(trainer.embedded) == 2  # no new selection when resuming


TINY = [
    *TINY_DEMO,
    "train.steps=12",
    "train.eval_every=2",
    "train.checkpoint_every=2",
    "train.log_every=2",
    "train.progress=false",
    "eval.metrics=[precision@1, map@r]",
    "eval.ks=[1]",
    "eval.periodic_test=false",
    "output.report=false",
    "loss.options.similarity=dot",
    "loss.options.epsilon=null",
    "method.name=ccp",
    "method.options.per_class=2",
    "method.options.pool=3",
    "method.options.patience=1",
    "method.options.lam=0.01",
]


class Crash(Callback):
    def __init__(self, at: int | None) -> None:
        self.at = at

    def on_batch_end(self, trainer: object, batch: BatchEnd) -> None:
        if batch.step == self.at:
            raise KeyboardInterrupt


def test_ccp_run_switches_rounds_saves_proxies_and_resumes_exactly(tmp_path: Path) -> None:
    config = load_config(None, TINY)
    full = Trainer(config, tmp_path / "full")
    assert isinstance(full.loss_fn, CCPLoss)
    groups = {g["name"]: g for g in full.optimizer.param_groups}
    assert groups["proxies"]["params"] == [full.loss_fn.proxies.weight]
    full_metrics = full.fit()
    rounds_cb = full.callbacks.callbacks[0]
    assert isinstance(rounds_cb, CCPRounds) and rounds_cb.round >= 1

    with pytest.raises(KeyboardInterrupt):
        Trainer(config, tmp_path / "cut", callbacks=[Crash(7)]).fit()
    resumed = Trainer(config, tmp_path / "cut", callbacks=[Crash(None)], resume=True)
    resumed_metrics = resumed.fit()
    for key in ("final", "best", "best_step", "best_val"):
        assert resumed_metrics[key] == full_metrics[key], key
    assert resumed.callbacks.callbacks[0].switch_steps == rounds_cb.switch_steps

    def rows(path: Path) -> list[dict]:
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "images_per_s"} for r in lines]

    assert rows(tmp_path / "cut" / "log.jsonl") == rows(tmp_path / "full" / "log.jsonl")
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert torch.equal(a["loss"]["proxies.weight"], b["loss"]["proxies.weight"])
    assert torch.equal(a["loss"]["proxies.weight"], full.loss_fn.proxies.weight.detach())
    for name, value in a["model"].items():
        assert torch.equal(b["model"][name], value), name
