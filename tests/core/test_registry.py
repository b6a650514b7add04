"""core.registry: registration, creation, and the errors for duplicates and unknown names."""

from __future__ import annotations

import pytest

from dmlkit.core import Registry


def test_registry() -> None:
    reg: Registry[int] = Registry("widget")

    @reg.register("one")
    def one(plus: int = 0) -> int:
        return 1 + plus

    assert reg.create("one", plus=2) == 3 and "one" in reg and reg.names() == ["one"]
    assert reg.get("one") is one and "two" not in reg
    with pytest.raises(KeyError, match="widget 'one' is already registered"):
        reg.register("one")(one)
    with pytest.raises(KeyError, match="unknown widget 'two'; registered: one"):
        reg.create("two")


def test_loss_registry_names_the_registered_losses() -> None:
    from dmlkit.losses import create

    with pytest.raises(KeyError, match=r"unknown loss 'nope'; registered: .*binomial.*ms"):
        create("nope")
