"""Serving throughput and latency of ``dmlkit serve`` on loopback: 1, 8 and 32 concurrent clients.

The model is the glyph benchmark's (``configs/glyphs/ms.yaml``: small CNN 16-32-64-128 on 32x32
one-channel images, 128-d embeddings) with its initial weights (throughput does not depend on
training), over an exact index of ``--items`` synthetic unit vectors. Each client sends PNG
uploads (32x32 noise images) to ``POST /search?k=10`` back to back with httpx over one
keep-alive connection; every level runs ``--requests`` requests in all (a bounded run). The server
is ``dmlkit serve`` in its own process (the clients' threads do not share its interpreter), on a
free loopback port. Reported: requests/s, p50 / p99 latency per request, and the mean batch the
server formed (from ``/health``).

    python benchmarks/bench_serving.py [--quick] [--threads 2] [--requests 400] [--items 10000]
"""

from __future__ import annotations

import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import finish_run, run_parser
from dmlkit.config import config_to_dict, load_config
from dmlkit.retrieval import EmbeddingIndex, ModelBundle, Retriever
from dmlkit.retrieval.preprocess import preprocessing
from dmlkit.training.build import build_model

ROOT = Path(__file__).resolve().parent.parent
LEVELS = (1, 8, 32)


def glyph_retriever(items: int) -> Retriever:
    config = load_config(ROOT / "configs" / "glyphs" / "ms.yaml", ["model.in_channels=1"])
    torch.manual_seed(0)
    model = build_model(config.model).eval()
    bundle = ModelBundle(
        config_to_dict(config), model.state_dict(), 500, preprocessing(config, 32), 128
    )
    index = EmbeddingIndex(128)
    index.add(torch.randn(items, 128, generator=torch.Generator().manual_seed(1)))
    return Retriever(bundle, index)


def uploads(count: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def level(url: str, clients: int, requests: int, images: list[bytes]) -> dict[str, Any]:
    per_client = requests // clients

    def client(c: int) -> list[float]:
        times = []
        with httpx.Client(base_url=url, timeout=120) as session:
            for r in range(per_client):
                data = images[(c * per_client + r) % len(images)]
                t0 = time.perf_counter()
                response = session.post(
                    "/search", params={"k": 10}, files={"image": ("q.png", data, "image/png")}
                )
                times.append(time.perf_counter() - t0)
                if response.status_code != 200:
                    raise RuntimeError(f"status {response.status_code}: {response.text}")
        return times

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        latencies = [t for times in pool.map(client, range(clients)) for t in times]
    wall = time.perf_counter() - start
    return {
        "clients": clients,
        "requests": len(latencies),
        "wall_s": wall,
        "requests_per_s": len(latencies) / wall,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * float(np.percentile(latencies, 99)),
    }


def start_server(index: Path, threads: int) -> tuple[str, subprocess.Popen[bytes]]:
    """``dmlkit serve INDEX`` on a free loopback port in its own process; returns its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "dmlkit.cli", "serve", str(index), "--port", str(port)]
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health").status_code == 200:
                return url, server
        except httpx.TransportError:
            time.sleep(0.2)
    server.terminate()
    raise RuntimeError("dmlkit serve did not answer within 120 s")


def main() -> None:
    parser = run_parser(__doc__)
    parser.add_argument("--requests", type=int, default=480)
    parser.add_argument("--items", type=int, default=10_000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    requests = 96 if args.quick else args.requests
    retriever = glyph_retriever(args.items)
    images = uploads(64)
    results = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = retriever.save(Path(tmp) / "glyphs.index")
        url, server = start_server(path, args.threads)
        try:
            level(url, 4, 16, images)  # warm-up
            for clients in LEVELS:
                before = httpx.get(url + "/health").json()
                result = level(url, clients, requests, images)
                after = httpx.get(url + "/health").json()
                batches = after["batches"] - before["batches"]
                result["mean_batch"] = (after["batched"] - before["batched"]) / batches
                results.append(result)
            print(f"{clients:>2} clients: {result['requests_per_s']:7.1f} req/s  p50 {result['p50_ms']:7.1f} ms"
                  f"  p99 {result['p99_ms']:7.1f} ms  mean batch {result['mean_batch']:.1f}", flush=True)  # fmt: skip
        finally:
            server.terminate()
            server.wait(timeout=30)
    payload = {
        "model": "glyph small_cnn 16-32-64-128, 32x32x1 -> 128-d (initial weights)",
        "index_items": args.items,
        "server": "dmlkit serve (uvicorn + FastAPI) on 127.0.0.1 in its own process, batches up to 32",
        "results": results,
    }
    finish_run("serving", args, start, payload)


if __name__ == "__main__":
    main()
