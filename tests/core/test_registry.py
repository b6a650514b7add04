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


def test_context_is_declared_and_given_only_where_declared() -> None:
    import inspect

    from dmlkit.core import BuildContext
    from dmlkit.losses import LOSSES
    from dmlkit.methods import METHODS

    reg: Registry[int] = Registry("widget")
    with pytest.raises(ValueError, match=r"widget 'w': unknown context \['classes'\]"):
        reg.register("w", context=("classes",))
    reg.register("w", context=("num_classes",))(lambda num_classes, k=1: num_classes * k)
    ctx = BuildContext(num_classes=5, embedding_dim=8, seed=3)
    assert reg.create("w", **ctx.for_entry(reg.info("w"), {"k": 2})) == 10
    # an option overrides the context value
    assert ctx.for_entry(reg.info("w"), {"num_classes": 7}) == {"num_classes": 7}
    # every registered factory taking a context field declares it, and declares nothing else
    for registry in (LOSSES, METHODS):
        for name in registry.names():
            params = set(inspect.signature(registry.get(name)).parameters)
            declared = set(registry.info(name).context)
            assert declared == params & {"num_classes", "embedding_dim", "seed"}, name
