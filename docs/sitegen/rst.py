"""The reStructuredText of dmlkit's docstrings as Markdown, for mkdocstrings.

The docstrings are written in the reST subset that reads well in a terminal: ``double
backticks``, Sphinx roles (``:class:`PairLoss```, ``:func:`~dmlkit.x.f```), literal blocks after
``::``, indented formulas, simple tables (``=== ===``), underlined section titles and doctest
blocks. :func:`to_markdown` turns each of them into its Markdown form:

- a role becomes a cross-reference ``[`name`][dmlkit.full.path]`` when ``resolve`` finds the
  object on a page of the site, and inline code otherwise (never a broken link);
- a literal block, an indented block and a doctest block become fenced code;
- a simple table becomes a Markdown table, a section title a bold line;
- in running text, ``_``, ``<``, ``[`` and ``]`` are escaped (reST gives them no meaning there,
  Markdown would), code spans are left as they are.

:class:`RestructuredText` is the Griffe extension that applies it to every docstring of the
``dmlkit`` package when mkdocstrings loads it (``mkdocs.yml``: ``extensions``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import griffe

from sitegen.markdown import CODE_SPAN, cell, fenced

Resolver = Callable[[str], str | None]

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|obj|exc|const):`([^`]+)`")
TABLE_BORDER = re.compile(r"^ *=+(?: +=+)+ *$")
UNDERLINE = re.compile(r"^([=\-~^\"'*+#])\1{2,} *$")
ESCAPES = {"_": r"\_", "<": "&lt;", "[": r"\[", "]": r"\]"}


def no_links(_: str) -> str | None:
    """A resolver that finds nothing (every role becomes inline code)."""
    return None


def role(target: str, resolve: Resolver) -> str:
    """One role's target as a Markdown cross-reference, or as inline code if unresolved."""
    shown = target.strip()
    short = shown.startswith("~")
    shown = shown.lstrip("~")
    text = shown.rsplit(".", 1)[-1] if short else shown.lstrip(".")
    path = resolve(shown)
    return f"[`{text}`][{path}]" if path else f"`{text}`"


def inline(text: str, resolve: Resolver = no_links) -> str:
    """Running text: roles resolved, reST-neutral characters escaped outside code spans."""
    links: list[str] = []

    def keep(match: re.Match[str]) -> str:
        links.append(role(match.group(1), resolve))
        return f"\x00{len(links) - 1}\x00"

    text = ROLE.sub(keep, text)
    parts: list[str] = []
    last = 0
    for span in CODE_SPAN.finditer(text):
        parts.append(_escape(text[last : span.start()]))
        parts.append(span.group(0))
        last = span.end()
    parts.append(_escape(text[last:]))
    joined = "".join(parts)
    return re.sub("\x00(\\d+)\x00", lambda m: links[int(m.group(1))], joined)


def _escape(text: str) -> str:
    return "".join(ESCAPES.get(char, char) for char in text)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _literal_marker(line: str) -> str | None:
    """The paragraph line without its ``::`` if it announces a literal block, else None."""
    stripped = line.rstrip()
    if not stripped.endswith("::"):
        return None
    if stripped.strip() == "::":
        return ""
    if stripped.endswith(" ::"):
        return stripped[:-3]
    return stripped[:-1]


def _block(lines: list[str], start: int, base: int) -> tuple[list[str], int]:
    """The lines from ``start`` indented deeper than ``base`` (blank lines inside kept)."""
    end = start
    while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > base):
        end += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    body = lines[start:end]
    depth = min(_indent(line) for line in body if line.strip())
    return [line[depth:] for line in body], end


def _table(lines: list[str], start: int, resolve: Resolver) -> tuple[str, int] | None:
    """A simple table starting at the border line ``start``: its Markdown form and end."""
    borders = [start]
    i = start + 1
    while i < len(lines) and lines[i].strip():
        if TABLE_BORDER.match(lines[i]):
            borders.append(i)
        i += 1
    if len(borders) < 2:
        return None
    if len(borders) == 2:
        end = borders[1] + 1
        header: list[str] = []
        body_lines = lines[start + 1 : borders[1]]
    else:
        end = borders[2] + 1
        header = lines[start + 1 : borders[1]]
        body_lines = lines[borders[1] + 1 : borders[2]]
    starts = [m.start() for m in re.finditer(r"=+", lines[start])]
    rows = _rows(header, starts) if header else [[""] * len(starts)]
    head = rows[0]
    body = _rows(body_lines, starts)

    def fmt(row: list[str]) -> str:
        return "| " + " | ".join(cell(inline(c, resolve)) for c in row) + " |"

    out = [fmt(head), "|" + "|".join("---" for _ in starts) + "|", *[fmt(r) for r in body]]
    return "\n".join(out), end


def _rows(lines: list[str], starts: list[int]) -> list[list[str]]:
    """Table rows split at the columns' starts; a row with an empty first cell continues the
    previous one; text running over a column gap moves the split to the next space."""
    rows: list[list[str]] = []
    for line in lines:
        cells: list[str] = []
        cut = starts[0]
        for k in range(len(starts)):
            nxt = starts[k + 1] if k + 1 < len(starts) else len(line)
            nxt = max(nxt, cut)
            while k + 1 < len(starts) and 0 < nxt < len(line) and line[nxt - 1] != " ":
                nxt += 1
            cells.append(line[cut:nxt].strip())
            cut = nxt
        if rows and not cells[0]:
            rows[-1] = [
                " ".join(filter(None, (a, b))) for a, b in zip(rows[-1], cells, strict=True)
            ]
        else:
            rows.append(cells)
    return rows


def to_markdown(text: str, resolve: Resolver = no_links) -> str:
    """A whole docstring (already dedented) from reST to Markdown."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    literal_next = False
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            out.append("")
            i += 1
            continue
        indent = _indent(line)
        prev_blank = i == 0 or not lines[i - 1].strip()
        base = _indent(out_base_line(lines, i))
        if prev_blank and (literal_next or (i > 0 and indent > base)):
            body, i = _block(lines, i, indent - 1)
            out.append(fenced("\n".join(body)))
            literal_next = False
            continue
        literal_next = False
        if line.lstrip().startswith(">>>") and prev_blank:
            end = i
            while end < len(lines) and lines[end].strip():
                end += 1
            out.append(fenced("\n".join(x[indent:] for x in lines[i:end]), "pycon"))
            i = end
            continue
        if TABLE_BORDER.match(line):
            found = _table(lines, i, resolve)
            if found is not None:
                out.append(found[0])
                i = found[1]
                continue
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if UNDERLINE.match(following.strip()) and len(following.strip()) >= len(line.strip()):
            out.append(f"**{inline(line.strip(), resolve)}**")
            out.append("")
            i += 2
            continue
        marker = _literal_marker(line)
        if marker is not None and (i + 1 == len(lines) or not lines[i + 1].strip()):
            if marker.strip():
                out.append(inline(marker, resolve))
            literal_next = True
            i += 1
            continue
        out.append(inline(line, resolve))
        i += 1
    return "\n".join(out).strip("\n")


def out_base_line(lines: list[str], i: int) -> str:
    """The first line of the paragraph before line ``i`` (its indent is the text's base)."""
    j = i - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    while j > 0 and lines[j - 1].strip():
        j -= 1
    return lines[j] if j >= 0 else ""


def find(root: griffe.Object, path: str, depth: int = 0) -> griffe.Object | None:
    """The object at ``path`` under ``root``, through aliases that stay inside ``root``."""
    parts = path.split(".")
    if parts[0] != root.name or depth > 20:
        return None
    obj: Any = root
    for part in parts[1:]:
        if obj.is_alias:
            obj = find(root, obj.target_path, depth + 1)
            if obj is None:
                return None
        obj = obj.members.get(part)
        if obj is None:
            return None
    if obj.is_alias:
        return find(root, obj.target_path, depth + 1)
    found: griffe.Object = obj
    return found


def public(path: str) -> bool:
    """Whether no part of ``path`` is private (``_name``; ``__dunder__`` names are public)."""
    return not any(part.startswith("_") and not part.startswith("__") for part in path.split("."))


def documented(obj: griffe.Object) -> bool:
    """Whether the site renders ``obj`` where it is defined: a public path, and a docstring on
    it or on one of its members (mkdocstrings leaves out objects without any); modules are
    always rendered."""
    return public(obj.path) and (obj.is_module or obj.has_docstrings)


def target(root: griffe.Object, path: str) -> str | None:
    """The path under which the site documents the object at ``path`` (None if it does not)."""
    obj = find(root, path)
    return obj.path if obj is not None and documented(obj) else None


def resolver(root: griffe.Object, scope: griffe.Object) -> Resolver:
    """Resolve role targets as Python would from inside ``scope`` (its members, its module's
    names and imports, relative ``.module`` names), keeping only objects the site shows."""

    def resolve(name: str) -> str | None:
        if name.startswith("."):
            module: Any = scope
            while not module.is_module:
                module = module.parent
            package = module if module.is_package or module.is_subpackage else module.parent
            candidates = [f"{package.path}{name}"]
        else:
            head, _, rest = name.partition(".")
            candidates = [name]
            try:
                full = scope.resolve(head)
            except griffe.NameResolutionError:
                full = ""
            if full:
                candidates.insert(0, f"{full}.{rest}" if rest else full)
        for candidate in candidates:
            found = target(root, candidate)
            if found:
                return found
        return None

    return resolve


class RestructuredText(griffe.Extension):
    """Griffe extension: every docstring of the package, reST to Markdown (see the module)."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        convert(pkg)


def convert(root: griffe.Module) -> None:
    """Rewrite, in place, every docstring under ``root`` from reST to Markdown."""
    seen: set[str] = set()

    def visit(obj: griffe.Object) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value, resolver(root, obj))
        for member in obj.members.values():
            if isinstance(member, griffe.Object):  # not an alias: converted where defined
                visit(member)

    visit(root)
