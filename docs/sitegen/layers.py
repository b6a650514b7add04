"""The API pages: one per package folder of ``src/dmlkit`` and one for the top-level modules.

A folder with an ``__init__.py`` is a package and gets a page, so a new layer gets one without
editing the site. Pages come in the order of the layer rule, ``LAYERS`` in
``tests/test_layers.py`` (each layer imports only from those before it); packages the rule does
not list follow by name.

Each page holds the package's docstring, a table of its public names (``__all__``) with a link to
where each is documented, and every public submodule rendered by mkdocstrings. A name the
site does not render where it is defined (no docstring, or a private module) is rendered on the
page itself.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import griffe

from sitegen.markdown import CODE_SPAN, Page, code, table
from sitegen.rst import documented, find, public

# A full stop that ends a sentence: followed by a capital, not after an abbreviation.
SENTENCE_END = re.compile(r"(?<!\bal)(?<!\be\.g)(?<!\bi\.e)(?<!\bvs)\.(?= [A-Z`]|$)")


def package_names(src: Path) -> list[str]:
    """The packages of ``src/dmlkit`` (folders with an ``__init__.py``), in layer order."""
    found = sorted(
        d.name
        for d in (src / "dmlkit").iterdir()
        if (d / "__init__.py").is_file() and not d.name.startswith("_")
    )
    declared = declared_layers(src.parent / "tests" / "test_layers.py")
    return sorted(found, key=lambda n: (declared.index(n) if n in declared else len(declared), n))


def declared_layers(path: Path) -> list[str]:
    """``LAYERS`` as assigned in the layer test (empty if the file or the list is absent)."""
    if not path.is_file():
        return []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "LAYERS" for t in node.targets)
            and isinstance(node.value, ast.List | ast.Tuple)
        ):
            return [
                e.value
                for e in node.value.elts
                if isinstance(e, ast.Constant) and isinstance(e.value, str)
            ]
    return []


def summary(obj: griffe.Object) -> str:
    """The first sentence of an object's (converted) docstring, on one line."""
    if obj.docstring is None:
        return ""
    paragraph = " ".join(obj.docstring.value.split("\n\n")[0].split())
    if paragraph.startswith("```") or paragraph.startswith("|"):
        return ""
    spans = [(m.start(), m.end()) for m in CODE_SPAN.finditer(paragraph)]
    for end in SENTENCE_END.finditer(paragraph):
        if not any(a <= end.start() < b for a, b in spans):
            return paragraph[: end.start() + 1]
    return paragraph


def _directive(path: str, **options: Any) -> str:
    lines = [f"::: {path}"]
    if options:
        lines.append("    options:")
        for key, value in options.items():
            lines.append(f"      {key}: {str(value).lower() if isinstance(value, bool) else value}")
    return "\n".join(lines)


def _is_package(module: griffe.Module) -> bool:
    """Whether ``module`` is a package (Griffe's ``is_package`` is true for the top one only)."""
    return bool(module.is_package or module.is_subpackage)


def _public_modules(module: griffe.Module) -> list[griffe.Module]:
    """The public modules under ``module``, subpackages' modules included, by name."""
    found: list[griffe.Module] = []
    for name, member in sorted(module.members.items()):
        if isinstance(member, griffe.Module) and public(name):
            found.append(member)
            if _is_package(member):
                found += _public_modules(member)
    return found


def _exports_table(root: griffe.Module, package: griffe.Module) -> tuple[str, list[str]]:
    """The public-names table, and the names to render on the page itself (those not rendered
    where they are defined)."""
    exports = package.exports
    if not exports:
        return (
            f"{code(package.path)} declares no `__all__`: its names are imported from the "
            "modules below.",
            [],
        )
    rows = []
    local: list[str] = []
    for name in exports:
        name = str(name)
        target = find(root, f"{package.path}.{name}")
        if target is not None and documented(target):
            rows.append((f"[`{name}`][{target.path}]", target.kind.value, summary(target)))
        else:
            local.append(name)
            kind = target.kind.value if target is not None else ""
            text = summary(target) if target is not None else ""
            rows.append((f"[`{name}`][{package.path}.{name}]", kind, text))
    return table(["name", "kind", "summary"], rows), local


def package_page(root: griffe.Module, name: str) -> Page:
    """The API page of ``dmlkit.<name>``."""
    package = root.members[name]
    if not isinstance(package, griffe.Module):
        raise TypeError(f"{root.path}.{name}: expected a package, found {package!r}")
    exports, local = _exports_table(root, package)
    parts = [
        _directive(package.path, heading_level=1, members=False, show_root_full_path=True),
        "## Public names",
        exports,
    ]
    for export in local:
        parts.append(
            _directive(f"{package.path}.{export}", heading_level=3, show_if_no_docstring=True)
        )
    for module in _public_modules(package):
        parts.append(_directive(module.path, heading_level=2))
    return Page(f"api/{name}.md", name, "\n\n".join(parts) + "\n")


def top_level_page(root: griffe.Module) -> Page:
    """The page of ``dmlkit`` itself and its top-level modules (``cli``, ``config``, ...)."""
    parts = [_directive(root.path, heading_level=1, members=False)]
    modules = [m for m in _public_modules(root) if m.parent is root and not _is_package(m)]
    parts += [_directive(m.path, heading_level=2) for m in modules]
    return Page("api/index.md", "dmlkit (top level)", "\n\n".join(parts) + "\n")


def api_pages(root: griffe.Module, src: Path) -> list[Page]:
    """The top-level page, then one page per package in layer order."""
    return [top_level_page(root)] + [package_page(root, n) for n in package_names(src)]
