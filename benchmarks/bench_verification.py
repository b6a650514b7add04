"""Verification metrics over all pairs vs scikit-learn's ``roc_curve`` / ``roc_auc_score`` on
the same scores.

SOP-like embeddings (``bench_evaluation.sop_like``: 5 items a class, D = 128). Ours:
``evaluate(x, y, metrics=["roc_auc", "eer", "tar_at_far"])``, all N (N - 1) / 2 pairs without a
pair list (time, peak RSS of the process). The peer: the pair scores as one float32 vector (upper
triangle of the cosine matrix) with their genuine flags, then ``roc_curve`` + ``roc_auc_score``
and the same EER / TAR@FAR read off its curve; its peak RSS counts the score vector it needs.

- N = 15,000 (112 M pairs): both, values compared, time and memory ratios (medians of
  ``--repeats``).
- N = 60,000 (1.8 G pairs): ours; the peer once in a child process whose address space is capped at
  ``--peer-memory-gib`` (20 of this machine's 24): the score vector alone is 7.2 GB, and its
  sort needs several times that; the cap turns an out-of-memory kill into a recorded failure.

    python benchmarks/bench_verification.py [--quick] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_evaluation import sop_like
from benchmarks.common import finish_run, peak_rss_bytes, run_parser, time_median
from dmlkit.evaluation import evaluate

FMRS = (1e-2, 1e-3, 1e-4)
METRICS = ["roc_auc", "eer", "tar_at_far"]


def ours(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    return evaluate(x, y, metrics=METRICS, fmrs=FMRS).metrics


def pair_scores(x: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Upper-triangle cosine scores (float32) and genuine flags, row block by row block."""
    n = x.shape[0]
    scores = np.empty(n * (n - 1) // 2, dtype=np.float32)
    genuine = np.empty(n * (n - 1) // 2, dtype=bool)
    at = 0
    for i in range(n - 1):
        s = (x[i + 1 :] @ x[i]).numpy()
        scores[at : at + len(s)] = s
        genuine[at : at + len(s)] = (y[i + 1 :] == y[i]).numpy()
        at += len(s)
    return scores, genuine


def peer(scores: np.ndarray, genuine: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(genuine, scores)
    out = {"roc_auc": float(roc_auc_score(genuine, scores))}
    g = fpr + tpr - 1.0
    k = int(np.argmax(g >= 0))
    w = -g[k - 1] / (g[k] - g[k - 1]) if g[k] != 0 else 1.0
    out["eer"] = float(fpr[k - 1] + w * (fpr[k] - fpr[k - 1]))
    for f in FMRS:
        out[f"tar@far{f:.0e}".replace("e-0", "e-")] = float(tpr[fpr <= f].max())
    return out


def peer_child(n: int, cap_gib: float) -> dict[str, Any]:
    """The peer at ``n`` in a child process under an address-space cap."""
    code = (
        "import json,resource,sys,time;"
        f"resource.setrlimit(resource.RLIMIT_AS, ({int(cap_gib * 2**30)}, {int(cap_gib * 2**30)}));"
        "sys.path.insert(0, '.');"
        "from benchmarks.bench_verification import *;"
        f"x, y = sop_like({n}, {n // 5});"
        "t = time.perf_counter();"
        "v = peer(*pair_scores(x, y));"
        "print(json.dumps({'values': v, 'time_s': time.perf_counter() - t}))"
    )
    root = Path(__file__).resolve().parent.parent
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    if done.returncode == 0:
        return {"ok": True, **json.loads(done.stdout.strip().splitlines()[-1])}
    lines = (done.stderr or "").strip().splitlines()
    return {"ok": False, "returncode": done.returncode, "error": lines[-1] if lines else "",
            "wall_s": time.perf_counter() - t0, "cap_gib": cap_gib}  # fmt: skip


def compare(n: int, repeats: int) -> dict[str, Any]:
    """Ours and the peer at ``n``: values, timing medians, peak RSS, ratios."""
    x, y = sop_like(n, n // 5)
    ours_rss, before, ours_values = peak_rss_bytes(lambda: ours(x, y))
    ours_time = time_median(lambda: ours(x, y), repeats=repeats, warmup=0)
    scores, genuine = pair_scores(x, y)
    peer_rss, peer_before, peer_values = peak_rss_bytes(lambda: peer(scores, genuine))
    peer_time = time_median(lambda: peer(scores, genuine), repeats=repeats, warmup=0)
    ours_memory = ours_rss - before
    peer_memory = peer_rss - peer_before + scores.nbytes + genuine.nbytes
    return {
        "N": n,
        "pairs": n * (n - 1) // 2,
        "ours": {
            "values": ours_values,
            "timing": ours_time,
            "peak_rss_above_start_bytes": ours_memory,
        },
        "sklearn": {
            "values": peer_values,
            "timing": peer_time,
            "score_vector_bytes": scores.nbytes + genuine.nbytes,
            "peak_rss_above_start_bytes": peer_memory,
        },
        "max_abs_value_difference": max(abs(ours_values[k] - peer_values[k]) for k in peer_values),
        "time_ratio": ours_time["median_s"] / peer_time["median_s"],
        "memory_ratio": ours_memory / peer_memory,
    }


def main() -> None:
    parser = run_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer-memory-gib", type=float, default=20.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    small, large = (3000, 6000) if args.quick else (15_000, 60_000)
    compared = compare(small, args.repeats)
    print(
        json.dumps(
            {
                k: compared[k]
                for k in ("N", "time_ratio", "memory_ratio", "max_abs_value_difference")
            }
        ),
        flush=True,
    )
    xl, yl = sop_like(large, large // 5)
    t0 = time.perf_counter()
    large_rss, large_before, large_values = peak_rss_bytes(lambda: ours(xl, yl))
    large_time = time.perf_counter() - t0
    print(
        f"N={large}: ours {large_time:.1f} s, peak RSS above start {(large_rss - large_before) / 2**30:.2f} GiB",
        flush=True,
    )
    peer_large = peer_child(large, args.peer_memory_gib)
    print(f"N={large}: sklearn {peer_large}", flush=True)
    payload = {
        "compared": compared,
        "large": {
            "N": large,
            "pairs": large * (large - 1) // 2,
            "ours": {
                "values": large_values,
                "time_s": large_time,
                "peak_rss_above_start_bytes": large_rss - large_before,
            },
            "sklearn": peer_large,
        },
        "checks": {"values_equal_1e-6": compared["max_abs_value_difference"] <= 1e-6},
    }
    finish_run("verification", args, start, payload)


if __name__ == "__main__":
    main()
