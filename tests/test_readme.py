"""Every Python snippet of README.md and of the hand-written documentation pages (``docs/*.md``,
``docs/guides/*.md``) runs as written: each block in a fresh interpreter, in an empty folder, with
the repository root as the only addition to what a user has."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "docs" / "guides").glob("*.md")),
]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _snippets() -> list[tuple[str, int, str]]:
    out = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        name = page.relative_to(ROOT).as_posix()
        out += [
            (name, text.count("\n", 0, m.start()) + 1, m.group(1)) for m in BLOCK.finditer(text)
        ]
    return out


def test_the_pages_have_python_snippets() -> None:
    assert len(_snippets()) >= 5
    assert any(name == "README.md" for name, _, _ in _snippets())


@pytest.mark.parametrize(
    ("page", "line", "code"), _snippets(), ids=[f"{p}:{n}" for p, n, _ in _snippets()]
)
def test_snippet_runs(page: str, line: int, code: str, tmp_path: Path) -> None:
    script = tmp_path / f"snippet_line{line}.py"
    script.write_text("import torch\ntorch.set_num_threads(1)\n" + code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{page} line {line}:\n{done.stderr[-3000:]}"
