"""Helpers for the data tests: tiny image files and synthetic TrueType fonts.

A synthetic glyph is a square frame (the same as the font's ``.notdef`` box) with a 3x3 grid of
cells inside, cell ``b`` filled when bit ``b`` of the glyph's pattern id is set. Distinct ids give
distinct images at 16 px and more; id 0 draws exactly the ``.notdef`` box, ``None`` nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image


def write_image(
    path: Path, color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (6, 5)
) -> Path:
    """A small RGB image at ``path`` (format from the suffix), parent directories created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def _rect(pen: Any, x0: int, y0: int, x1: int, y1: int) -> None:
    pen.moveTo((x0, y0))
    pen.lineTo((x0, y1))
    pen.lineTo((x1, y1))
    pen.lineTo((x1, y0))
    pen.closePath()


def pattern_glyph(pattern: int | None) -> Any:
    """A fontTools glyph: frame + the filled cells of ``pattern`` (``None``: empty glyph)."""
    from fontTools.pens.ttGlyphPen import TTGlyphPen

    pen = TTGlyphPen(None)
    if pattern is not None:
        for box in (
            (100, 0, 900, 60),
            (100, 740, 900, 800),
            (100, 60, 160, 740),
            (840, 60, 900, 740),
        ):
            _rect(pen, *box)
        for bit in range(9):
            if pattern >> bit & 1:
                row, col = divmod(bit, 3)
                x, y = 200 + col * 220, 100 + row * 220
                _rect(pen, x, y, x + 180, y + 180)
    return pen.glyph()


def build_font(
    path: Path, family: str, patterns: dict[str, int | None], notdef_box: bool = True
) -> Path:
    """A TrueType font at ``path`` mapping each character of ``patterns`` to its pattern glyph."""
    from fontTools.fontBuilder import FontBuilder

    names = [".notdef"] + [f"uni{ord(c):04X}" for c in patterns]
    glyphs = {".notdef": pattern_glyph(0 if notdef_box else None)}
    glyphs.update({f"uni{ord(c):04X}": pattern_glyph(p) for c, p in patterns.items()})
    fb = FontBuilder(1000, isTTF=True)
    fb.setupGlyphOrder(names)
    fb.setupCharacterMap({ord(c): f"uni{ord(c):04X}" for c in patterns})
    fb.setupGlyf(glyphs)
    fb.setupHorizontalMetrics({n: (1000, 0) for n in names})
    fb.setupHorizontalHeader(ascent=880, descent=-120)
    fb.setupNameTable({"familyName": family, "styleName": "Regular"})
    fb.setupOS2(sTypoAscender=880, sTypoDescender=-120, usWinAscent=880, usWinDescent=120)
    fb.setupPost()
    path.parent.mkdir(parents=True, exist_ok=True)
    fb.save(str(path))
    return path
