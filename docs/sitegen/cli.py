"""The command-line reference, read from the parser ``dmlkit.cli.build_parser()``.

Every command and nested subcommand: its description, the usage line argparse prints, a table of
its arguments (name, default, choices, help) and the function that runs it (the parser's
``target`` default, ``"module:function"``). argparse has no public API to walk a parser, so this
reads its ``_actions``, as documentation tools for argparse do.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator

import griffe

from sitegen.markdown import Page, code, fenced, table
from sitegen.rst import target as documented_path

INTRO = """# Command line

Every `dmlkit` command with its arguments, generated from the argument parser
(`dmlkit.cli.build_parser()`) when the site is built. `dmlkit COMMAND --help` prints the same.
"""


def _subcommands(
    parser: argparse.ArgumentParser,
) -> Iterator[tuple[str, argparse.ArgumentParser, str]]:
    """``(name, parser, help)`` of the direct subcommands of ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, sub, helps.get(name, "")


def _name(action: argparse.Action) -> str:
    if action.option_strings:
        flags = ", ".join(action.option_strings)
        if action.nargs == 0:
            return flags
        metavar = action.metavar or action.dest.upper()
        return f"{flags} {metavar if isinstance(metavar, str) else ' '.join(metavar)}"
    return str(action.metavar or action.dest)


def _default(action: argparse.Action) -> str:
    if action.required:
        return "required"
    if action.default in (None, argparse.SUPPRESS, []) or action.nargs == 0:
        return ""
    return code(action.default)


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    text = action.help or ""
    if "%(" in text:
        text = parser._get_formatter()._expand_help(action)
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        text = f"{text} (one of {', '.join(code(c) for c in action.choices)})".strip()
    return text


def _arguments(parser: argparse.ArgumentParser) -> str:
    rows = [
        (code(_name(a)), _default(a), _help(parser, a))
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
    ]
    return table(["argument", "default", "help"], rows) if rows else ""


def _runner(root: griffe.Module, parser: argparse.ArgumentParser) -> str:
    target = parser.get_default("target")
    if not isinstance(target, str) or ":" not in target:
        return ""
    found = documented_path(root, target.replace(":", "."))
    return f"Runs [{code(target)}][{found}]." if found else f"Runs {code(target)}."


def _usage(parser: argparse.ArgumentParser) -> str:
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "80"
    try:
        return parser.format_usage().removeprefix("usage: ")
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def _anchor(path: list[str]) -> str:
    return "cmd-" + "-".join(path[1:])


def _commands(
    parser: argparse.ArgumentParser, path: list[str]
) -> Iterator[tuple[list[str], argparse.ArgumentParser, str]]:
    for name, sub, text in _subcommands(parser):
        yield [*path, name], sub, text
        yield from _commands(sub, [*path, name])


def cli_page(root: griffe.Module, parser: argparse.ArgumentParser) -> Page:
    """The reference page of ``parser`` (the ``dmlkit`` command)."""
    prog = parser.prog
    commands = list(_commands(parser, [prog]))
    overview = table(
        ["command", "what it does"],
        [(f"[{code(' '.join(p))}](#{_anchor(p)})", text) for p, _, text in commands],
    )
    parts = [INTRO, overview, f"## {prog}", parser.description or "", fenced(_usage(parser))]
    parts.append(_arguments(parser))
    for path, sub, text in commands:
        level = "#" * min(len(path), 4)
        parts.append(f"{level} {' '.join(path)} {{#{_anchor(path)}}}")
        parts.append(sub.description or text)
        parts.append(fenced(_usage(sub)))
        parts.append(_arguments(sub))
        parts.append(_runner(root, sub))
    return Page("cli.md", "Command line", "\n\n".join(p for p in parts if p) + "\n")
