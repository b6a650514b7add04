"""The loss catalogue, read from the loss registry ``dmlkit.losses.LOSSES``.

For every registered name: its family and source (the registry's ``info(name)`` where it offers
one, else the module that registers it), the class it builds, its options with their defaults
(the factory's signature) and its docstring (formula, defaults, sources). Names registered to the
same factory are listed together.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any

import griffe

from sitegen.markdown import Page, code, table
from sitegen.rst import find, target

INTRO = """# Loss catalogue

Every loss that `dmlkit.losses.create(name, **options)` builds, and that a config names in
`loss: {{name: ..., options: {{...}}}}`. This page is generated from the registry
(`dmlkit.losses.LOSSES`) when the site is built: {count} names. Every loss takes
`forward(emb, labels, ref_emb=None, ref_labels=None)` and returns a 0-dim tensor.
"""


def _info(registry: Any, name: str) -> dict[str, str]:
    """The registry's descriptive fields for ``name`` (empty if the registry has none)."""
    info = getattr(registry, "info", None)
    if not callable(info):
        return {}
    found = info(name)
    if dataclasses.is_dataclass(found) and not isinstance(found, type):
        found = dataclasses.asdict(found)
    return {str(k): str(v) for k, v in dict(found or {}).items() if v not in (None, "")}


def _unwrap(factory: Callable[..., Any]) -> Callable[..., Any]:
    while isinstance(factory, functools.partial):
        factory = factory.func
    return factory


def _path(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"


def _link(root: griffe.Module, path: str, text: str) -> str:
    """A cross-reference to ``path`` if the site documents it, else inline code."""
    found = target(root, path)
    return f"[{code(text)}][{found}]" if found else code(text)


def _builds(root: griffe.Module, factory: Callable[..., Any]) -> str:
    target = _unwrap(factory)
    if inspect.isclass(target):
        return _link(root, _path(target), target.__name__)
    try:
        returned = typing.get_type_hints(target).get("return")
    except Exception:  # unresolvable annotations: show the text
        returned = inspect.signature(target).return_annotation
    if inspect.isclass(returned):
        return _link(root, _path(returned), returned.__name__)
    return "" if returned is inspect.Signature.empty else code(returned)


def _default(value: Any) -> str:
    if isinstance(value, float):
        return code(f"{value:.6g}")
    return code(repr(value))


def _options(factory: Callable[..., Any]) -> str:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return ""
    rows = []
    for p in parameters:
        if p.kind is p.VAR_POSITIONAL:
            continue
        if p.kind is p.VAR_KEYWORD:
            rows.append((code(f"**{p.name}"), "further options, passed on (see the factory)"))
        elif p.default is p.empty:
            rows.append((code(p.name), "required"))
        else:
            rows.append((code(p.name), _default(p.default)))
    return table(["option", "default"], rows) if rows else "No options."


def _docstring(root: griffe.Module, factory: Callable[..., Any]) -> str:
    found = find(root, _path(_unwrap(factory)))
    if found is not None and found.docstring is not None:
        return found.docstring.value
    return inspect.getdoc(_unwrap(factory)) or ""


def loss_page(root: griffe.Module, registry: Any) -> Page:
    """The catalogue page of ``registry`` (the loss registry)."""
    groups: dict[int, list[str]] = {}
    for name in registry.names():
        groups.setdefault(id(registry.get(name)), []).append(name)
    entries = []
    for names in groups.values():
        factory = registry.get(names[0])
        info = _info(registry, names[0])
        family = info.pop("family", "") or code(_unwrap(factory).__module__)
        entries.append((family, names, factory, info))
    entries.sort(key=lambda e: (e[0], e[1][0]))
    has_family = any(_info(registry, n).get("family") for n in registry.names())

    overview = table(
        ["loss", "family" if has_family else "module", "source", "builds"],
        [
            (
                ", ".join(f"[{code(n)}](#loss-{n})" for n in names),
                family,
                info.get("source", ""),
                _builds(root, factory),
            )
            for family, names, factory, info in entries
        ],
    )
    parts = [INTRO.format(count=len(registry.names())), overview]
    current = None
    for family, names, factory, info in entries:
        if family != current:
            parts.append(f"## {family}")
            current = family
        heading = " = ".join(names)
        parts.append(f"### {heading} {{#loss-{names[0]}}}")
        anchors = [f'<a id="loss-{n}"></a>' for n in names[1:]]
        facts = [f"Builds {_builds(root, factory)}" if _builds(root, factory) else ""]
        facts += [f"{key}: {value}" for key, value in info.items()]
        facts.append("Factory: " + _link(root, _path(_unwrap(factory)), _unwrap(factory).__name__))
        parts.append("".join(anchors) + " · ".join(f for f in facts if f))
        parts.append(_docstring(root, factory))
        parts.append(_options(factory))
    return Page("losses.md", "Loss catalogue", "\n\n".join(p for p in parts if p) + "\n")
