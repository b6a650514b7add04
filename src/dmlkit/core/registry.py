"""One registry type for every buildable component (losses, miners, datasets, models, ...).

    LOSSES = Registry("loss")

    @LOSSES.register("ms")
    def multi_similarity(**kwargs) -> nn.Module: ...

    LOSSES.create("ms", beta=40.0)

Unknown names raise ``KeyError`` listing the registered ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> factory map with decorator registration and a helpful ``create``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``factory`` under ``name`` (names are unique)."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise KeyError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            return factory

        return deco

    def create(self, name: str, **kwargs: Any) -> T:
        """Build the component registered as ``name`` with ``kwargs``."""
        return self.get(name)(**kwargs)

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._factories:
            raise KeyError(
                f"unknown {self.kind} {name!r}; registered: {', '.join(sorted(self._factories))}"
            )
        return self._factories[name]

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories
