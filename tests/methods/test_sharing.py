"""The shared-characteristics method: the two-head objective, its parameter groups, the one- and
two-step modes in the trainer, evaluation of each head and of the concatenation, config errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from dmlkit.config import load_config
from dmlkit.data.fonts import distinct_faces, font_files
from dmlkit.data.glyphs import FONT_DIR
from dmlkit.losses import MarginLoss, create
from dmlkit.losses.triplet_sampling import cosine_to_distance
from dmlkit.methods import Callback, Decorrelation, SharedTripletLoss, SharingLoss, TrainerView
from dmlkit.methods.sharing import Sharing, sharing
from dmlkit.sampling import SharedNegSampler, SurrogateSampler
from dmlkit.training import Trainer, load_checkpoint
from dmlkit.training.build import build_loss, build_method
from dmlkit.training.optim import parameter_groups

ROOT = Path(__file__).resolve().parents[2]
DIGITS = [
    "data.image_size=8",
    "data.options.test_fraction=0.3",
    "data.batch_size=40",
    "data.m=4",
    "model.options.widths=[8, 16]",
    "model.embedding_dim=24",
    "model.options.heads={discriminative: 16, shared: 8}",
    "loss.name=margin",
    "method.name=sharing",
    "method.options.shared_dim=8",
    "method.options.hidden_dim=16",
    "method.options.rho=20",
    "train.steps=4",
    "train.eval_every=2",
    "train.progress=false",
    "eval.metrics=[recall, map@r]",
    "eval.ks=[1]",
    "eval.before=false",
    "output.report=false",
    "output.embeddings=false",
]
HEADS = {"discriminative": 6, "shared": 4}


def _heads_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    disc = F.normalize(torch.randn(12, 6, generator=g, dtype=torch.float64), dim=1)
    shared = F.normalize(torch.randn(12, 4, generator=g, dtype=torch.float64), dim=1)
    labels = torch.arange(4).repeat_interleave(3)
    return torch.cat([disc, shared], 1).requires_grad_(True), labels


def _sharing_loss(alpha: float = 0.3, rho: float = 100.0) -> SharingLoss:
    torch.manual_seed(0)
    disc = MarginLoss(num_classes=4)
    shared = SharedTripletLoss(MarginLoss(num_classes=4), SharedNegSampler())
    decorr = Decorrelation(4, 6, hidden_dim=8, lr=1e-5, weight_decay=1e-6)
    return SharingLoss(disc, shared, decorr, HEADS, alpha, rho).double()


def test_one_step_objective_is_the_weighted_sum_of_the_terms() -> None:
    loss = _sharing_loss(alpha=0.3, rho=100.0)
    emb, labels = _heads_batch()
    torch.manual_seed(1)
    total = loss(emb, labels)
    terms = loss.last_terms
    expected = terms["discriminative"] + 0.3 * terms["shared"] + 100.0 * terms["decorrelation"]
    torch.testing.assert_close(total.detach(), expected)
    assert terms["decorrelation"] < 0 and terms["discriminative"] > 0 and terms["shared"] > 0
    decorr = loss.decorrelation(emb[:, 6:].detach(), emb[:, :6].detach())
    torch.testing.assert_close(terms["decorrelation"], decorr.detach())
    total.backward()
    assert emb.grad is not None and torch.isfinite(emb.grad).all()
    for beta in (loss.discriminative.beta, loss.shared.loss.beta):
        assert beta.grad is not None and beta.grad.abs().sum() > 0
    assert all(p.grad is not None for p in loss.decorrelation.regressor.parameters())
    fields = loss.log_fields()
    assert set(fields) == {"loss_discriminative", "loss_shared", "loss_decorrelation"}


def test_task_loss_holds_one_task_and_the_decorrelation() -> None:
    loss = _sharing_loss(alpha=0.5, rho=10.0)
    emb, labels = _heads_batch()
    shared = loss.task_loss(emb, labels, "shared")
    terms = loss.last_terms
    torch.testing.assert_close(shared.detach(), 0.5 * terms["shared"] + 10 * terms["decorrelation"])
    shared.backward()
    assert loss.discriminative.beta.grad is None  # the discriminative loss took no part
    with pytest.raises(ValueError, match="task: expected one of"):
        loss.task_loss(emb, labels, "intra")


def test_parameter_groups_regressor_apart_from_both_betas() -> None:
    from dmlkit.config import OptimizerConfig
    from dmlkit.models import create_model

    model = create_model("small_cnn", embedding_dim=10, heads=HEADS, widths=[4, 8])
    loss = _sharing_loss().float()
    config = OptimizerConfig(lr=1e-5, loss_lr=5e-4, weight_decay=4e-4)
    groups = {g["name"]: g for g in parameter_groups(config, model, loss)}
    assert (groups["decorrelation"]["lr"], groups["decorrelation"]["weight_decay"]) == (1e-5, 1e-6)
    assert len(groups["decorrelation"]["params"]) == 4
    betas = {id(loss.discriminative.beta), id(loss.shared.loss.beta)}
    assert {id(p) for p in groups["loss"]["params"]} == betas and groups["loss"]["lr"] == 5e-4


def test_shared_triplets_feed_a_pair_loss_through_masks() -> None:
    emb, labels = _heads_batch()
    pair = SharedTripletLoss(create("contrastive"), SharedNegSampler())
    value = pair(emb[:, 6:], labels)
    assert value.ndim == 0 and torch.isfinite(value) and value > 0
    with pytest.raises(TypeError, match="batch loss"):
        SharedTripletLoss(torch.nn.MSELoss(), SharedNegSampler())


def _near_far_batch(scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """D = 128 unit rows: anchor 0 = e_0; item 1 its class partner (e_1, d = sqrt 2); items 2-5 of
    other classes, 2 and 3 near the anchor (cosine 0.99, d ~ 0.14), 4 and 5 farther (cosine 0.28,
    d = 1.2, where the inverse-sphere weight is ~1e-20 of the near ones')."""
    eye = torch.eye(128, dtype=torch.float64)
    rows = [eye[0], eye[1]]
    for k, c in ((2, 0.99), (3, 0.99), (4, 0.28), (5, 0.28)):
        rows.append(c * eye[0] + (1 - c * c) ** 0.5 * eye[k])
    return scale * torch.stack(rows), torch.tensor([0, 0, 1, 2, 3, 4])


@pytest.mark.parametrize("similarity", ["cosine", "dot", "neg_euclidean", "neg_sq_euclidean"])
def test_shared_triplets_sample_the_nearest_negatives_for_any_similarity(similarity: str) -> None:
    """The sampler works from unit-sphere distances of the loss's own similarity: whatever the
    similarity, the anchor's shared negatives are its near items (2 and 3), never the nearly
    antipodal ones (converting -d as if it were a cosine picks the far ones)."""
    emb, labels = _near_far_batch()
    sampler = SharedNegSampler(generator=torch.Generator().manual_seed(0))
    loss = SharedTripletLoss(create("contrastive", similarity=similarity), sampler)
    drawn: list[int] = []

    def spy(dist: torch.Tensor, *args: Any) -> Any:
        triplets = sampler(dist, *args)
        drawn.append(int(triplets[2][0]))  # anchor 0's negative
        return triplets

    loss.sampler = spy
    for _ in range(50):
        loss(emb, labels)
    assert set(drawn) <= {2, 3} and len(drawn) == 50


@pytest.mark.parametrize("similarity", ["dot", "neg_euclidean", "neg_sq_euclidean"])
def test_shared_triplets_refuse_a_similarity_off_the_unit_sphere(similarity: str) -> None:
    emb, labels = _near_far_batch(scale=3.0)
    loss = SharedTripletLoss(create("contrastive", similarity=similarity), SharedNegSampler())
    with pytest.raises(ValueError, match="unit-norm embeddings"):
        loss(emb, labels)
    cosine = SharedTripletLoss(create("contrastive"), SharedNegSampler())
    assert torch.isfinite(cosine(emb, labels))  # the cosine normalises: any norm


def test_surrogate_margin_loss_uses_the_beta_of_the_surrogate_id() -> None:
    """Surrogate triplets: β is indexed by the anchor's surrogate id (its block), as in the
    paper-era code, not by its class; the value is the margin loss with the ids as labels."""
    g = torch.Generator().manual_seed(2)
    emb = F.normalize(torch.randn(8, 6, generator=g, dtype=torch.float64), dim=1)
    emb.requires_grad_(True)
    labels = torch.tensor([4, 5, 6, 7, 4, 5, 6, 7])  # classes 4-7; blocks of 2: ids 0-3
    sampler = SurrogateSampler(m=2, generator=torch.Generator().manual_seed(0), per_anchor=True)
    margin = MarginLoss(num_classes=8).double()
    with torch.no_grad():
        margin.beta.copy_(torch.linspace(0.8, 1.5, 8))
    value = SharedTripletLoss(margin, sampler)(emb, labels)
    value.backward()
    grad = margin.beta.grad
    assert grad is not None and grad[:4].abs().sum() > 0 and grad[4:].abs().sum() == 0
    again = SurrogateSampler(m=2, generator=torch.Generator().manual_seed(0), per_anchor=True)
    dist = torch.cdist(emb.detach(), emb.detach())
    pos, neg = margin.pairs(emb.detach(), labels)[1:]
    triplets = again(dist, pos, neg, 6)
    expected = margin(emb.detach(), torch.arange(8) // 2, triplets=triplets)
    assert value.item() == pytest.approx(expected.item(), rel=1e-9)


@pytest.mark.parametrize("dataset", ["cub", "cars", "sop"])
def test_authors_configs_use_the_authors_code_rules(dataset: str) -> None:
    """revisitdml_margin.yaml and sharing.yaml claim the Revisiting-DML / DiVA code: the margin
    loss divides by the triplets with an active term, the distance miner has no upper cutoff and
    draws one triplet per anchor, and so do the shared samplers (a copy of the same loss)."""
    config = load_config(ROOT / "configs" / dataset / "sharing.yaml")
    margin = build_loss(config.loss, 100, 128)
    assert margin.normalize == "active_triplets"
    assert margin.sampler.upper_cutoff is None and margin.sampler.per_anchor
    method = build_method(config.method, 100, config.model.embedding_dim, 0)
    wrapped = method.wrap_loss(margin)
    assert wrapped.shared.loss.normalize == "active_triplets"
    assert wrapped.shared.sampler.distance_weighted.per_anchor
    assert wrapped.shared.sampler.distance_weighted.upper_cutoff is None
    # on a 56 x 2 batch (RDML's) the value is the per-triplet normalised loop over its triplets
    g = torch.Generator().manual_seed(0)
    emb = F.normalize(torch.randn(112, 128, generator=g, dtype=torch.float64), dim=1)
    labels = torch.arange(56).repeat_interleave(2)
    torch.manual_seed(0)
    value = margin.double()(emb, labels)
    torch.manual_seed(0)
    sim, pos, neg = margin.pairs(emb, labels)
    a, p, n = margin.sampler(cosine_to_distance(sim), pos, neg, 128)
    assert a.tolist() == list(range(112))
    d_ap = (emb[a] - emb[p]).norm(dim=1)
    d_an = (emb[a] - emb[n]).norm(dim=1)
    beta = margin.beta.detach()[labels[a]].double()
    lp, ln = (d_ap - beta + 0.2).clamp_min(0), (beta - d_an + 0.2).clamp_min(0)
    active = int(((lp > 0) | (ln > 0)).sum())
    assert value.item() == pytest.approx(float((lp + ln).sum()) / active, rel=1e-9)


def test_method_builds_the_loss_from_a_copy_and_scores_the_views() -> None:
    method = sharing(embedding_dim=10, shared_dim=4, sampler="shared_full", rho=50.0)
    base = MarginLoss(num_classes=4)
    wrapped = method.wrap_loss(base)
    assert isinstance(wrapped, SharingLoss) and wrapped.discriminative is base
    assert wrapped.shared.loss is not base and wrapped.shared.loss.beta is not base.beta
    assert wrapped.shared.sampler.full and wrapped.rho == 50.0
    emb, _ = _heads_batch()
    main, views = method.eval_views(emb.detach())
    assert torch.equal(main, emb[:, :6].detach()) and list(views) == ["shared", "concat"]
    torch.testing.assert_close(views["concat"], F.normalize(emb.detach(), dim=1))
    only_concat = sharing(embedding_dim=10, shared_dim=4, report=["concat"])
    assert list(only_concat.eval_views(emb.detach())[1]) == ["concat"]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"sampler": "surrogate"}, "only the two_step mode"),
        ({"sampler": "closest"}, "sampler: expected one of"),
        ({"mode": "three_step"}, "mode: expected one of"),
        ({"shared_dim": 10}, "0 < shared_dim < model.embedding_dim=10"),
        ({"eval_view": "intra"}, "eval_view: expected one of"),
        ({"alpha": -1.0}, "alpha"),
        ({"report": ["discriminative"]}, r"report: expected names from \['shared', 'concat'\]"),
    ],
)
def test_bad_options(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sharing(embedding_dim=10, **{"shared_dim": 4, **options})


def test_single_head_model_and_swapped_heads_are_refused_at_the_start(tmp_path: Path) -> None:
    config = load_config(
        None, [*DIGITS, "model.options={widths: [8, 16]}", f"output.dir={tmp_path}"]
    )
    with pytest.raises(ValueError, match="expected a model with heads"):
        Trainer(config, tmp_path / "run").fit()
    swapped = "model.options={widths: [8, 16], heads: {shared: 8, discriminative: 16}}"
    config = load_config(None, [*DIGITS, swapped, f"output.dir={tmp_path}"])
    with pytest.raises(ValueError, match="in this order"):
        Trainer(config, tmp_path / "swapped").fit()


class StepCounter(Callback):
    """Counts optimizer steps (after-backward calls) and iterations."""

    def __init__(self) -> None:
        self.backwards = 0
        self.iterations = 0

    def on_after_backward(self, trainer: TrainerView) -> None:
        self.backwards += 1

    def on_batch_end(self, trainer: TrainerView, batch: Any) -> None:
        self.iterations += 1


@pytest.mark.parametrize(
    ("mode", "sampler", "steps_per_iteration"),
    [("one_step", "shared_neg", 1), ("two_step", "shared_random", 2), ("two_step", "surrogate", 2)],
)
def test_modes_in_the_trainer(
    tmp_path: Path, mode: str, sampler: str, steps_per_iteration: int
) -> None:
    overrides = [f"method.options.mode={mode}", f"method.options.sampler={sampler}"]
    config = load_config(None, [*DIGITS, *overrides, f"output.dir={tmp_path}"])
    counter = StepCounter()
    trainer = Trainer(config, tmp_path / "run", callbacks=[counter])
    assert isinstance(trainer.method, Sharing)
    metrics = trainer.fit()
    assert counter.iterations == 4 and counter.backwards == 4 * steps_per_iteration
    for key in ("recall@1", "map@r", "shared/recall@1", "shared/map@r", "concat/map@r"):
        assert 0.0 <= metrics["final"][key] <= 1.0
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").open()]
    train = [r for r in records if r["kind"] == "train"]
    assert all(r["loss_decorrelation"] < 0 < r["loss_shared"] for r in train)
    if sampler == "surrogate":
        saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
        names = [name for name, _ in saved["callbacks"]["callbacks"]]
        assert names[:2] == ["HeadCheck", "ShuffledBatches"]
        assert saved["callbacks"]["callbacks"][1][1]["position"] == 4  # one shuffled batch a step


def test_two_step_surrogate_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    base = [*DIGITS, "method.options.mode=two_step", "method.options.sampler=surrogate"]
    full = Trainer(load_config(None, [*base, f"output.dir={tmp_path}"]), tmp_path / "full")
    full.fit()
    half = load_config(None, [*base, "train.checkpoint_every=2", f"output.dir={tmp_path}"])
    first = Trainer(half, tmp_path / "half")
    first.start()
    first.train_until(2)
    first.save_last()
    first.close()
    resumed = Trainer(half, tmp_path / "half", resume=True)
    resumed.fit()
    for a, b in zip(full.model.parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(
        full.loss_fn.state_dict()["shared.loss.beta"],
        resumed.loss_fn.state_dict()["shared.loss.beta"],
    )


def _glyph_fonts_missing() -> bool:
    renderers, _ = distinct_faces(font_files(FONT_DIR), 16)
    return len(renderers) < 2


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:glyphs. skipped")  # some installed faces fail to render
def test_tiny_glyph_run_lowers_both_losses_with_finite_metrics_per_head(tmp_path: Path) -> None:
    if _glyph_fonts_missing():
        pytest.skip(f"fewer than 2 CJK font faces under {FONT_DIR}")
    tiny = [
        "data.options.num_chars=40",
        "data.options.image_size=16",
        "data.val_classes=4",
        "data.batch_size=32",
        "model.options.widths=[8, 16]",
        "model.embedding_dim=32",
        "model.options.heads={discriminative: 16, shared: 16}",
        "method.options.shared_dim=16",
        "method.options.hidden_dim=32",
        "method.options.rho=25",  # 1500 (D = 128) scaled by (16/128)^2 for D = 16
        "train.steps=150",
        "train.eval_every=150",
        "train.log_every=5",
        "train.progress=false",
        "schedule.warmup_steps=0",
        "eval.ks=[1]",
        "eval.metrics=[recall, map@r]",
        "output.report=false",
        "output.embeddings=false",
        f"output.dir={tmp_path}",
    ]
    config = load_config(ROOT / "configs" / "glyphs" / "sharing.yaml", tiny)
    metrics = Trainer(config, tmp_path / "run").fit()
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").open()]
    train = [r for r in records if r["kind"] == "train"]
    assert len(train) == 30
    for term in ("loss_discriminative", "loss_shared"):
        first = sum(r[term] for r in train[:6]) / 6
        last = sum(r[term] for r in train[-6:]) / 6
        assert last < 0.95 * first, (term, first, last)
    final = metrics["final"]
    for view in ("", "shared/", "concat/"):
        for name in ("recall@1", "map@r"):
            value = final[f"{view}{name}"]
            assert value == value and 0.0 < value <= 1.0
    assert final["recall@1"] > metrics["before"]["recall@1"]
