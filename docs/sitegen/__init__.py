"""The generated parts of the documentation site, built from the code on every ``mkdocs build``.

- :mod:`sitegen.layers`: one API page per package of ``src/dmlkit`` (and one for the top-level
  modules), in the order of the layer rule;
- :mod:`sitegen.losses`: the loss catalogue, read from the loss registry;
- :mod:`sitegen.cli`: the command-line reference, read from ``dmlkit.cli.build_parser()``;
- :mod:`sitegen.benchmarks`: one page per ``benchmarks/results/*.json``;
- :mod:`sitegen.rst`: a Griffe extension that turns the reStructuredText used in docstrings
  (roles, literal blocks, simple tables, section titles) into Markdown and cross-references;
- :mod:`sitegen.site`: the list of generated pages and the navigation, used by ``docs/hooks.py``.
"""
