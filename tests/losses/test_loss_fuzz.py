"""Property-based fuzzing of every registered loss: random shapes, labels, duplicate rows and
extreme magnitudes give a finite loss with finite gradients, and malformed input gives a
``ValueError``/``TypeError`` that says what was expected, never an error from inside PyTorch.

Losses on augmented views (``views_input``: ``loss(emb, ref_emb)``, no labels) get the same
batches with a second view of the same rows in place of the labels; their malformed cases put
the bad tensor in either view's place, and the label cases pass labels where a view belongs."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmlkit.core import BuildContext
from dmlkit.losses import LOSSES, create

NUM_CLASSES = 4
SCALES = {"unit": 1.0, "tiny": 1e-20, "huge": 1e15, "float32_max_ish": 1e36}
pytestmark = pytest.mark.filterwarnings("ignore:k=.* exceeds the .* pairs available")
FUZZ = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


def takes_views(loss_fn: torch.nn.Module) -> bool:
    return bool(getattr(loss_fn, "views_input", False))


def second_view(emb: torch.Tensor) -> torch.Tensor:
    """Another view of the same rows, at the batch's scale: each row averaged with the next one
    (all-zero and duplicated rows keep zero and duplicated neighbours)."""
    return 0.5 * (emb + emb.roll(1, dims=0))


def make_loss(name: str, dim: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return create(name, **BuildContext(NUM_CLASSES, dim).for_entry(LOSSES.info(name), {}))


@st.composite
def batches(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``emb (B, D)`` float32 and ``labels (B,)`` int64 in ``0..3``: random, duplicated rows,
    all-zero rows or one class, at a scale from 1e-20 to 1e36."""
    size = draw(st.integers(1, 10))
    dim = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(size, dim, generator=gen)
    shape = draw(st.sampled_from(["random", "duplicates", "zeros", "one_class"]))
    labels = torch.randint(0, NUM_CLASSES, (size,), generator=gen)
    if shape == "duplicates":
        emb = emb[torch.randint(0, min(2, size), (size,), generator=gen)]
    elif shape == "zeros":
        emb[: size // 2] = 0.0
    elif shape == "one_class":
        labels = torch.full((size,), draw(st.integers(0, NUM_CLASSES - 1)))
    scale = draw(st.sampled_from(sorted(SCALES)))
    return emb * SCALES[scale], labels, f"{shape}/{scale}"


def assert_clear(err: Exception) -> None:
    """A dmlkit input error: says what it expected."""
    assert isinstance(err, (ValueError, TypeError)), repr(err)
    assert "expected" in str(err), str(err)


@pytest.mark.parametrize("name", LOSSES.names())
@FUZZ
@given(batch=batches())
def test_valid_batches_give_a_finite_loss_and_finite_gradients(
    name: str, batch: tuple[torch.Tensor, torch.Tensor, str]
) -> None:
    emb, labels, case = batch
    loss_fn = make_loss(name, emb.shape[1])
    views = takes_views(loss_fn)
    view = second_view(emb).requires_grad_(True)
    emb = emb.clone().requires_grad_(True)
    try:
        loss = loss_fn(emb, view) if views else loss_fn(emb, labels)
    except (ValueError, TypeError) as err:
        assert_clear(err)
        return
    assert loss.ndim == 0 and torch.isfinite(loss), f"{name} {case}: loss {loss}"
    loss.backward()
    assert emb.grad is not None and torch.isfinite(emb.grad).all(), f"{name} {case}: gradient"
    if views:
        assert view.grad is not None and torch.isfinite(view.grad).all(), f"{name} {case}: view"
    for p in loss_fn.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), f"{name} {case}: parameter gradient"


def bad_inputs() -> st.SearchStrategy[tuple[str, torch.Tensor, torch.Tensor]]:
    emb, labels = torch.randn(6, 3), torch.tensor([0, 0, 1, 1, 2, 2])
    cases = {
        "nan": (emb.clone().index_fill_(0, torch.tensor([2]), torch.nan), labels),
        "inf": (emb.clone().index_fill_(0, torch.tensor([0]), torch.inf), labels),
        "1d": (emb[:, 0], labels),
        "3d": (emb[None], labels),
        "batch_mismatch": (emb, labels[:5]),
        "float_labels": (emb, labels.float()),
        "int_emb": (emb.long(), labels),
        "labels_2d_wrong": (emb, labels[:, None].expand(6, 2)[:3]),
        "empty": (emb[:0], labels[:0]),
        "negative_label": (emb, labels - 1),
        "label_too_big": (emb, labels + NUM_CLASSES),
    }
    return st.sampled_from(sorted(cases)).map(lambda k: (k, *cases[k]))


# losses whose classes are arbitrary ids (pairs compare labels only); per-class parameters need
# labels in 0..num_classes-1
CLASS_INDEXED = {n for n in LOSSES.names() if "num_classes" in LOSSES.info(n).context}


@pytest.mark.parametrize("name", LOSSES.names())
@FUZZ
@given(case=bad_inputs())
def test_malformed_input_is_a_clear_error(
    name: str, case: tuple[str, torch.Tensor, torch.Tensor]
) -> None:
    kind, emb, labels = case
    loss_fn = make_loss(name, emb.shape[-1] if emb.ndim else 3)
    if takes_views(loss_fn):
        for args in malformed_views(kind, emb, labels):
            with pytest.raises((ValueError, TypeError)) as info:
                loss_fn(*args)
            assert_clear(info.value)
        return
    if kind in ("negative_label", "label_too_big") and name not in CLASS_INDEXED:
        return  # pair losses only compare labels: any ids are valid
    with pytest.raises((ValueError, TypeError)) as info:
        loss_fn(emb, labels)
    assert_clear(info.value)


LABEL_CASES = ("float_labels", "labels_2d_wrong", "negative_label", "label_too_big")


def malformed_views(
    kind: str, emb: torch.Tensor, labels: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The calls of a views loss for one malformed case: labels where a view belongs, a view of
    another batch size, or the bad tensor beside a well-formed (6, 3) view in either place."""
    good = torch.randn(6, 3)
    if kind in LABEL_CASES:
        return [(emb, labels)]
    if kind == "batch_mismatch":
        return [(emb, good[:5]), (good[:5], emb)]
    return [(emb, good), (good, emb)]


@pytest.mark.parametrize("name", LOSSES.names())
def test_an_ordinary_batch_is_accepted(name: str) -> None:
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(12, 5, generator=gen, requires_grad=True)
    loss_fn = make_loss(name, 5)
    if takes_views(loss_fn):
        loss = loss_fn(emb, emb.detach() + 0.3 * torch.randn(12, 5, generator=gen))
    else:
        loss = loss_fn(emb, torch.arange(12) % NUM_CLASSES)
    loss.backward()
    assert torch.isfinite(loss) and emb.grad is not None and emb.grad.abs().sum() > 0
