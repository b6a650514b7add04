"""One registry type for every buildable component (losses, miners, datasets, models, ...).

    LOSSES = Registry("loss")

    @LOSSES.register("ms")
    def multi_similarity(**kwargs) -> nn.Module: ...

    LOSSES.create("ms", beta=40.0)

Unknown names raise ``KeyError`` listing the registered ones. An entry may carry a ``family`` and
a ``source`` (the paper or code it follows), which ``dmlkit list`` and the documentation show::

    @LOSSES.register("arcface", family="margin softmax", source="Deng et al. 2019, ArcFace")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class EntryInfo:
    """What a registry knows about an entry beside its factory: a family, a source, and the
    ``context`` the factory takes from the run that builds it (names of
    :class:`BuildContext` fields, such as ``num_classes``)."""

    family: str = ""
    source: str = ""
    context: tuple[str, ...] = ()


@dataclass(frozen=True)
class BuildContext:
    """What a run knows when it builds its loss and training method: the training set's
    ``num_classes``, the model's ``embedding_dim`` and the run's ``seed``. An entry receives the
    fields it declares in ``register(..., context=...)``, unless its options set them."""

    num_classes: int
    embedding_dim: int
    seed: int = 0

    def for_entry(self, info: EntryInfo, options: dict[str, Any]) -> dict[str, Any]:
        """``options`` with each declared context field added where the options do not set it."""
        return {**{k: getattr(self, k) for k in info.context}, **options}


CONTEXT_FIELDS = frozenset(BuildContext.__dataclass_fields__)


class Registry(Generic[T]):
    """A name -> factory map with decorator registration and a helpful ``create``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._info: dict[str, EntryInfo] = {}

    def register(
        self, name: str, *, family: str = "", source: str = "", context: tuple[str, ...] = ()
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``factory`` under ``name`` (names are unique), with an optional
        ``family`` and ``source`` for listings and the ``context`` fields it takes from the run
        (:class:`BuildContext`)."""
        unknown = sorted(set(context) - CONTEXT_FIELDS)
        if unknown:
            raise ValueError(
                f"{self.kind} {name!r}: unknown context {unknown}; "
                f"expected some of {sorted(CONTEXT_FIELDS)}"
            )

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise KeyError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            self._info[name] = EntryInfo(family, source, tuple(context))
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

    def info(self, name: str) -> EntryInfo:
        """The family and source of ``name`` (``KeyError`` as :meth:`get` for unknown names)."""
        self.get(name)
        return self._info[name]

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories
