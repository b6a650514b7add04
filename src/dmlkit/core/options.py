"""One declaration for a component's options: a frozen dataclass whose fields (names, types,
defaults) are the options a config may set.

:func:`options_factory` gives a registry factory ``factory(*context, **options)`` the signature
``context parameters + the dataclass's fields`` (keyword-only), so that config validation, the
documentation and ``help()`` read the options from the one dataclass, and the factory builds
``options_cls(**options)`` instead of re-declaring every default.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def options_parameters(options_cls: type) -> list[inspect.Parameter]:
    """The fields of the dataclass ``options_cls`` as keyword-only parameters with defaults."""
    if not dataclasses.is_dataclass(options_cls):
        raise TypeError(f"expected a dataclass of options, got {options_cls!r}")
    params = []
    for f in dataclasses.fields(options_cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = inspect.Parameter.empty
        annotation = f.type
        params.append(
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                              annotation=annotation)
        )  # fmt: skip
    return params


def options_factory(options_cls: type) -> Callable[[F], F]:
    """Decorator: ``factory(<context parameters>, **options)`` gets the signature of its context
    parameters followed by ``options_cls``'s fields (see the module docstring)."""

    def deco(factory: F) -> F:
        own = [
            p
            for p in inspect.signature(factory).parameters.values()
            if p.kind is not inspect.Parameter.VAR_KEYWORD
        ]
        factory.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [*own, *options_parameters(options_cls)],
            return_annotation=inspect.signature(factory).return_annotation,
        )
        return factory

    return deco
