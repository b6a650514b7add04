"""MkDocs hooks (``mkdocs.yml``: ``hooks``): the generated pages and the navigation.

On every build (and every reload of ``mkdocs serve``) the pages of :mod:`sitegen` are generated
from the checkout this file belongs to and added to the site as if they were files in ``docs/``.
Docstrings and benchmark results are read again on each reload; the loss registry and the
argument parser are imported once per process, so restart ``mkdocs serve`` to see a newly
registered loss or a new command.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from sitegen.markdown import Page  # noqa: E402
from sitegen.site import generated_pages, navigation  # noqa: E402

_pages: list[Page] = []


def on_config(config: Any) -> Any:
    """Generate the pages and set the navigation from them."""
    _pages[:] = generated_pages(REPO)
    config["nav"] = navigation(_pages)
    return config


def on_files(files: Files, config: Any) -> Files:
    """Add the generated pages to the site's files."""
    for page in _pages:
        files.append(File.generated(config, page.uri, content=page.markdown))
    return files
