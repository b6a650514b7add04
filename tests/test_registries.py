"""Every module that registers a component at import is imported by its package's ``__init__``.

A factory decorated ``@LOSSES.register("name")`` exists for ``dmlkit list``, the configs and the
documentation only once its module has been imported; the packages import their registering
modules in ``__init__.py``. Read from the source (no import): the registries (module-level
``X = Registry(...)``), the functions that register into one (``register_backbone``), the
modules that call either at import time, and what each package's ``__init__`` imports, directly
or through the modules it imports.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import dmlkit

SRC = Path(dmlkit.__file__).resolve().parent


def module_name(path: Path, root: Path) -> str:
    """``dmlkit.losses.presets`` for ``<root>/losses/presets.py`` (a package: its folder)."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources(root: Path) -> dict[str, tuple[Path, ast.Module]]:
    """Every module under ``root``: name -> (path, syntax tree)."""
    return {
        module_name(p, root): (p, ast.parse(p.read_text(encoding="utf-8"), filename=str(p)))
        for p in sorted(root.rglob("*.py"))
    }


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runs_in_part(node: ast.AST) -> list[ast.AST] | None:
    """The parts of ``node`` that run at import when not all of it does: a function's
    decorators and defaults, the ``else`` of ``if TYPE_CHECKING:``; None when all of it runs."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        defaults = [d for d in node.args.kw_defaults if d is not None]
        return [*node.decorator_list, *node.args.defaults, *defaults]
    if isinstance(node, ast.If) and _is_type_checking(node):
        return list(node.orelse)
    return None


def import_time_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """The nodes executed when the module is imported: everything but function bodies and
    ``if TYPE_CHECKING:`` blocks."""
    for node in ast.iter_child_nodes(tree):
        parts = _runs_in_part(node)
        for part in [node] if parts is None else parts:
            yield part
            yield from import_time_nodes(part)


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def bindings(module: str, is_package: bool, tree: ast.Module) -> dict[str, str]:
    """Names bound by the module's imports: local name -> what it refers to (``pkg.mod.NAME``)."""
    bound: dict[str, str] = {}
    for node in import_time_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    bound[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, is_package, node)
            for alias in node.names:
                bound[alias.asname or alias.name] = f"{source}.{alias.name}"
    return bound


def imported_modules(module: str, is_package: bool, tree: ast.Module, known: set[str]) -> set[str]:
    """The modules of ``known`` that importing ``module`` imports directly (parents included)."""
    found: set[str] = set()
    for node in import_time_nodes(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, is_package, node)
            names = [source] + [f"{source}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & known
    return found - {module}


def _target(name: str, module: str, bound: dict[str, str], defined: set[str]) -> str:
    return bound.get(name, f"{module}.{name}" if name in defined else name)


def registries(modules: dict[str, tuple[Path, ast.Module]]) -> set[str]:
    """``module.NAME`` of every module-level ``NAME = Registry(...)`` (a class named
    ``Registry``, imported or defined in the module)."""
    found: set[str] = set()
    for module, (path, tree) in modules.items():
        bound = bindings(module, path.name == "__init__.py", tree)
        for node in tree.body:
            if not isinstance(node, ast.Assign | ast.AnnAssign):
                continue
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            value = node.value
            if not isinstance(value, ast.Call):
                continue
            func = value.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if bound.get(name, name).rsplit(".", 1)[-1] == "Registry":
                found |= {f"{module}.{t.id}" for t in targets if isinstance(t, ast.Name)}
    return found


def _registering_call(
    node: ast.AST, module: str, bound: dict[str, str], defined: set[str], known: set[str]
) -> bool:
    """Whether ``node`` is ``REGISTRY.register(...)`` or a call of a registering function."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Attribute) and func.attr == "register":
        return (
            isinstance(func.value, ast.Name)
            and _target(func.value.id, module, bound, defined) in known
        )
    return isinstance(func, ast.Name) and _target(func.id, module, bound, defined) in known


def defined_names(tree: ast.Module) -> set[str]:
    """Names the module defines at its top level (functions, classes, assignments)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def _callee(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return func.value.id
    return func.id if isinstance(func, ast.Name) else ""


def registering_modules(modules: dict[str, tuple[Path, ast.Module]]) -> dict[str, str]:
    """Each module that registers a component at import -> the registry or function it calls."""
    known = registries(modules)
    scopes = {
        m: (bindings(m, path.name == "__init__.py", tree), defined_names(tree))
        for m, (path, tree) in modules.items()
    }
    for module, (_, tree) in modules.items():  # functions that register into a registry
        bound, defined = scopes[module]
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and any(
                _registering_call(n, module, bound, defined, known) for n in ast.walk(node)
            ):
                known.add(f"{module}.{node.name}")
    found: dict[str, str] = {}
    for module, (_, tree) in modules.items():
        bound, defined = scopes[module]
        for part in import_time_nodes(tree):
            if isinstance(part, ast.Call) and _registering_call(
                part, module, bound, defined, known
            ):
                found[module] = _target(_callee(part), module, bound, defined)
                break
    return found


def import_closure(start: str, modules: dict[str, tuple[Path, ast.Module]]) -> set[str]:
    """Every module of ``modules`` that importing ``start`` imports."""
    known = set(modules)
    seen = {start}
    todo = [start]
    while todo:
        module = todo.pop()
        path, tree = modules[module]
        for found in imported_modules(module, path.name == "__init__.py", tree, known):
            if found not in seen:
                seen.add(found)
                todo.append(found)
    return seen


def package_of(module: str, modules: dict[str, tuple[Path, ast.Module]]) -> str:
    """The top-level package a module belongs to (``dmlkit.losses``; the root for top-level
    modules)."""
    parts = module.split(".")
    layer = ".".join(parts[:2])
    return layer if layer in modules and layer != module else parts[0]


def unimported_registrations(root: Path) -> dict[str, str]:
    """Registering modules that their package's ``__init__`` does not import: module -> package."""
    modules = sources(root)
    offenders = {}
    for module in registering_modules(modules):
        package = package_of(module, modules)
        if module != package and module not in import_closure(package, modules):
            offenders[module] = package
    return offenders


def test_every_registering_module_is_imported_by_its_package() -> None:
    assert unimported_registrations(SRC) == {}


def test_the_scan_finds_each_way_dmlkit_registers() -> None:
    found = registering_modules(sources(SRC))
    assert found["dmlkit.losses.presets"] == "dmlkit.losses.registry.LOSSES"  # @X.register(...)
    assert found["dmlkit.data.transforms"] == "dmlkit.data.transforms.TRANSFORMS"  # X.register()()
    assert found["dmlkit.models.resnet"] == "dmlkit.models.registry.register_backbone"  # in a loop
    assert found["dmlkit.methods.registry"] == "dmlkit.methods.registry.METHODS"  # where defined
    assert "dmlkit.commands.list" not in found  # reads registries, registers nothing


def test_a_module_its_package_does_not_import_is_reported(
    tmp_path: Path, write_files: Callable[[Path, dict[str, str]], None]
) -> None:
    root = tmp_path / "pkg"
    write_files(
        root,
        {
            "__init__.py": "",
            "core/__init__.py": "",
            "core/registry.py": "class Registry:\n    pass\n",
            "things/__init__.py": "from pkg.things import seen as _seen\n"
            "from .chain import helper\n",
            "things/registry.py": "from pkg.core.registry import Registry\nTHINGS = Registry()\n",
            "things/seen.py": "from pkg.things.registry import THINGS\n\n"
            "@THINGS.register('a')\ndef a():\n    pass\n",
            "things/chain.py": "from pkg.things import deep\n\ndef helper():\n    pass\n",
            "things/deep.py": "from pkg.things.registry import THINGS as T\nT.register('d')(len)\n",
            "things/lost.py": "from pkg.things.registry import THINGS\n\n"
            "@THINGS.register('b')\ndef b():\n    pass\n",
            "things/lazy.py": "def later():\n    from pkg.things.registry import THINGS\n"
            "    THINGS.register('c')(later)\n",
            "things/typing_only.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from pkg.things.registry import THINGS\n    THINGS.register('e')(len)\n",
        },
    )
    modules = sources(root)
    assert set(registering_modules(modules)) == {"pkg.things.seen", "pkg.things.deep",
                                                 "pkg.things.lost"}  # fmt: skip
    assert unimported_registrations(root) == {"pkg.things.lost": "pkg.things"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("from . import a\n", {"pkg.sub.a"}),
        ("from .a import f\n", {"pkg.sub.a"}),
        ("from .. import b\n", {"pkg.b"}),
        ("import pkg.b as other\n", {"pkg.b"}),
    ],
)
def test_relative_and_aliased_imports_are_followed(text: str, expected: set[str]) -> None:
    tree = ast.parse(text)
    known = {"pkg", "pkg.b", "pkg.sub", "pkg.sub.a"}
    assert imported_modules("pkg.sub", True, tree, known) - {"pkg", "pkg.sub"} == expected
