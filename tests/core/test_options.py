"""core.options: a factory's options read from one dataclass."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import pytest

from dmlkit.core.options import options_factory, options_parameters


@dataclass(frozen=True)
class Knobs:
    width: int = 3
    names: list[str] = field(default_factory=lambda: ["a"])
    scale: float = 0.5


def test_the_factory_signature_is_its_context_then_the_options() -> None:
    @options_factory(Knobs)
    def build(size: int, seed: int = 0, **options: Any) -> tuple[int, int, Knobs]:
        return size, seed, Knobs(**options)

    params = inspect.signature(build).parameters
    assert list(params) == ["size", "seed", "width", "names", "scale"]
    assert params["width"].default == 3 and params["names"].default == ["a"]
    assert params["scale"].kind is inspect.Parameter.KEYWORD_ONLY
    assert build(2, width=5) == (2, 0, Knobs(width=5))
    with pytest.raises(TypeError, match="depth"):
        build(2, depth=1)


def test_only_dataclasses_declare_options() -> None:
    with pytest.raises(TypeError, match="expected a dataclass of options"):
        options_parameters(dict)


def test_ccp_defaults_live_in_one_place() -> None:
    from dmlkit.methods import METHODS
    from dmlkit.methods.ccp import CCPRounds
    from dmlkit.methods.ccp_loss import CCPLoss
    from dmlkit.methods.ccp_options import CCPOptions

    factory = inspect.signature(METHODS.get("ccp")).parameters
    loss = inspect.signature(CCPLoss).parameters
    rounds = inspect.signature(CCPRounds).parameters
    for name, value in vars(CCPOptions()).items():
        assert factory[name].default == value, name
        if name in loss:
            assert loss[name].default == value, name
        if name in rounds:
            assert rounds[name].default == value, name
    assert set(CCPOptions().part("loss")) == {
        "per_class",
        "pair_weight",
        "proxy_weight",
        "lipschitz",
    }
