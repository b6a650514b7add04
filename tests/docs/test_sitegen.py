"""The site generator's parts on small inputs: reST to Markdown, cross-reference resolution, the
layer order, and the API, loss, command-line and benchmark pages."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import griffe
import pytest
from sitegen.benchmarks import benchmark_pages, load_results, result_page, writers
from sitegen.cli import cli_page
from sitegen.layers import package_names, package_page, summary
from sitegen.losses import loss_page
from sitegen.markdown import cell, number
from sitegen.rst import convert, inline, target, to_markdown

WriteFiles = Callable[[Path, dict[str, str]], None]
LINKS = {"Foo": "pkg.Foo", "pkg.mod.bar": "pkg.mod.bar", ".sib": "pkg.sib"}


def resolve(name: str) -> str | None:
    return LINKS.get(name)


@pytest.fixture
def pkg(tmp_path: Path, write_files: WriteFiles) -> griffe.Module:
    """A small package, loaded and converted as the site does."""
    write_files(
        tmp_path / "pkg",
        {
            "__init__.py": '"""The package."""\n',
            "things/__init__.py": '"""Things: :class:`Widget` and more."""\n'
            "from pkg.things.mod import LIMIT, Widget, make\n"
            "from pkg.things._hidden import Hidden\n"
            '__all__ = ["LIMIT", "Hidden", "Widget", "make"]\n',
            "things/mod.py": '"""Widgets, see :mod:`.other`."""\n'
            "LIMIT = 3\n"
            "class Widget:\n"
            '    """A widget (Smith et al. 2020). Uses :func:`make`, :func:`_helper`, '
            ':class:`Plain` and :meth:`spin`."""\n'
            "    def spin(self) -> None:\n"
            '        """Spin."""\n'
            "class Plain:\n    pass\n"
            "def make(size: int = 2) -> Widget:\n"
            '    """Make a :class:`Widget`."""\n'
            "    return Widget()\n"
            "def _helper() -> None:\n"
            '    """Private."""\n',
            "things/other.py": '"""Other things."""\n',
            "things/_hidden.py": 'class Hidden:\n    """Hidden class."""\n',
        },
    )
    root = griffe.load("pkg", search_paths=[str(tmp_path)], try_relative_path=False)
    assert isinstance(root, griffe.Module)
    convert(root)
    return root


def test_roles_become_cross_references_or_inline_code() -> None:
    text = ":class:`Foo`, :func:`~pkg.mod.bar`, :meth:`missing`, :mod:`.sib`"
    assert inline(text, resolve) == (
        "[`Foo`][pkg.Foo], [`bar`][pkg.mod.bar], `missing`, [`sib`][pkg.sib]"
    )


def test_running_text_is_escaped_and_code_spans_are_kept() -> None:
    text = "a_b, <x>, [s]_+ and ``code_<x>[i]`` and `y_z`"
    assert inline(text) == r"a\_b, &lt;x>, \[s\]\_+ and ``code_<x>[i]`` and `y_z`"


def test_literal_and_indented_blocks_become_fenced_code() -> None:
    doc = (
        "Formula::\n\n    L = a_b\n\n    + c\n\nAfter ::\n\n    x\n\nQuote:\n\n    y = [1]\n\nEnd."
    )
    assert to_markdown(doc) == (
        "Formula:\n\n```\nL = a_b\n\n+ c\n```\n\nAfter\n\n```\nx\n```\n\n"
        "Quote:\n\n```\ny = [1]\n```\n\nEnd."
    )


def test_simple_tables_become_markdown_tables() -> None:
    doc = (
        "=====  ===========  =====\n"
        "name   formula      note\n"
        "=====  ===========  =====\n"
        "a_1    x + y        :class:`Foo`\n"
        "b      a very long  two\n"
        "       formula\n"
        "c      |P| spills over three\n"
        "=====  ===========  =====\n"
    )
    assert to_markdown(doc, resolve) == (
        "| name | formula | note |\n|---|---|---|\n"
        "| a\\_1 | x + y | [`Foo`][pkg.Foo] |\n"
        "| b | a very long formula | two |\n"
        "| c | \\|P\\| spills over | three |"
    )


def test_section_titles_and_doctests() -> None:
    doc = "Intro.\n\nPolicies\n--------\n- one\n\n>>> f(1)\n2"
    assert to_markdown(doc) == "Intro.\n\n**Policies**\n\n- one\n\n```pycon\n>>> f(1)\n2\n```"


def test_table_cells_escape_pipes_outside_code_only() -> None:
    assert cell("a | b `x | y`\n c") == "a \\| b `x | y` c"
    assert number(0.123456) == "0.1235" and number(3.0) == "3" and number(7) == "7"


def test_docstring_roles_resolve_in_scope_and_skip_what_the_site_does_not_show(
    pkg: griffe.Module,
) -> None:
    widget = pkg["things.mod.Widget"]
    assert widget.docstring is not None
    assert widget.docstring.value == (
        "A widget (Smith et al. 2020). Uses [`make`][pkg.things.mod.make], `_helper`, "
        "`Plain` and [`spin`][pkg.things.mod.Widget.spin]."
    )
    assert pkg["things.mod"].docstring.value == "Widgets, see [`other`][pkg.things.other]."
    assert target(pkg, "pkg.things.Widget") == "pkg.things.mod.Widget"  # through the alias
    assert target(pkg, "pkg.things.mod.Plain") is None  # no docstring: not rendered
    assert target(pkg, "pkg.things.Hidden") is None  # private module
    assert summary(widget) == "A widget (Smith et al. 2020)."


def test_package_page_links_public_names_and_renders_the_rest_itself(
    pkg: griffe.Module,
) -> None:
    page = package_page(pkg, "things")
    assert page.uri == "api/things.md"
    text = page.markdown
    assert "| [`Widget`][pkg.things.mod.Widget] | class | A widget (Smith et al. 2020). |" in text
    assert "| [`make`][pkg.things.mod.make] | function |" in text
    for local in ("LIMIT", "Hidden"):  # no docstring / private module: rendered on the page
        assert f"[`{local}`][pkg.things.{local}]" in text
        assert f"::: pkg.things.{local}\n" in text
    assert "::: pkg.things.mod\n" in text and "::: pkg.things.other\n" in text
    assert "_hidden" not in text.split("## Public names")[1].split("::: pkg.things.mod")[1]


def test_layer_order_follows_the_layer_test_then_names(
    tmp_path: Path, write_files: WriteFiles
) -> None:
    write_files(
        tmp_path,
        {
            "src/dmlkit/__init__.py": "",
            "src/dmlkit/base/__init__.py": "",
            "src/dmlkit/upper/__init__.py": "",
            "src/dmlkit/top/__init__.py": "",
            "src/dmlkit/extra/__init__.py": "",
            "src/dmlkit/_private/__init__.py": "",
            "src/dmlkit/notapackage/data.yaml": "",
            "tests/test_layers.py": 'LAYERS = [\n    "upper",\n    "base",\n]\n',
        },
    )
    assert package_names(tmp_path / "src") == ["upper", "base", "extra", "top"]
    (tmp_path / "tests" / "test_layers.py").unlink()
    assert package_names(tmp_path / "src") == ["base", "extra", "top", "upper"]


class FakeRegistry:
    def __init__(self, factories: dict[str, object], info: dict[str, dict[str, str]]) -> None:
        self.factories, self._info = factories, info

    def names(self) -> list[str]:
        return sorted(self.factories)

    def get(self, name: str) -> object:
        return self.factories[name]


class InfoRegistry(FakeRegistry):
    def info(self, name: str) -> dict[str, str]:
        return self._info.get(name, {})


def shrink(scale: float = 0.5, *, steps: int, **rest: float) -> int:
    """Shrink by ``scale``: ``y = s x``."""
    return steps


def grow(rate: float = 2.0) -> int:
    """Grow."""
    return 1


def test_loss_page_uses_registry_info_when_offered(pkg: griffe.Module) -> None:
    factories = {"shrink": shrink, "small": shrink, "grow": grow}
    info = {"shrink": {"family": "scale", "source": "Doe 2021"}, "grow": {"family": "scale"}}
    text = loss_page(pkg, InfoRegistry(factories, info)).markdown
    assert "3 names" in text
    assert "| [`grow`](#loss-grow) | scale |  |" in text
    assert "| [`shrink`](#loss-shrink), [`small`](#loss-small) | scale | Doe 2021 |" in text
    assert "### shrink = small {#loss-shrink}" in text and '<a id="loss-small"></a>' in text
    assert "Shrink by ``scale``: ``y = s x``." in text
    assert "| `scale` | `0.5` |" in text and "| `steps` | required |" in text
    assert "| `**rest` |" in text


def test_loss_page_groups_by_module_without_registry_info(pkg: griffe.Module) -> None:
    text = loss_page(pkg, FakeRegistry({"grow": grow}, {})).markdown
    assert "| loss | module | source | builds |" in text
    assert f"## `{__name__}`" in text


def test_cli_page_has_every_nested_command(pkg: griffe.Module) -> None:
    parser = argparse.ArgumentParser(prog="tool", description="A tool.")
    parser.add_argument("--verbose", action="store_true", help="say more")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run it", description="Run it.")
    run.add_argument("config", help="a file")
    run.add_argument("--mode", default="fast", choices=("fast", "slow"), help="how")
    run.add_argument("--out", required=True, help="where to (default %(default)s)")
    run.set_defaults(target="pkg.things.mod:make")
    index = sub.add_parser("index", help="indexes")
    add = index.add_subparsers().add_parser("add", help="add items")
    add.add_argument("items", nargs="+")
    add.set_defaults(target="pkg.things.mod:_helper")
    text = cli_page(pkg, parser).markdown
    assert "| [`tool run`](#cmd-run) | run it |" in text
    assert "### tool index add {#cmd-index-add}" in text
    assert "| `--mode MODE` | `fast` | how (one of `fast`, `slow`) |" in text
    assert "| `--out OUT` | required | where to (default None) |" in text
    assert "| `--verbose` |  | say more |" in text
    assert "Runs [`pkg.things.mod:make`][pkg.things.mod.make]." in text
    assert "Runs `pkg.things.mod:_helper`." in text  # private: named, not linked


RESULT = {
    "benchmark": "speed of things",
    "threads": 2,
    "complete": True,
    "seeds": [0, 1, 2],
    "runs_s": [0.5, 0.25, 0.75, 1.0, 2.0, 3.0],
    "results": [
        {"arm": "a", "summary": {"map@r": {"mean": 0.5, "std": 0.01}}, "runs": [{"x": {"y": 1}}]},
        {"arm": "b", "summary": {"map@r": {"mean": 0.625, "std": 0.02}}, "peak_bytes": 2**21},
    ],
    "metrics": {"before": {"map@r": 0.1}, "best": {"map@r": 0.7}, "best_step": 600},
    "config": {"data": {"root": "x"}, "model": {"dim": 8}, "train": {"steps": 3}, "seed": 0},
    "machine": {"date": "2026-01-01", "cpu_count": 2, "versions": {"torch": "2.4"}},
}


def test_result_page_renders_by_shape() -> None:
    from sitegen.benchmarks import Result

    text = result_page(Result("speed", RESULT, ""), {"speed": "benchmarks/b.py"}).markdown
    assert text.startswith("# speed\n\nspeed of things\n\n")
    assert "written by `benchmarks/b.py`" in text
    assert "| threads | 2 |" in text and "| complete | True |" in text
    assert "| seeds | 0, 1, 2 |" in text and "| runs_s | median 0.875 of 6 |" in text
    assert "| arm | summary.map@r | peak_bytes |" in text
    assert "| b | 0.625 ± 0.02 | 2.0 MiB |" in text
    assert "not shown here: `runs`" in text
    assert "| metrics | map@r |" in text and "| best | 0.7 |" in text
    assert "| best_step | 600 |" in text
    assert "| seed | 0 |" in text  # mappings that share no fields: each folded as JSON
    assert '??? note "model"\n\n    ```json\n    {\n     "dim": 8\n    }\n    ```' in text
    assert "## Machine" in text and "| versions.torch | 2.4 |" in text


def test_any_json_gets_a_page(tmp_path: Path, write_files: WriteFiles) -> None:
    results = tmp_path / "results"
    write_files(
        results,
        {
            "plain.json": "[1, 2, 3]",
            "broken.json": "{not json",
            "table.json": json.dumps({"results": [{"a": 1}, {"b": [{"c": {}}]}]}),
            "notes.md": "# Notes\n\nA table.\n",
            "with.json": json.dumps({"x": 1}),
            "with.md": "# Report\n\nText.\n",
        },
    )
    write_files(tmp_path / "bench", {"bench_with.py": 'OUT = "with.json"\n'})
    loaded = {r.name: r for r in load_results(results)}
    assert set(loaded) == {"plain", "broken", "table", "with", "notes"}
    assert "not readable as JSON" in loaded["broken"].data["error"]
    assert writers(tmp_path / "bench", list(loaded)) == {"with": "benchmarks/bench_with.py"}
    pages = {p.title: p.markdown for p in benchmark_pages(results, tmp_path / "bench")}
    assert "| [plain](plain.md) |" in pages["Overview"]
    assert "## result\n\n1, 2, 3" in pages["plain"]
    assert "## Report\n\nText." in pages["with"] and "| x | 1 |" in pages["with"]
    assert "## Notes" in pages["notes"]
