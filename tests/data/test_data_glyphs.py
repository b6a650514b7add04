"""Glyph dataset: coverage, face deduplication, character choice, cache and splits.

Most tests use synthetic fonts (``data_helpers.build_font``) so that every rendering is known; one
test runs on the installed CJK fonts and skips only when fewer than two are installed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from data_helpers import build_font

from dmlkit.data import create_dataset
from dmlkit.data import glyphs as glyph_module
from dmlkit.data.fonts import PROBE, FaceRef, FaceRenderer, distinct_faces, face_count, font_files
from dmlkit.data.glyphs import FONT_DIR, candidate_pool, common_rank

pytest.importorskip("fontTools", reason="fontTools (a matplotlib dependency) builds the test fonts")

NUM_CHARS = 4
POOL = candidate_pool(NUM_CHARS)
EXTRA_PROBES = [c for c in PROBE if c not in POOL]


def patterns(offset: int, chars: list[str], probe_offset: int) -> dict[str, int | None]:
    """Distinct pattern ids: ``8 * k + offset`` for pool characters, more for the probe ones."""
    found = {c: 8 * POOL.index(c) + offset for c in chars}
    found.update({c: 100 + 8 * k + probe_offset for k, c in enumerate(EXTRA_PROBES)})
    return found


@pytest.fixture(scope="module")
def font_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fontTools.ttLib import TTFont
    from fontTools.ttLib.ttCollection import TTCollection

    root = tmp_path_factory.mktemp("fonts")
    build_font(root / "01_alpha.ttf", "Synth Alpha", patterns(1, POOL, 1))
    build_font(root / "02_alpha_copy.ttf", "Synth Alpha Copy", patterns(1, POOL, 1))
    build_font(root / "03_beta.ttf", "Synth Beta", patterns(2, POOL, 2))
    build_font(root / "04_beta_kr.ttf", "Synth Beta KR", patterns(3, POOL, 3))
    build_font(root / "05_gamma.ttf", "Synth Gamma", patterns(4, POOL[:3], 4))
    delta = patterns(5, POOL, 5)
    delta[POOL[0]] = 8 * 0 + 1  # draws the first character exactly like Alpha
    build_font(root / "06_delta.ttf", "Synth Delta", delta)
    parts = [
        build_font(root / "tmp_e.ttf", "Synth Epsilon", patterns(6, POOL, 6)),
        build_font(root / "tmp_z.ttf", "Synth Zeta", patterns(7, POOL, 7)),
    ]
    collection = TTCollection()
    collection.fonts = [TTFont(str(p)) for p in parts]
    collection.save(str(root / "07_collection.ttc"))
    for p in parts:
        p.unlink()
    (root / "08_bad.ttf").write_bytes(b"this is not a font")
    build_font(root / "09_latin.ttf", "Latin Only", {"A": 3})
    return root


EXPECTED_FACES = ["Synth Alpha Regular", "Synth Beta Regular", "Synth Gamma Regular",
                  "Synth Delta Regular", "Synth Epsilon Regular", "Synth Zeta Regular"]  # fmt: skip


def test_coverage_detection(tmp_path: Path) -> None:
    font = build_font(tmp_path / "f.ttf", "F", {"一": 5, "人": None, "大": 0})
    renderer = FaceRenderer(FaceRef(str(font), 0, "F"), 16)
    img = renderer.render("一")
    assert img is not None and img.shape == (16, 16) and img.dtype == np.uint8
    rows, cols = np.flatnonzero(img.any(1)), np.flatnonzero(img.any(0))
    assert abs((rows[0] + rows[-1]) - 15) <= 1 and abs((cols[0] + cols[-1]) - 15) <= 1  # centred
    assert renderer.render("人") is None  # empty glyph
    assert renderer.render("大") is None  # draws the .notdef box
    assert renderer.render("水") is None  # not in the cmap
    empty_notdef = build_font(tmp_path / "g.ttf", "G", {"一": 5}, notdef_box=False)
    assert FaceRenderer(FaceRef(str(empty_notdef), 0, "G"), 16).render("水") is None


def test_distinct_faces(font_dir: Path) -> None:
    files = font_files(font_dir)
    assert face_count(font_dir / "07_collection.ttc") == 2 and face_count(files[0]) == 1
    renderers, failed = distinct_faces(files, 16)
    assert [r.face.name for r in renderers] == EXPECTED_FACES
    assert [r.face.index for r in renderers][-2:] == [0, 1]
    assert len(failed) == 1 and "08_bad.ttf" in failed[0]


def test_character_choice_and_images(font_dir: Path, tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match=r"(?s)skipped 1 font face\(s\).*08_bad\.ttf"):
        data = glyph_module.load_glyphs(NUM_CHARS, 16, 2, font_dir, tmp_path)
    # renderings per pool character: Alpha, Beta, Gamma (first 3 only), Delta (a copy of Alpha for
    # the first), Epsilon, Zeta -> 5, 6, 6, 5, 5: the top 4 by count, ties by rank, are POOL[:4]
    chars, counts = np.unique(data["chars"], return_counts=True)
    assert [chr(c) for c in chars] == sorted(POOL[:4]) and len(POOL) == 5
    assert dict(zip(map(chr, chars), counts.tolist(), strict=True)) == {
        POOL[0]: 5, POOL[1]: 6, POOL[2]: 6, POOL[3]: 5
    }  # fmt: skip
    assert data["face_names"].tolist() == EXPECTED_FACES
    alpha = FaceRenderer(FaceRef(str(font_dir / "01_alpha.ttf"), 0, "a"), 16)
    mine = (data["chars"] == ord(POOL[1])) & (data["faces"] == 0)
    assert np.array_equal(data["images"][mine][0], alpha.render(POOL[1]))
    for c in chars:
        imgs = data["images"][data["chars"] == c]
        assert len({img.tobytes() for img in imgs}) == len(imgs)


def test_dataset_splits_cache_and_determinism(
    font_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kwargs = {"root": font_dir, "num_chars": NUM_CHARS, "image_size": 16, "min_faces": 2}
    with pytest.warns(UserWarning, match="skipped 1 font face"):
        train = create_dataset("glyphs", "train", cache_dir=tmp_path / "a", seed=3, **kwargs)
    assert len(list((tmp_path / "a").glob("glyphs-4c-16px-*.npz"))) == 1
    with pytest.warns(UserWarning, match="skipped 1 font face"):
        fresh = create_dataset("glyphs", "train", cache_dir=tmp_path / "b", seed=3, **kwargs)
    assert np.array_equal(train.images, fresh.images) and np.array_equal(train.labels, fresh.labels)

    def no_rendering(*args: object) -> None:
        raise AssertionError("rendered again instead of reading the cache")

    monkeypatch.setattr(glyph_module, "render_glyphs", no_rendering)
    test = create_dataset("glyphs", "test", cache_dir=tmp_path / "a", seed=3, **kwargs)
    assert len(train.class_names) == len(test.class_names) == 2
    assert sorted(train.class_names + test.class_names) == sorted(POOL[:4])
    assert train.image_channels == 1 and train.image_size == 16
    x, y = test[0]
    assert x.shape == (1, 16, 16) and y == 0
    font = font_dir / "03_beta.ttf"
    os.utime(font, ns=(font.stat().st_atime_ns, font.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="rendered again"):
        create_dataset("glyphs", "test", cache_dir=tmp_path / "a", seed=3, **kwargs)


@pytest.mark.filterwarnings("ignore:glyphs. skipped")
def test_style_shift_holds_faces_out_of_training(font_dir: Path, tmp_path: Path) -> None:
    """holdout_faces: the held-out faces never appear in train or val; test holds the same items
    as without the option, its held-out renderings marked as queries (the other faces' the
    gallery)."""
    kwargs = {"root": font_dir, "num_chars": NUM_CHARS, "image_size": 16, "min_faces": 2}
    kwargs |= {"cache_dir": tmp_path, "seed": 3}
    data = glyph_module.load_glyphs(NUM_CHARS, 16, 2, font_dir, tmp_path)
    face_of = {img.tobytes(): int(f) for img, f in zip(data["images"], data["faces"], strict=True)}
    held = {1, 4}  # Synth Beta and Synth Epsilon
    shifted = {s: create_dataset("glyphs", s, holdout_faces=["beta", "EPSILON"], **kwargs)
               for s in ("train", "test")}  # fmt: skip
    plain = {s: create_dataset("glyphs", s, **kwargs) for s in ("train", "test")}
    train_faces = {face_of[img.tobytes()] for img in shifted["train"].images}
    assert train_faces.isdisjoint(held) and len(train_faces) == 4
    assert len(shifted["train"]) < len(plain["train"]) and plain["train"].query_mask is None
    test = shifted["test"]
    assert np.array_equal(test.images, plain["test"].images)
    assert np.array_equal(test.labels, plain["test"].labels)
    assert test.query_mask is not None and test.query_mask.any()
    faces = np.array([face_of[img.tobytes()] for img in test.images])
    assert np.array_equal(test.query_mask, np.isin(faces, list(held)))
    val = create_dataset("glyphs", "val", holdout_faces=["beta"], val_classes=1, **kwargs)
    assert val.query_mask is None
    assert {face_of[img.tobytes()] for img in val.images}.isdisjoint({1})
    with pytest.raises(ValueError, match="holdout_faces: expected one of"):
        create_dataset("glyphs", "train", holdout_faces="italic", **kwargs)
    with pytest.raises(ValueError, match="match some but not all"):
        create_dataset("glyphs", "train", holdout_faces=["synth"], **kwargs)
    with pytest.raises(ValueError, match="match some but not all"):
        create_dataset("glyphs", "train", holdout_faces=["omega"], **kwargs)


def test_too_few_faces_or_characters(font_dir: Path, tmp_path: Path) -> None:
    kwargs = {"root": font_dir, "num_chars": NUM_CHARS, "image_size": 16, "cache_dir": tmp_path}
    with (
        pytest.warns(UserWarning),
        pytest.raises(ValueError, match="found 6 distinct CJK font face") as err,
    ):
        create_dataset("glyphs", "train", min_faces=7, **kwargs)
    assert "install-glyph-fonts.sh" in str(err.value) and "fonts-noto-cjk" in str(err.value)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="only 2 of the 5 candidate"):
        create_dataset("glyphs", "train", min_faces=6, **kwargs)
    with pytest.raises(ValueError, match="num_chars: expected an int >= 2"):
        create_dataset("glyphs", "train", num_chars=1)


def test_common_rank() -> None:
    assert common_rank("一") == 4  # in all four national common sets
    assert common_rank("们") == 1  # simplified only (GB 2312 level 1)
    assert common_rank("\u9fa5") == 0
    pool = candidate_pool(1000)
    assert len(pool) == 1250 and pool[0] == "一" and all(common_rank(c) == 4 for c in pool)


@pytest.mark.filterwarnings("ignore:glyphs. skipped")  # some installed faces fail to render
def test_installed_fonts(tmp_path: Path) -> None:
    renderers, _ = distinct_faces(font_files(FONT_DIR), 16)
    if len(renderers) < 2:
        pytest.skip(
            f"fewer than 2 CJK font faces under {FONT_DIR} ({len(renderers)}); "
            "install them with scripts/install-glyph-fonts.sh"
        )
    kwargs = {"num_chars": 6, "image_size": 16, "min_faces": 2, "cache_dir": tmp_path}
    train = create_dataset("glyphs", "train", **kwargs)
    test = create_dataset("glyphs", "test", **kwargs)
    assert not set(train.class_names) & set(test.class_names)
    for ds in (train, test):
        assert all(0x4E00 <= ord(c) <= 0x9FFF for c in ds.class_names)
        for label in range(ds.num_classes):
            imgs = ds.images[ds.labels == label]
            assert len(imgs) >= 2 and len({i.tobytes() for i in imgs}) == len(imgs)
