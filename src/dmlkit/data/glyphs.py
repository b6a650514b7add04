"""Glyphs: an offline zero-shot benchmark of CJK characters rendered from the installed fonts.

Classes are characters, samples are the distinct renderings of a character by the distinct CJK
font faces found under ``font_dir`` (see :mod:`dmlkit.data.fonts`). Test characters are never seen
in training (class-disjoint, seeded ``test_fraction`` of the characters), so it measures the
generalisation to unseen classes that CUB/Cars/SOP measure, in CPU minutes.

Character choice: candidates are the CJK Unified Ideographs (U+4E00-U+9FFF) ranked by how many of
four national standards list them among their common characters (GB 2312 level 1, JIS X 0208
level 1, Big5 level 1, KS X 1001 hanja), then by code point; the first ``ceil(1.25 * num_chars)``
form the pool. Every distinct face renders every pool character; within a character, identical
images are kept once. The ``num_chars`` pool characters with the most distinct renderings (at least
``min_faces``; ties by rank) are the classes.

Rendering is deterministic (same font files, same images) and done once: the result is cached in
``cache_dir`` as an ``.npz`` keyed by the parameters, the font files (path, size, mtime), and the
Pillow and FreeType versions. With the packages of ``scripts/install-glyph-fonts.sh`` (Debian
12: 68 distinct faces), 1,000 characters give 64-67 images each, 65,202 in all, rendered in
about 16 s and loaded from the cache in about 0.2 s (32 px). Weights of one family (Noto Sans CJK
Regular / Medium, ...) are close, so even raw pixels reach a high precision@1; MAP@R (raw pixels
about 0.40) is the informative metric. Memory O(N size^2) uint8 for N images.

Style shift (``holdout_faces``): a group of font faces is held out of training entirely (its
renderings of the training characters are dropped from ``"train"`` and ``"val"``), and the
``"test"`` split becomes the unseen characters' renderings by the held-out faces (*queries*) and
by the other faces (*gallery*). Evaluation then reports the usual leave-one-out metrics over all
test items (the same items as without the option) and ``query_gallery/<metric>``: each held-out
face rendering queries the gallery of the faces of the training styles. It measures the
generalisation to a new style as well as to new classes. ``holdout_faces`` is a group of
:data:`FACE_GROUPS` (``"serif"``: Mincho/Ming/Song/Batang designs; ``"brush"``: Kai and brush
scripts) or a list of case-insensitive substrings of face names (``"Noto Serif"``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import PIL
from PIL import features

from dmlkit.data.base import ArrayDataset
from dmlkit.data.build import ItemTable, array_split
from dmlkit.data.fonts import distinct_faces, font_files
from dmlkit.data.registry import SplitRequest, register_dataset
from dmlkit.data.splits import class_disjoint_parts

FONT_DIR = "/usr/share/fonts"
FACE_GROUPS: dict[str, tuple[str, ...]] = {
    "serif": ("mincho", "ming", "serif", "sung", "batang", "shinmun", "hanamin", "cedar"),
    "brush": ("kai", "kouzan", "gungseo", "seto"),
}
CACHE_VERSION = 1
POOL_FACTOR = 1.25
FONT_PACKAGES = (
    "fonts-noto-cjk fonts-noto-cjk-extra fonts-ipafont-gothic fonts-ipafont-mincho "
    "fonts-ipaexfont-gothic fonts-ipaexfont-mincho fonts-ipamj-mincho fonts-arphic-ukai "
    "fonts-arphic-uming fonts-arphic-bkai00mp fonts-arphic-bsmi00lp fonts-horai-umefont "
    "fonts-kouzan-mouhitsu fonts-motoya-l-cedar fonts-motoya-l-maruberi fonts-wqy-zenhei "
    "fonts-wqy-microhei fonts-vlgothic fonts-unfonts-core fonts-hanazono fonts-misaki fonts-seto"
)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/dmlkit/glyphs``, by default ``~/.cache/dmlkit/glyphs``."""
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "dmlkit" / "glyphs"


def common_rank(char: str) -> int:
    """How many of GB 2312 level 1, JIS X 0208 level 1, Big5 level 1, KS X 1001 list ``char`` (0-4)."""
    rank = 0
    for codec, lead, first, last in (
        ("gb2312", 1, 0xB0, 0xD7),
        ("euc_jp", 1, 0xB0, 0xCF),
        ("big5", 2, 0xA440, 0xC67E),
        ("euc_kr", 1, 0xA1, 0xFE),
    ):
        try:
            code = char.encode(codec)
        except UnicodeEncodeError:
            continue
        value = int.from_bytes(code[:lead], "big")
        rank += int(len(code) == 2 and first <= value <= last)
    return rank


def candidate_pool(num_chars: int) -> list[str]:
    """The first ``ceil(POOL_FACTOR * num_chars)`` ideographs by (rank desc, code point)."""
    chars = [chr(c) for c in range(0x4E00, 0xA000)]
    chars.sort(key=lambda c: -common_rank(c))  # stable: code point order within a rank
    return chars[: math.ceil(POOL_FACTOR * num_chars)]


def render_glyphs(
    num_chars: int, image_size: int, min_faces: int, font_dir: str | Path
) -> dict[str, np.ndarray]:
    """Render the dataset (module docstring): ``images (N, S, S)`` uint8, ``chars (N,)`` int64 code
    points, ``faces (N,)`` int64 face ids, ``face_names (F,)`` str."""
    renderers, failed = distinct_faces(font_files(font_dir), image_size)
    if failed:
        shown = "\n  ".join(failed[:10])
        warnings.warn(
            f"glyphs: skipped {len(failed)} font face(s) that failed:\n  {shown}", stacklevel=3
        )
    if len(renderers) < min_faces:
        raise ValueError(
            f"glyphs: found {len(renderers)} distinct CJK font face(s) under {font_dir}, expected at "
            f"least min_faces={min_faces}. Install fonts with `sudo bash scripts/install-glyph-fonts.sh` "
            f"from the dmlkit repository, or: sudo apt-get install {FONT_PACKAGES}"
        )
    pool = candidate_pool(num_chars)
    per_char: list[list[tuple[int, np.ndarray]]] = [[] for _ in pool]
    seen: list[set[bytes]] = [set() for _ in pool]
    for face_id, renderer in enumerate(renderers):
        for k, char in enumerate(pool):
            try:
                img = renderer.render(char)
            except (OSError, ValueError):
                img = None
            if img is not None and img.tobytes() not in seen[k]:
                seen[k].add(img.tobytes())
                per_char[k].append((face_id, img))
    ranked = sorted(range(len(pool)), key=lambda k: -len(per_char[k]))
    chosen = sorted(k for k in ranked[:num_chars] if len(per_char[k]) >= min_faces)
    if len(chosen) < num_chars:
        raise ValueError(
            f"glyphs: only {len(chosen)} of the {len(pool)} candidate characters have at least "
            f"min_faces={min_faces} distinct renderings with the {len(renderers)} installed faces; "
            f"expected num_chars={num_chars}. Lower num_chars or min_faces, or install more fonts "
            f"(sudo apt-get install {FONT_PACKAGES})"
        )
    entries = [(ord(pool[k]), face, img) for k in chosen for face, img in per_char[k]]
    return {
        "images": np.stack([e[2] for e in entries]),
        "chars": np.array([e[0] for e in entries], dtype=np.int64),
        "faces": np.array([e[1] for e in entries], dtype=np.int64),
        "face_names": np.array([r.face.name for r in renderers]),
    }


def cache_path(
    cache_dir: Path, num_chars: int, image_size: int, min_faces: int, font_dir: str | Path
) -> Path:
    """The cache file of these parameters and the current font files and renderer versions."""
    fonts = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in font_files(font_dir)]
    key = json.dumps(
        [
            CACHE_VERSION,
            num_chars,
            image_size,
            min_faces,
            str(font_dir),
            fonts,
            PIL.__version__,
            features.version("freetype2"),
        ]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir / f"glyphs-{num_chars}c-{image_size}px-{digest}.npz"


def load_glyphs(
    num_chars: int,
    image_size: int,
    min_faces: int,
    font_dir: str | Path,
    cache_dir: str | Path | None,
) -> dict[str, np.ndarray]:
    """The rendered dataset from the cache, rendering and caching it first when absent."""
    path = cache_path(
        default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser(),
        num_chars,
        image_size,
        min_faces,
        font_dir,
    )
    if path.is_file():
        with np.load(path) as cached:
            return {k: cached[k] for k in cached.files}
    data = render_glyphs(num_chars, image_size, min_faces, font_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.npz")
    np.savez(partial, allow_pickle=False, **data)
    os.replace(partial, path)
    return data


def held_out_faces(face_names: np.ndarray, holdout: str | Sequence[str]) -> np.ndarray:
    """Bool ``(F,)``: the faces whose name contains one of the patterns of ``holdout`` (a name of
    :data:`FACE_GROUPS` or a list of substrings, case-insensitive). ``ValueError`` when none or
    every face matches."""
    if isinstance(holdout, str):
        if holdout not in FACE_GROUPS:
            raise ValueError(
                f"holdout_faces: expected one of {sorted(FACE_GROUPS)} or a list of face-name "
                f"patterns, got {holdout!r}"
            )
        patterns: Sequence[str] = FACE_GROUPS[holdout]
    else:
        patterns = list(holdout)
        if not patterns or not all(isinstance(p, str) and p for p in patterns):
            raise ValueError(
                f"holdout_faces: expected non-empty face-name patterns, got {holdout!r}"
            )
    lowered = [p.lower() for p in patterns]
    held = np.array([any(p in str(name).lower() for p in lowered) for name in face_names])
    if not held.any() or held.all():
        raise ValueError(
            f"holdout_faces: expected patterns {list(patterns)} to match some but not all of the "
            f"{len(face_names)} faces, matched {int(held.sum())}"
        )
    return held


def style_shift_parts(parts: np.ndarray, item_held: np.ndarray) -> np.ndarray:
    """Parts with the held-out items (``item_held (N,)`` bool) out of training (``"unused"``) and
    the test items split into ``"query"`` (held out) and ``"gallery"`` (the others)."""
    out = np.where(item_held, "unused", parts)
    out = np.where((parts == "test") & item_held, "query", out)
    return np.where((parts == "test") & ~item_held, "gallery", out)


@register_dataset("glyphs")
def glyphs(
    request: SplitRequest,
    *,
    num_chars: int = 1000,
    image_size: int = 32,
    test_fraction: float = 0.5,
    min_faces: int = 10,
    cache_dir: str | Path | None = None,
    holdout_faces: str | Sequence[str] | None = None,
) -> ArrayDataset:
    """CJK glyphs (module docstring); ``root`` is the font directory (default ``/usr/share/fonts``).

    ``"train"``/``"test"`` split the ``num_chars`` characters class-disjointly (seeded
    ``test_fraction``); ``"val"`` holds out ``val_classes`` of the training characters. Class names
    are the characters. Images are ``(image_size, image_size)`` grayscale, white ink on black.
    ``holdout_faces``: the style shift (module docstring); ``"test"`` then carries a
    ``query_mask`` (the held-out faces' items).
    """
    for name, value, low in (
        ("num_chars", num_chars, 2),
        ("image_size", image_size, 8),
        ("min_faces", min_faces, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")
    font_dir = FONT_DIR if request.root is None else request.root
    data = load_glyphs(num_chars, image_size, min_faces, font_dir, cache_dir)
    chars = data["chars"]
    parts = class_disjoint_parts(chars, test_fraction, request.seed)
    if holdout_faces is not None:
        held = held_out_faces(data["face_names"], holdout_faces)
        parts = style_shift_parts(parts, held[data["faces"]])
    names = {int(c): chr(int(c)) for c in np.unique(chars)}
    return array_split(ItemTable("glyphs", data["images"], chars, parts, names=names), request)
