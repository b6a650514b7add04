"""Every generated page and the site's navigation, from the repository at ``repo``.

The hand-written pages (``HAND``) come first; the generated ones follow the code: the API
section has a page per package, the benchmark section a page per result file.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import griffe

from sitegen.benchmarks import benchmark_pages
from sitegen.cli import cli_page
from sitegen.layers import api_pages
from sitegen.losses import loss_page
from sitegen.markdown import Page
from sitegen.rst import convert

GUIDES = [
    ("The four methods", "guides/methods.md"),
    ("Losses in your own loop", "guides/own-loop.md"),
    ("Evaluation", "guides/evaluation.md"),
    ("The Reality-Check protocol", "guides/protocol.md"),
    ("Several GPUs or machines", "guides/distributed.md"),
    ("From a model to a retrieval system", "guides/retrieval.md"),
    ("Speed, memory and throughput", "guides/performance.md"),
]
HAND: list[tuple[str, Any]] = [
    ("Home", "index.md"),
    ("Getting started", "getting-started.md"),
    ("Guides", [{title: uri} for title, uri in GUIDES]),
]
TAIL = [("Contributing", "contributing.md")]


def load_api(src: Path) -> griffe.Module:
    """The ``dmlkit`` package as Griffe reads it from ``src`` (no import), docstrings in
    Markdown."""
    root = griffe.load("dmlkit", search_paths=[str(src)], try_relative_path=False)
    if not isinstance(root, griffe.Module):
        raise TypeError(f"expected the dmlkit package under {src}, found {root!r}")
    convert(root)
    return root


def _import(module: str, src: Path) -> Any:
    """``module`` imported from ``src`` (the checkout the site documents)."""
    if str(src) not in sys.path:
        sys.path.insert(0, str(src))
    return importlib.import_module(module)


def generated_pages(repo: Path) -> list[Page]:
    """The loss catalogue, the CLI reference, the API pages and the benchmark pages."""
    src = repo / "src"
    root = load_api(src)
    losses = _import("dmlkit.losses", src)
    cli = _import("dmlkit.cli", src)
    return [
        loss_page(root, losses.LOSSES),
        cli_page(root, cli.build_parser()),
        *api_pages(root, src),
        *benchmark_pages(repo / "benchmarks" / "results", repo / "benchmarks"),
    ]


def navigation(pages: list[Page]) -> list[Any]:
    """The ``nav`` of ``mkdocs.yml``: hand-written pages, then the generated sections."""
    by_section: dict[str, list[dict[str, str]]] = {}
    top: list[Any] = [{title: uri} for title, uri in HAND]
    for page in pages:
        folder = page.uri.split("/")[0] if "/" in page.uri else ""
        if folder:
            by_section.setdefault(folder, []).append({page.title: page.uri})
        else:
            top.append({page.title: page.uri})
    names = {"api": "API", "benchmarks": "Benchmarks"}
    top += [{names.get(k, k.title()): v} for k, v in by_section.items()]
    return top + [{title: uri} for title, uri in TAIL]
