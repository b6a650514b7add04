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


def test_registry_entries_carry_family_and_source() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("a", family="f", source="Doe 2020")(lambda: 1)
    reg.register("b")(lambda: 2)
    assert reg.info("a").family == "f" and reg.info("a").source == "Doe 2020"
    assert reg.info("b").family == "" and reg.info("b").source == ""
    with pytest.raises(KeyError, match="unknown widget 'c'"):
        reg.info("c")


def test_every_loss_names_its_family_and_source() -> None:
    from dmlkit.losses import LOSSES

    missing = [n for n in LOSSES.names() if not (LOSSES.info(n).family and LOSSES.info(n).source)]
    assert missing == []
