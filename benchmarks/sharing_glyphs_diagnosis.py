"""Why does the shared task not help on glyphs? Short runs of ``configs/glyphs/sharing.yaml`` that
switch off one ingredient at a time, scored on the unseen test characters by character (the
task) and by font face (the style the classes share).

Variants: the margin loss alone; sharing as shipped (shared_random, alpha 0.3, rho 1500); without
the decorrelation (rho 0); without the shared task (alpha 0, decorrelation only); with the
Revisiting-DML normaliser (triplets with an active term); with the shared_neg sampler. Each run
reports the test MAP@R of the discriminative head, the shared head and their concatenation for
characters and for faces (leave-one-out, the label of an item being its font face), on the
renderings of ``SUBSET`` of the 500 test characters (a leave-one-out ranking of all 32,620 test
images per view costs minutes on this CPU), and the mean of each loss term over the last fifth of
training (``rho * L_decorr`` beside ``L_disc`` and ``alpha * L_shared``). Raw pixels give the
reference of an untrained embedding.

    python benchmarks/sharing_glyphs_diagnosis.py [--steps 400] [--seed 0]

Result: ``benchmarks/results/sharing_glyphs_diagnosis.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS_DIR, machine_info
from dmlkit.config import ExperimentConfig, load_config
from dmlkit.data.glyphs import FONT_DIR, load_glyphs
from dmlkit.evaluation import evaluate
from dmlkit.training import Trainer
from dmlkit.training.build import build_split

ROOT = Path(__file__).resolve().parents[1]
NAME = "sharing_glyphs_diagnosis"
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "margin alone": ("margin.yaml", ()),
    "sharing as shipped": ("sharing.yaml", ()),
    "no decorrelation (rho 0)": ("sharing.yaml", ("method.options.rho=0.0",)),
    "no shared task (alpha 0)": ("sharing.yaml", ("method.options.alpha=0.0",)),
    "RDML normaliser": ("sharing.yaml", ("loss.options.normalize=active_triplets",)),
    "shared_neg sampler": ("sharing.yaml", ("method.options.sampler=shared_neg",)),
}
TERMS = ("loss_discriminative", "loss_shared", "loss_decorrelation")
SUBSET = 100  # test characters scored (the first by label)


def test_faces(config: ExperimentConfig) -> np.ndarray:
    """The font face of every test item ``(N,)``, matched by character and image bytes."""
    options = config.data.options
    data = load_glyphs(
        options.get("num_chars", 1000), options.get("image_size", 32), 10, FONT_DIR, None
    )
    face_of = {
        (int(c), img.tobytes()): int(f)
        for c, img, f in zip(data["chars"], data["images"], data["faces"], strict=True)
    }
    test = build_split(config.data, "test", train=False)
    codes = [ord(name) for name in test.class_names]
    return np.array(
        [
            face_of[(codes[y], img.tobytes())]
            for img, y in zip(test.images, test.labels, strict=True)
        ]
    )


def map_r(emb: torch.Tensor, labels: torch.Tensor) -> float:
    """Leave-one-out MAP@R of ``emb`` (cosine)."""
    return float(evaluate(emb, labels, metrics=["map@r"]).to_dict()["map@r"])


def head_views(emb: torch.Tensor) -> dict[str, torch.Tensor]:
    """The views of a model output: one head, or the two 128-d heads and their concatenation of
    unit vectors (cosine scoring normalises each view)."""
    if emb.shape[1] != 256:
        return {"discriminative": emb}
    disc, shared = emb[:, :128], emb[:, 128:]
    concat = torch.cat([F.normalize(disc, dim=1), F.normalize(shared, dim=1)], dim=1)
    return {"discriminative": disc, "shared": shared, "concat": concat}


def scores(emb: torch.Tensor, chars: torch.Tensor, faces: torch.Tensor) -> dict[str, float]:
    """Character and face MAP@R of each view of a model output."""
    out: dict[str, float] = {}
    for name, view in head_views(emb).items():
        out[f"{name} char map@r"] = map_r(view, chars)
        out[f"{name} face map@r"] = map_r(view, faces)
    return out


def run_variant(
    name: str, config_file: str, overrides: tuple[str, ...], common: list[str], faces: np.ndarray
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(
            ROOT / "configs" / "glyphs" / config_file,
            [*common, *overrides, f"output.dir={tmp}"],
        )
        start = time.perf_counter()
        trainer = Trainer(config, Path(tmp) / "run")
        metrics = trainer.fit()
        wall_s = time.perf_counter() - start
        saved = np.load(Path(tmp) / "run" / "embeddings" / "test.npz")
        records = [json.loads(line) for line in (Path(tmp) / "run" / "log.jsonl").open()]
    emb, chars = torch.from_numpy(saved["emb"]), torch.from_numpy(saved["labels"])
    keep = chars < SUBSET
    emb, chars = emb[keep], chars[keep]
    train = [r for r in records if r["kind"] == "train"]
    tail = train[-max(1, len(train) // 5) :]
    method = config.method.options
    weights = {
        "loss_discriminative": 1.0,
        "loss_shared": float(method.get("alpha", 0.3)),
        "loss_decorrelation": float(method.get("rho", 1500.0)),
    }
    terms = {
        f"{t} (weighted)": statistics.fmean(r[t] for r in tail) * weights[t]
        for t in TERMS
        if t in tail[0]
    }
    result = {
        "variant": name,
        "config": f"configs/glyphs/{config_file}",
        "overrides": list(overrides),
        "wall_s": wall_s,
        "best_step": metrics["best_step"],
        **scores(emb, chars, torch.from_numpy(faces)[keep]),
        **terms,
    }
    print(json.dumps(result), flush=True)
    return result


def markdown(payload: dict[str, Any]) -> str:
    cols = [
        "discriminative char map@r",
        "shared char map@r",
        "concat char map@r",
        "discriminative face map@r",
        "shared face map@r",
    ]
    terms = [f"{t} (weighted)" for t in TERMS]
    lines = [
        "# Sharing on glyphs: one ingredient at a time",
        "",
        f"Command: `{payload['command']}`. {payload['steps']} steps, seed {payload['seed']}, "
        f"one torch thread, {payload['machine']}. {SUBSET} of the 500 test characters (unseen), "
        "leave-one-out MAP@R by character and by font face. Loss terms: mean over the last fifth "
        "of training, each times its weight.",
        "",
        "| variant | " + " | ".join(cols + terms) + " | wall s |",
        "|---|" + "---|" * (len(cols) + len(terms) + 1),
    ]
    for row in payload["results"]:
        cells = [f"{row[c]:.4f}" if c in row else "–" for c in cols + terms]
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + f" | {row['wall_s']:.0f} |")
    raw = payload["raw_pixels"]
    lines += [
        "",
        f"Raw pixels: char MAP@R {raw['char map@r']:.4f}, face MAP@R {raw['face map@r']:.4f}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    every = max(args.steps // 4, 1)
    common = [
        f"train.steps={args.steps}",
        f"train.eval_every={every}",
        f"train.checkpoint_every={args.steps}",
        f"train.log_every={max(args.steps // 40, 1)}",
        f"schedule.warmup_steps={min(100, args.steps // 5)}",
        f"seed={args.seed}",
        "train.num_threads=1",
        "train.progress=false",
        "eval.metrics=[recall, map@r]",
        "eval.ks=[1]",
        "eval.before=false",
        "output.report=false",
    ]
    reference = load_config(ROOT / "configs" / "glyphs" / "margin.yaml", common)
    faces = test_faces(reference)
    test = build_split(reference.data, "test", train=False)
    keep = test.labels < SUBSET
    pixels = torch.from_numpy(test.images[keep].reshape(int(keep.sum()), -1).astype(np.float32))
    raw = {
        "char map@r": map_r(pixels, torch.from_numpy(test.labels[keep])),
        "face map@r": map_r(pixels, torch.from_numpy(faces[keep])),
    }
    payload: dict[str, Any] = {
        "benchmark": NAME,
        "command": "python " + " ".join(sys.argv),
        "steps": args.steps,
        "seed": args.seed,
        "machine": f"{machine_info().get('cpu', '?')}, 2 cores (shared)",
        "machine_info": machine_info(),
        "raw_pixels": raw,
        "results": [],
    }
    for name, (config_file, overrides) in VARIANTS.items():
        payload["results"].append(run_variant(name, config_file, overrides, common, faces))
        (RESULTS_DIR / f"{NAME}.json").write_text(json.dumps(payload, indent=2) + "\n")
        (RESULTS_DIR / f"{NAME}.md").write_text(markdown(payload))
    print(markdown(payload))


if __name__ == "__main__":
    main()
