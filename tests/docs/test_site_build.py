"""The documentation site builds in strict mode and documents what the code offers.

One ``mkdocs build --strict`` of the repository's ``mkdocs.yml`` (a broken link, cross-reference
or anchor, a missing page or a docstring that mkdocstrings cannot render fails it), then checks on
the HTML: every package has its page, every name of a package's ``__all__`` links to a rendered
object, every registered loss, every command and every benchmark result has its section.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "dmlkit"
RESULTS = REPO / "benchmarks" / "results"

pytestmark = pytest.mark.slow


class Page(HTMLParser):
    """The ids, the links (href, text) and the text outside ``<pre>``/``<code>`` of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[tuple[str, str]] = []
        self.prose: list[str] = []
        self.text: list[str] = []
        self._href: str | None = None
        self._link_text: list[str] = []
        self._code_depth = 0
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        if tag == "a":
            self._href, self._link_text = values.get("href"), []
        if tag in ("pre", "code"):
            self._code_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append((self._href, "".join(self._link_text).strip()))
            self._href = None
        if tag in ("pre", "code"):
            self._code_depth -= 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._href is not None:
            self._link_text.append(data)
        if not self._code_depth:
            self.prose.append(data)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    done = subprocess.run(  # never with -q: it hides the warnings that --strict counts
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", "mkdocs.yml", "-d", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr[-6000:]}"
    return out


def read(site: Path, uri: str) -> Page:
    path = site / uri
    assert path.is_file(), f"the site has no page {uri}"
    return Page(path.read_text(encoding="utf-8"))


def packages() -> list[str]:
    return sorted(d.name for d in SRC.iterdir() if (d / "__init__.py").is_file())


def test_hand_written_pages_are_built(site: Path) -> None:
    for uri in ("index.html", "getting-started.html", "contributing.html"):
        assert read(site, uri).ids
    assert "Adding a loss, a dataset, a metric or a method" in "".join(
        read(site, "contributing.html").text
    )


@pytest.mark.parametrize("package", packages())
def test_every_package_has_an_api_page(site: Path, package: str) -> None:
    assert f"dmlkit.{package}" in read(site, f"api/{package}.html").ids


def test_every_public_name_links_to_its_documentation(site: Path) -> None:
    missing = []
    for package in packages():
        names = getattr(importlib.import_module(f"dmlkit.{package}"), "__all__", [])
        page = read(site, f"api/{package}.html")
        targets = {text: href for href, text in page.links if "#" in href}
        for name in names:
            href = targets.get(name)
            if href is None:
                missing.append(f"dmlkit.{package}.{name}: not listed")
                continue
            parts = urlsplit(href)
            where = (Path(f"api/{package}.html").parent / parts.path).as_posix()
            target = read(site, where if parts.path else f"api/{package}.html")
            if parts.fragment not in target.ids:
                missing.append(f"dmlkit.{package}.{name}: {href} is not rendered")
    assert missing == []


def test_docstrings_are_rendered_without_restructuredtext_roles(site: Path) -> None:
    found = {}
    for path in sorted((site / "api").glob("*.html")):
        prose = "".join(Page(path.read_text(encoding="utf-8")).prose)
        roles = [r for r in (":class:`", ":func:`", ":meth:`", ":mod:`") if r in prose]
        if roles:
            found[path.name] = roles
    assert found == {}


def test_loss_catalogue_has_every_registered_loss_and_its_options(site: Path) -> None:
    from dmlkit.losses import LOSSES

    page = read(site, "losses.html")
    text = "".join(page.text)
    for name in LOSSES.names():
        assert f"loss-{name}" in page.ids, name
        options = inspect.signature(LOSSES.get(name)).parameters
        assert all(option in text for option in options), name


def _commands(
    parser: argparse.ArgumentParser, path: list[str]
) -> list[tuple[list[str], argparse.ArgumentParser]]:
    """Every subcommand below ``parser``, nested ones included: (names, parser)."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append(([*path, name], sub))
                found += _commands(sub, [*path, name])
    return found


def test_cli_reference_has_every_command_and_option(site: Path) -> None:
    from dmlkit.cli import build_parser

    page = read(site, "cli.html")
    text = "".join(page.text)
    parser = build_parser()
    commands = _commands(parser, [])
    assert {"train", "eval", "list"} <= {names[0] for names, _ in commands}
    for names, sub in [([], parser), *commands]:
        if names:
            assert "cmd-" + "-".join(names) in page.ids, names
        for action in sub._actions:
            assert all(flag in text for flag in action.option_strings), (names, action)


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.json")), ids=lambda p: p.stem)
def test_every_benchmark_result_has_its_page(site: Path, path: Path) -> None:
    from sitegen.benchmarks import as_cell, lead

    data = json.loads(path.read_text(encoding="utf-8"))
    text = "".join(read(site, f"benchmarks/{path.stem}.html").text)
    machine = data.get("machine", {}) if isinstance(data, dict) else {}
    assert all(str(machine[k]) in text for k in ("date", "cpu_count") if k in machine)
    for key, value in data.items() if isinstance(data, dict) else ():
        shown = as_cell(value, key)
        if key != "machine" and shown is not None:  # a top-level figure: its name and value
            assert shown in text and (key in text or shown == lead(data)), key
