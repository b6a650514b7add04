"""Property-based fuzzing of every metric of :func:`dmlkit.evaluation.evaluate`: random sizes,
labels (singletons, one class), duplicate and zero rows and extreme magnitudes give finite values
in their ranges, and malformed input a ``ValueError``/``TypeError`` saying what was expected."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmlkit.evaluation import METRIC_NAMES, evaluate

FUZZ = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
SCALES = (1e-20, 1.0, 1e15, 1e36)


@st.composite
def embeddings(
    draw: st.DrawFn,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Queries ``(Q, D)`` with labels, and either no references (leave-one-out) or ``(R, D)``."""
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    size, dim = draw(st.integers(2, 12)), draw(st.integers(1, 5))
    classes = draw(st.integers(1, 4))
    emb = torch.randn(size, dim, generator=gen)
    shape = draw(st.sampled_from(["random", "duplicates", "zeros"]))
    if shape == "duplicates":
        emb = emb[torch.randint(0, 2, (size,), generator=gen)]
    elif shape == "zeros":
        emb[: size // 2] = 0.0
    emb = emb * draw(st.sampled_from(SCALES))
    labels = torch.randint(0, classes, (size,), generator=gen)
    if not draw(st.booleans()):
        return emb, labels, None, None
    ref = torch.randn(size + 3, dim, generator=gen) * draw(st.sampled_from(SCALES))
    return emb, labels, ref, torch.randint(0, classes, (size + 3,), generator=gen)


@pytest.mark.parametrize("metric", METRIC_NAMES)
@pytest.mark.parametrize("similarity", ["cosine", "dot", "euclidean"])
@FUZZ
@given(case=embeddings())
def test_metrics_are_finite_and_in_range_or_a_clear_error(
    metric: str, similarity: str, case: tuple[torch.Tensor, ...]
) -> None:
    emb, labels, ref, ref_labels = case
    try:
        result = evaluate(
            emb, labels, ref, ref_labels, metrics=[metric], ks=(1, 3), similarity=similarity
        )
    except (ValueError, TypeError) as err:
        assert "expected" in str(err), str(err)
        return
    values = result.to_dict()
    assert values["num_queries"] + values["num_excluded_queries"] == len(emb)
    for key, value in values.items():
        assert math.isfinite(value), f"{metric} {similarity}: {key} = {value}"
        if key not in ("num_queries", "num_excluded_queries", "ami"):
            assert 0.0 <= value <= 1.0 + 1e-6, f"{metric} {similarity}: {key} = {value}"


BAD = {
    "nan": lambda e, l: (e.index_fill(0, torch.tensor([1]), torch.nan), l),
    "inf": lambda e, l: (e.index_fill(0, torch.tensor([0]), -torch.inf), l),
    "1d": lambda e, l: (e[:, 0], l),
    "length_mismatch": lambda e, l: (e, l[:-1]),
    "float_labels": lambda e, l: (e, l.float()),
    "int_emb": lambda e, l: (e.long(), l),
    "empty": lambda e, l: (e[:0], l[:0]),
}


@pytest.mark.parametrize("metric", METRIC_NAMES)
@pytest.mark.parametrize("bad", sorted(BAD))
def test_malformed_input_is_a_clear_error(metric: str, bad: str) -> None:
    emb, labels = BAD[bad](torch.randn(6, 3), torch.tensor([0, 0, 1, 1, 2, 2]))
    with pytest.raises((ValueError, TypeError), match="expected"):
        evaluate(emb, labels, metrics=[metric])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ks": (0,)}, "ks"),
        ({"metric": "hamming"}, "metric"),
        ({"metrics": ["accuracy"]}, "accuracy"),
        ({"ref_emb": torch.randn(4, 2), "ref_labels": torch.arange(4)}, "D"),
        ({"ref_emb": torch.randn(4, 3), "ref_labels": torch.arange(3)}, "ref"),
    ],
)
def test_bad_options_are_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        evaluate(torch.randn(6, 3), torch.tensor([0, 0, 1, 1, 2, 2]), **kwargs)
