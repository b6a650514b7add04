"""Installed CJK font faces and glyph rendering for the glyph dataset.

Discovery: every ``.ttf``/``.otf``/``.ttc``/``.otc`` file under a directory, every face of a
collection, in sorted path order. A face that fails to load or to render is skipped and reported.

Rendering (:meth:`FaceRenderer.render`): the glyph is drawn anti-aliased at ``round(7/8 * size)``
pixels per em, cropped to its ink, scaled down only if the ink exceeds ``size`` (aspect kept,
Lanczos), and centred on a black ``(size, size)`` uint8 canvas (white ink). Centring on the ink
removes the differences in font metrics, so identical outlines give identical images.

Coverage: a character is covered by a face when its rendering has ink and differs from the face's
rendering of an unassigned code point (U+0378), which every face draws as its ``.notdef`` glyph
(a box, or nothing).

Distinct faces (:func:`distinct_faces`): a face is dropped when an earlier face has the same design
name, i.e. family and style after stripping region tags (Noto Sans CJK JP/KR/SC/TC/HK, AR PL UMing
CN/HK/TW are one design each), or renders the probe characters ``PROBE`` identically (renamed copies
such as IPAGothic / TakaoGothic). Faces that cover none of the probe characters are not CJK faces.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFont

FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".otc")
REGION_TAGS = frozenset({"JP", "KR", "SC", "TC", "HK", "CN", "TW", "MBE"})
NOT_A_CHARACTER = "\u0378"
PROBE = "一人大中日本東京水永愛國酬鬱靈龜"


@dataclass(frozen=True)
class FaceRef:
    """One face: font file ``path``, ``index`` in a collection, ``name`` = "family style"."""

    path: str
    index: int
    name: str


def face_count(path: Path) -> int:
    """Faces in a font file: the count in a TrueType/OpenType collection header, else 1."""
    with open(path, "rb") as fh:
        header = fh.read(12)
    if header[:4] == b"ttcf" and len(header) == 12:
        return int.from_bytes(header[8:12], "big")
    return 1


def design_key(family: str, style: str) -> tuple[str, str]:
    """``(family without trailing region tags, style)``: one key per typeface design."""
    words = family.split()
    while len(words) > 1 and words[-1] in REGION_TAGS:
        words.pop()
    return " ".join(words), style


class FaceRenderer:
    """Renders characters of one face at ``size`` x ``size`` pixels (module docstring)."""

    def __init__(self, face: FaceRef, size: int) -> None:
        self.face = face
        self.size = size
        self.font = ImageFont.truetype(
            face.path, round(size * 7 / 8), index=face.index, layout_engine=ImageFont.Layout.BASIC
        )
        self.notdef = self.ink(NOT_A_CHARACTER)

    def ink(self, char: str) -> np.ndarray:
        """The anti-aliased glyph cropped to its ink, ``(h, w)`` uint8 (``(0, 0)`` without ink)."""
        mask = self.font.getmask(char)
        arr = np.asarray(mask, dtype=np.uint8).reshape(mask.size[1], mask.size[0])
        rows, cols = np.flatnonzero(arr.any(axis=1)), np.flatnonzero(arr.any(axis=0))
        if len(rows) == 0:
            return np.zeros((0, 0), dtype=np.uint8)
        return arr[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

    def render(self, char: str) -> np.ndarray | None:
        """``(size, size)`` uint8 image of ``char``, or ``None`` when the face does not cover it."""
        glyph = self.ink(char)
        if glyph.size == 0 or (
            glyph.shape == self.notdef.shape and np.array_equal(glyph, self.notdef)
        ):
            return None
        h, w = glyph.shape
        if max(h, w) > self.size:
            scale = self.size / max(h, w)
            w, h = max(1, round(w * scale)), max(1, round(h * scale))
            glyph = np.asarray(Image.fromarray(glyph).resize((w, h), Image.Resampling.LANCZOS))
        canvas = np.zeros((self.size, self.size), dtype=np.uint8)
        top, left = (self.size - h) // 2, (self.size - w) // 2
        canvas[top : top + h, left : left + w] = glyph
        return canvas


def font_files(font_dir: str | Path) -> list[Path]:
    """Font files under ``font_dir`` (any depth), sorted."""
    root = Path(font_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in FONT_SUFFIXES and p.is_file())


def distinct_faces(files: Sequence[Path], size: int) -> tuple[list[FaceRenderer], list[str]]:
    """Renderers of the distinct CJK faces in ``files`` (module docstring), and the faces skipped
    because they failed to load or render, as ``"path#index: error"``."""
    renderers: list[FaceRenderer] = []
    failed: list[str] = []
    seen_designs: set[tuple[str, str]] = set()
    seen_probes: set[str] = set()
    for path in files:
        try:
            count = face_count(path)
        except OSError as err:
            failed.append(f"{path}: {err}")
            continue
        for index in range(count):
            try:
                font = ImageFont.truetype(str(path), 8, index=index)
                family, style = font.getname()
                key = design_key(family or path.stem, style or "")
                if key in seen_designs:
                    continue
                renderer = FaceRenderer(FaceRef(str(path), index, " ".join(key).strip()), size)
                probes = [renderer.render(c) for c in PROBE]
            except (OSError, ValueError) as err:
                failed.append(f"{path}#{index}: {err}")
                continue
            seen_designs.add(key)
            digest = hashlib.sha256()
            for c, img in zip(PROBE, probes, strict=True):
                digest.update(c.encode() + (b"-" if img is None else img.tobytes()))
            if all(p is None for p in probes) or digest.hexdigest() in seen_probes:
                continue
            seen_probes.add(digest.hexdigest())
            renderers.append(renderer)
    return renderers, failed
