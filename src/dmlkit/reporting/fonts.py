"""Fonts for class names in the report's figures: CJK glyph classes, accented names, any text.

matplotlib's default font (DejaVu Sans) has no CJK ideographs; drawing them gives empty boxes and
one warning per glyph and figure. :func:`label_fonts` finds installed fonts that cover the
characters the default lacks and returns the family list to draw class names with (matplotlib
falls back along the list glyph by glyph); a character no installed font has is written as its
code point, ``U+4E2D``, so a label always says something and nothing warns.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

# Fonts tried first (broad coverage, sans serif); any other installed font is tried after them.
PREFERRED = ("Noto Sans CJK", "WenQuanYi", "Droid Sans Fallback", "Noto Serif CJK", "IPAGothic")
# Fonts that claim every code point with placeholder glyphs.
EXCLUDED = ("Last Resort",)


@dataclass(frozen=True)
class LabelFonts:
    """``families``: font families to draw labels with, the default first; ``missing``: the
    characters no installed font covers (written as code points by :meth:`printable`)."""

    families: list[str]
    missing: frozenset[str] = field(default_factory=frozenset)

    def printable(self, text: str) -> str:
        """``text`` with every character of :attr:`missing` replaced by ``U+XXXX``."""
        return "".join(f"U+{ord(c):04X}" if c in self.missing else c for c in text)


def _charmap(path: str) -> set[int]:
    from matplotlib.ft2font import FT2Font

    try:
        return set(FT2Font(path).get_charmap())
    except (OSError, RuntimeError, ValueError):
        return set()


def label_fonts(texts: Iterable[str]) -> LabelFonts:
    """The families that draw every character of ``texts`` (module docstring)."""
    from matplotlib import font_manager, rcParams

    families = list(rcParams["font.family"])
    default_path = font_manager.findfont(font_manager.FontProperties(family=families))
    needed = {ord(c) for text in texts for c in text if not c.isspace()} - _charmap(default_path)
    if not needed:
        return LabelFonts(families)
    entries = [e for e in font_manager.fontManager.ttflist if not e.name.startswith(EXCLUDED)]
    rank = {name: i for i, name in enumerate(PREFERRED)}
    entries.sort(
        key=lambda e: (
            next((rank[p] for p in PREFERRED if e.name.startswith(p)), len(rank)),
            e.name,
        )
    )
    seen: set[str] = set()
    for entry in entries:
        if not needed:
            break
        if entry.fname in seen or entry.name in families:
            continue
        seen.add(entry.fname)
        covered = needed & _charmap(entry.fname)
        if covered:
            families.append(entry.name)
            needed -= covered
    return LabelFonts(families, frozenset(chr(c) for c in needed))
