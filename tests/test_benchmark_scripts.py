"""The benchmark scripts that need a GPU or take minutes still run: ``bench_gpu.py --dry-run``
(every section at toy sizes on the CPU) and ``bench_input_pipeline.py --quick``. Their JSON is
checked for structure and consistent values, never for timings."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str, out: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args, "--out-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_bench_gpu_dry_run(tmp_path: Path) -> None:
    pytest.importorskip("pytorch_metric_learning", reason="the peer of the loss section")
    _run("bench_gpu.py", "--dry-run", out=tmp_path)
    result = json.loads((tmp_path / "gpu_dry_run.json").read_text())
    assert result["dry_run"] is True and result["device"]["name"] == "CPU (dry run)"
    assert [(r["model"], r["compiled"]) for r in result["train"]] == [
        ("resnet50", False),
        ("bninception", False),
    ]
    for row in result["train"]:
        ips = row["images_per_s"]
        assert ips["trainer"] > 0 and ips["bare"] > 0
        assert row["overhead"] == pytest.approx(1 - ips["trainer"] / ips["bare"])
    assert {(r["loss"], r["B"]) for r in result["losses"]} == {
        (name, b) for name in ("ms_mined", "contrastive", "proxy_anchor") for b in (64, 128)
    }
    for row in result["losses"]:  # the same loss on the same inputs
        assert row["values"]["ours"] == pytest.approx(row["values"]["pml"], rel=1e-4)
    retrieval = result["retrieval"]
    assert retrieval["N"] == 2000 and 0 < retrieval["values"]["map@r"] <= 1
    assert math.isfinite(retrieval["ours_over_floor"])


def test_bench_input_pipeline_quick(tmp_path: Path) -> None:
    pytest.importorskip("torchvision", reason="the reference pipelines are torchvision's")
    _run("bench_input_pipeline.py", "--quick", out=tmp_path)
    result = json.loads((tmp_path / "input_pipeline.json").read_text())
    assert result["threads"] == 1 and result["images"] == 8 and result["rounds"] == 2
    assert set(result["ratios"]) == {"dml", "dml227", "caffe_bgr", "dml eval"}
    for preset, ratio in result["ratios"].items():
        ours = result["images_per_cpu_s"][f"{preset}/ours"]
        reference = result["images_per_cpu_s"][f"{preset}/reference"]
        assert ratio["ours_vs_reference"] == pytest.approx(ours / reference)
        wall = result["images_per_wall_s"]
        assert result["ratios_wall_clock"][preset]["ours_vs_reference"] == pytest.approx(
            wall[f"{preset}/ours"] / wall[f"{preset}/reference"]
        )
    assert set(result["decoders"]) == {"500x375", "1000x750"}
    assert 50 < result["kB_per_file"] < 90  # photo-like: about 2.8 bits per pixel at quality 90


def test_glyph_loss_table_summary_and_markdown() -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks.glyph_loss_table import markdown, summary

    runs = {
        "ms": [
            {"seed": 0, "wall_s": 100.0, "test": {"map@r": 0.5, "precision@1": 0.9}},
            {"seed": 1, "wall_s": 120.0, "test": {"map@r": 0.7, "precision@1": 0.8}},
        ],
        "circle": [{"seed": 0, "wall_s": 90.0, "test": {"map@r": 0.65, "precision@1": 0.85}}],
        "npair": [{"seed": 0, "error": "ValueError: boom", "test": {}}],
    }
    s = summary(runs["ms"])
    assert s["map@r"]["mean"] == pytest.approx(0.6) and s["map@r"]["n"] == 2
    assert s["map@r"]["std"] == pytest.approx(math.sqrt(0.02))
    assert summary(runs["npair"]) == {}
    table = markdown({"runs": runs, "steps": 600, "machine": {"cpu": "cpu"}, "not_run": {}})
    rows = [line for line in table.splitlines() if line.startswith("| ") and "| 0." in line]
    # best MAP@R first; one seed shows the value alone; a failed loss says why
    assert [r.split(" | ")[0] for r in rows] == ["| circle", "| ms"]
    assert "| circle | pair weighting | 0.650 | 0.850 | 1 | 90 |" in table
    assert "| npair | pair weighting | failed: ValueError: boom | | | |" in table
    assert "| ms | pair weighting | 0.600 ± 0.141 | 0.850 ± 0.071 | 2 | 110 |" in table


# catalogue cases whose two sides compute the same loss at these settings (the others say in
# their note what differs)
SAME_VALUE = {
    "fast_ap", "histogram", "dynamic_soft_margin", "manifold", "arcface", "subcenter_arcface",
    "cosface", "sphereface", "large_margin_softmax", "p2sgrad", "supcon", "ntxent", "nca",
    "instance", "intra_pair_variance", "snr_contrastive", "tuplet_margin", "angular", "tcm",
    "vicreg", "self_supervised_contrastive", "miner_pair_margin", "miner_batch_easy_hard",
    "ranked_list",
}  # fmt: skip


def test_catalogue_cases_compare_like_with_like() -> None:
    import torch

    sys.path.insert(0, str(ROOT))
    from benchmarks.bench_pair_losses import _inputs, catalogue_cases

    cases = catalogue_cases()
    assert set(cases) >= SAME_VALUE
    x, y = _inputs(32, 16, 4)
    for name, case in cases.items():
        values = []
        for side in (case.ours, case.peer):
            if side is None:
                assert case.note, f"{name}: a case without a peer says why"
                continue
            torch.manual_seed(0)
            e = x.clone().requires_grad_(True)
            loss = side(4, 16)(e, y)
            loss.backward()
            assert torch.isfinite(loss) and e.grad is not None and torch.isfinite(e.grad).all()
            values.append(float(loss))
        if name in SAME_VALUE:
            assert values[0] == pytest.approx(values[1], rel=1e-4), name
