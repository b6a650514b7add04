"""Input pipeline: images/s per core from JPEG files to normalised batches, ours vs torchvision.

A folder of photo-like JPEGs (500 x 375, quality 90; smooth colour fields, shapes, texture and
noise, about 67 kB each, like a photo at that quality; ``--size`` for others) is written to a
temporary directory in ImageFolder layout. On one thread (``torch.set_num_threads(1)``, loading in the main process, as
one loader worker does), every pipeline makes whole passes over the folder into batches of 32:

- ``ours``: :class:`dmlkit.data.FileDataset` with the preset's training transform (``dml`` 224,
  ``dml227``, ``caffe_bgr`` 227) or the ``dml`` evaluation transform;
- ``reference``: torchvision's ``ImageFolder`` + ``RandomResizedCrop(size)`` +
  ``RandomHorizontalFlip()`` + ``ToTensor()`` + ``Normalize`` (evaluation: ``Resize(256)`` +
  ``CenterCrop(224)`` + ``ToTensor()`` + ``Normalize``), the same output size;
- ``previous``: ``ImageFolder`` with the ``dml`` preset as it was composed before
  (``Resize(256)`` of the whole image, ``RandomResizedCrop(224, scale=(0.16, 1))``, flip,
  ``ToTensor``, ``Normalize``).

In every round each pipeline loads one batch (the next 32 files of the folder, in turn), the
order of the pipelines reversed every other round, so that a busy machine slows the pipelines of
a round alike. Each batch is timed by the process's CPU time (per core: one thread does all the
work, and the time it waits for a core on a shared machine is not counted) and by the wall
clock. images per CPU-second is the median over rounds; ``ours_vs_reference`` is the ratio of
the medians (goal >= 1.5), ``paired_median`` the median of the per-round ratios; the same from
the wall clock in ``ratios_wall_clock``. A decoder table gives ms per image of PIL (full and
reduced-size "draft" decoding) and ``torchvision.io.decode_jpeg`` on 500 x 375 and 1000 x 750
JPEGs, alternating the same way. Machine, load average (before and after) and versions go into
the JSON.

    python benchmarks/bench_input_pipeline.py [--images 64] [--rounds 25] [--quick] [--out-dir DIR]
                                              [--size 1000 750]   # -> input_pipeline_1000x750.json
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS_DIR, wall_and_cpu, write_result
from dmlkit.data import FileDataset, create_transform
from dmlkit.data.transforms import CAFFE_BGR_MEAN, IMAGENET_MEAN, IMAGENET_STD

GOAL = 1.5
PRESETS = {"dml": 224, "dml227": 227, "caffe_bgr": 227}
BATCH = 32


def synthetic_photo(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A photo-like RGB image: a smooth colour field, 25 blurred shapes, band-limited texture and
    pixel noise (JPEG quality 90 gives about 2.8 bits per pixel, as photos do)."""
    field = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    img = Image.fromarray(field).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(25):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        box = [x0, y0, x0 + int(rng.integers(10, 200)), y0 + int(rng.integers(10, 150))]
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    base = np.asarray(img.filter(ImageFilter.GaussianBlur(1.5))).astype(np.int16)
    texture = rng.normal(0, 40, size=(height // 2, width // 2, 3)) + 128
    texture_img = Image.fromarray(np.clip(texture, 0, 255).astype(np.uint8))
    detail = np.asarray(texture_img.resize((width, height), Image.Resampling.BILINEAR))
    noisy = base + (detail.astype(np.int16) - 128) // 2 + rng.normal(0, 3, size=base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def write_folder(root: Path, images: int, size: tuple[int, int], seed: int = 0) -> list[Path]:
    """``images`` JPEGs (quality 90) of ``size`` in 4 class folders under ``root``."""
    rng = np.random.default_rng(seed)
    paths = []
    for k in range(images):
        path = root / f"class{k % 4}" / f"{k:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        synthetic_photo(rng, *size).save(path, quality=90)
        paths.append(path)
    return paths


def caffe_bgr(x: Tensor) -> Tensor:
    """RGB in [0, 1] -> BGR on 0-255 minus the Caffe mean (the previous preset's last step)."""
    return x.flip(0) * 255.0 - torch.tensor(CAFFE_BGR_MEAN).view(3, 1, 1)


def torchvision_pipelines(root: Path) -> dict[str, Dataset[Any]]:
    """The reference and previous pipelines of every preset, and the evaluation reference."""
    from torchvision import datasets
    from torchvision import transforms as T

    normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    out: dict[str, Dataset[Any]] = {}
    for name, size in PRESETS.items():
        last = caffe_bgr if name == "caffe_bgr" else normalize
        reference = [T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(), last]
        previous = [
            T.Resize(256),
            T.RandomResizedCrop(size, scale=(0.16, 1.0), ratio=(3 / 4, 4 / 3)),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            last,
        ]
        out[f"{name}/reference"] = datasets.ImageFolder(str(root), T.Compose(reference))
        if name == "dml":
            out[f"{name}/previous"] = datasets.ImageFolder(str(root), T.Compose(previous))
    evaluation = [T.Resize(256), T.CenterCrop(224), T.ToTensor(), normalize]
    out["dml eval/reference"] = datasets.ImageFolder(str(root), T.Compose(evaluation))
    return out


def our_pipelines(paths: list[Path]) -> dict[str, FileDataset]:
    """Our presets over the same files (training transforms, and ``dml`` for evaluation)."""
    labels = np.array([int(p.parent.name[-1]) for p in paths])
    files = [str(p) for p in paths]
    names = [f"class{c}" for c in range(4)]
    out = {
        f"{name}/ours": FileDataset(files, labels, names, create_transform(name, train=True))
        for name in PRESETS
    }
    out["dml eval/ours"] = FileDataset(files, labels, names, create_transform("dml", False))
    return out


def one_batch(dataset: Dataset[Any], batch: int) -> None:
    """Load batch ``batch`` (items ``32 batch .. 32 batch + 31``, wrapping around the folder) in
    this thread; ours draws the augmentation of epoch ``batch``, so that every round draws new
    crops as the reference does."""
    if isinstance(dataset, FileDataset):
        dataset.set_epoch(batch)
    n = len(dataset)  # type: ignore[arg-type]
    items = Subset(dataset, [(BATCH * batch + i) % n for i in range(BATCH)])
    for _ in DataLoader(items, batch_size=BATCH, num_workers=0):
        pass


def alternate(fns: dict[str, Callable[[int], None]], rounds: int) -> dict[str, dict[str, list]]:
    """Time every fn once per round (argument: the round), order reversed every other round,
    after a warm-up round (argument ``rounds``, not kept); ``{"wall": {name: [s, ...]},
    "cpu": {name: [s, ...]}}`` (:func:`benchmarks.common.wall_and_cpu`)."""
    names = list(fns)
    for name in names:
        fns[name](rounds)
    runs: dict[str, dict[str, list]] = {
        "wall": {n: [] for n in names},
        "cpu": {n: [] for n in names},
    }
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            wall, cpu = wall_and_cpu(lambda f=fns[name], r=r: f(r))
            runs["wall"][name].append(wall)
            runs["cpu"][name].append(cpu)
    return runs


def pil_decode(blobs: list[bytes], draft: tuple[int, int] | None = None) -> None:
    """Decode ``blobs`` to RGB with PIL (reduced-size to at least ``draft``)."""
    for blob in blobs:
        with Image.open(io.BytesIO(blob)) as img:
            if draft is not None:
                img.draft("RGB", draft)
            img.convert("RGB")


def torchvision_decode(tensors: list[Tensor]) -> None:
    """Decode the encoded ``tensors`` with ``torchvision.io.decode_jpeg``."""
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for data in tensors:
            decode_jpeg(data, mode=ImageReadMode.RGB)


def decoder_table(rounds: int, images: int) -> dict[str, Any]:
    """ms (wall and CPU) per image of PIL full decoding, PIL draft (1/2 scale) and torchvision's
    decode_jpeg on ``images`` photos of 500 x 375 and of 1000 x 750."""
    table: dict[str, Any] = {}
    for width, height in ((500, 375), (1000, 750)):
        rng = np.random.default_rng(1)
        blobs = []
        for _ in range(images):
            buf = io.BytesIO()
            synthetic_photo(rng, width, height).save(buf, "JPEG", quality=90)
            blobs.append(buf.getvalue())
        tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
        fns: dict[str, Callable[[int], None]] = {
            "pil_full": lambda _, b=blobs: pil_decode(b),
            "pil_draft_half": lambda _, b=blobs, h=(width // 2, height // 2): pil_decode(b, h),
            "torchvision_decode_jpeg": lambda _, t=tensors: torchvision_decode(t),
        }
        runs = alternate(fns, rounds)
        table[f"{width}x{height}"] = {
            "kB_per_file": sum(map(len, blobs)) / len(blobs) / 1e3,
            **{
                f"{clock}_ms_per_image_median": {
                    k: statistics.median(v) / images * 1e3 for k, v in runs[clock].items()
                }
                for clock in ("cpu", "wall")
            },
        }
    return table


def ratio_table(runs: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Per preset, from one clock's batch times: ours / reference (ratio of the medians of
    images/s), the median of the per-round ratios, and previous / reference where measured."""
    ips = {k: BATCH / statistics.median(v) for k, v in runs.items()}
    table = {}
    for preset in [*PRESETS, "dml eval"]:
        ours, reference = f"{preset}/ours", f"{preset}/reference"
        paired = [r / o for r, o in zip(runs[reference], runs[ours], strict=True)]
        table[preset] = {
            "ours_vs_reference": ips[ours] / ips[reference],
            "paired_median": statistics.median(paired),
        }
        if f"{preset}/previous" in ips:
            table[preset]["previous_vs_reference"] = ips[f"{preset}/previous"] / ips[reference]
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="JPEG files in the folder")
    parser.add_argument("--rounds", type=int, default=25, help="timed batches per pipeline")
    parser.add_argument("--quick", action="store_true", help="8 images, 2 rounds (smoke run)")
    parser.add_argument("--size", type=int, nargs=2, default=[500, 375], help="JPEG width height")
    parser.add_argument("--out-dir", default=str(RESULTS_DIR), help="where the JSON goes")
    args = parser.parse_args()
    if args.quick:
        args.images, args.rounds = 8, 2
    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_folder(Path(tmp), args.images, tuple(args.size))
        kb_per_file = sum(p.stat().st_size for p in paths) / len(paths) / 1e3
        pipelines: dict[str, Dataset[Any]] = {
            **our_pipelines(paths),
            **torchvision_pipelines(Path(tmp)),
        }
        fns = {name: (lambda r, ds=ds: one_batch(ds, r)) for name, ds in sorted(pipelines.items())}
        runs = alternate(fns, args.rounds)
    decoders = decoder_table(args.rounds, min(args.images, 32))
    per_cpu_s = {k: BATCH / statistics.median(v) for k, v in runs["cpu"].items()}
    per_wall_s = {k: BATCH / statistics.median(v) for k, v in runs["wall"].items()}
    ratios = ratio_table(runs["cpu"])
    result = {
        "benchmark": "images per core-second (CPU time, one thread) and per wall second, JPEG "
        "files -> normalised batches of 32: dmlkit presets vs torchvision ImageFolder + "
        "RandomResizedCrop + flip + ToTensor + Normalize at the same output size",
        "threads": 1,
        "images": args.images,
        "image_size": args.size,
        "jpeg_quality": 90,
        "kB_per_file": kb_per_file,
        "rounds": args.rounds,
        "load_average_1m_before": load_before,
        "load_average_1m_after": os.getloadavg()[0],
        "wall_s": time.perf_counter() - start,
        "images_per_cpu_s": per_cpu_s,
        "images_per_wall_s": per_wall_s,
        "ratios": ratios,
        "ratios_wall_clock": ratio_table(runs["wall"]),
        "batch_s": runs,
        "goal_ours_vs_reference": GOAL,
        "passed": all(r["ours_vs_reference"] >= GOAL for r in ratios.values()),
        "decoders": decoders,
    }
    name = "input_pipeline" + ("" if args.size == [500, 375] else "_{}x{}".format(*args.size))
    path = write_result(name, result, Path(args.out_dir))
    for preset, r in ratios.items():
        text = ", ".join(f"{k} {v:.2f}x" for k, v in r.items())
        wall = result["ratios_wall_clock"][preset]["ours_vs_reference"]
        print(f"{preset}: ours {per_cpu_s[f'{preset}/ours']:.0f} images/CPU-s, {text} "
              f"(wall clock {wall:.2f}x)")  # fmt: skip
    print(f"-> {path}")


if __name__ == "__main__":
    main()
