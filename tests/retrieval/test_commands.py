"""The retrieval commands end to end on the tiny digits model: index build (folder, CSV, split),
search (text, JSON, HTML), calibrate, index add / remove / info, export, embed's item table, and
one-line errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from dmlkit.cli import main
from dmlkit.data import DMLDataset
from dmlkit.evaluation.verification import pair_counts, tar_at_far
from dmlkit.retrieval import EmbeddingIndex, Retriever
from dmlkit.training.build import build_split, model_from_checkpoint
from dmlkit.training.evaluate import embed_dataset
from tests.retrieval.conftest import write_folder

QUIET = ["--set", "train.progress=false"]


def test_folder_index_search_json_and_html(
    checkpoint: Path, test_split: DMLDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_folder(test_split, tmp_path / "collection", 30)
    out = tmp_path / "folder.index"
    assert main(["index", "build", str(checkpoint), "--data", str(tmp_path / "collection"),
                 "--out", str(out)]) == 0  # fmt: skip
    assert "wrote" in capsys.readouterr().out
    index = EmbeddingIndex.load(out)
    assert sorted(index.paths) == sorted(map(str, paths)) and len(index) == 30
    query = paths[4]
    assert main(["search", str(out), str(query), "--k", "3", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    (result,) = answer["results"]
    assert result["query"] == str(query) and len(result["neighbours"]) == 3
    top = result["neighbours"][0]
    assert top["path"] == str(query) and top["score"] == pytest.approx(1.0, abs=1e-5)
    assert top["class_name"] == query.parent.name and top["match"] is None
    page = tmp_path / "page.html"
    assert (
        main(["search", str(out), str(tmp_path / "collection"), "--k", "4", "--html", str(page)])
        == 0
    )
    text = page.read_text()
    assert text.count('class="row"') == 30 and text.count("data:image/png;base64,") == 30 * 5


def test_csv_and_split_indexes_add_remove_info(
    checkpoint: Path, test_split: DMLDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_folder(test_split, tmp_path / "imgs", 12)
    listing = tmp_path / "list.csv"
    listing.write_text(
        "path,label\n" + "".join(f"imgs/{p.parent.name}/{p.name},L{p.parent.name}\n" for p in paths)
    )
    assert main(["index", "build", str(checkpoint), "--data", str(listing), "--out",
                 str(tmp_path / "csv.index"), "--backend", "flat"]) == 0  # fmt: skip
    index = EmbeddingIndex.load(tmp_path / "csv.index")
    assert index.backend == "flat" and index.classes[0] == f"L{paths[0].parent.name}"
    split_index = tmp_path / "split.index"
    assert (
        main(["index", "build", str(checkpoint), "--data", "test", "--out", str(split_index)]) == 0
    )
    assert len(EmbeddingIndex.load(split_index)) == len(test_split)
    assert (
        main(["index", "add", str(split_index), str(paths[0]), str(paths[1]), "--class", "new"])
        == 0
    )
    index = EmbeddingIndex.load(split_index)
    assert index.classes[-2:] == ["new", "new"] and index.paths[-1] == str(paths[1])
    new_ids = index.ids[-2:].tolist()
    assert main(["index", "remove", str(split_index), *map(str, new_ids)]) == 0
    assert len(EmbeddingIndex.load(split_index)) == len(test_split)
    capsys.readouterr()
    assert main(["index", "info", str(split_index)]) == 0
    info = capsys.readouterr().out
    assert (
        f"{len(test_split)} items, 16-d, cosine, backend exact" in info
        and "threshold: none" in info
    )


def test_calibrate_stores_the_threshold_and_search_marks_matches(
    checkpoint: Path, test_split: DMLDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index_path = tmp_path / "cal.index"
    assert (
        main(["index", "build", str(checkpoint), "--data", "test", "--out", str(index_path)]) == 0
    )
    assert main(["calibrate", str(checkpoint), "--index", str(index_path), "--fmr", "1e-2"]) == 0
    captured = capsys.readouterr()
    assert "shares 10 of its 10 classes with the training split" in captured.err
    # the stored threshold is the one the verification metrics give on the val split
    _, config = model_from_checkpoint(checkpoint)
    val = build_split(config.data, "val", train=False)
    retriever = Retriever.load(index_path)
    emb, labels = embed_dataset(retriever.model, val, 64, __import__("torch").device("cpu"))
    tar, threshold = tar_at_far(pair_counts(emb, labels), 1e-2)
    assert retriever.threshold == pytest.approx(threshold) and tar > 0
    calibration = retriever.index.info["calibration"]
    assert calibration["fmr"] <= 1e-2 and calibration["split"] == "val"
    write_folder(test_split, tmp_path / "q", 3)
    assert main(["search", str(index_path), str(tmp_path / "q"), "--k", "5", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["threshold"] == pytest.approx(threshold)
    for result in answer["results"]:
        for hit in result["neighbours"]:
            assert hit["match"] == (hit["score"] >= threshold)


def test_export_command_and_embed_item_table(
    checkpoint: Path, test_split: DMLDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["export", str(checkpoint), "--format", "torchscript", "--out", str(tmp_path / "ts")])
        == 0
    )
    assert (tmp_path / "ts" / "model.pt").is_file() and (tmp_path / "ts" / "model.json").is_file()
    assert main(["embed", str(checkpoint), "--out", str(tmp_path / "e.npz"), *QUIET]) == 0
    with np.load(tmp_path / "e.npz") as npz:  # no pickle needed
        assert np.array_equal(npz["item_ids"], test_split.item_ids)
        assert npz["paths"].tolist() == [""] * len(test_split)
        names = [test_split.class_names[c] for c in test_split.labels]
        assert npz["class_names"].tolist() == names
    assert main(["embed", str(checkpoint), "--out", str(tmp_path / "e.npy"), *QUIET]) == 0
    with open(tmp_path / "e.items.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(test_split)
    assert rows[3] == {"row": "3", "item_id": str(test_split.item_ids[3]), "label": str(test_split.labels[3]),
                       "class_name": names[3], "path": ""}  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "{tmp}/garbage.index", "{tmp}/q.png"], "garbage.index: not a torch.save file"),
        (["search", "{tmp}/ok.index", "{tmp}/garbage.index"], "cannot decode image"),
        (["search", "{tmp}/ok.index", "{tmp}/nothing"], "no such image file or folder"),
        (["index", "build", "{ckpt}", "--data", "{tmp}/nothing", "--out", "{tmp}/x.index"],
         "expected a folder of images (a subfolder per class) or a CSV listing"),
        (["export", "{tmp}/missing.pt", "--format", "onnx", "--out", "{tmp}/exp"], "no checkpoint"),
        (["index", "remove", "{tmp}/ok.index", "12345"], "no item with id [12345]"),
    ],
)  # fmt: skip
def test_errors_are_one_clear_line(
    argv: list[str], message: str, checkpoint: Path, test_split: DMLDataset, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    (tmp_path / "garbage.index").write_bytes(b"\x00garbage" * 10)
    test_split.image(0).save(tmp_path / "q.png")
    retriever = Retriever.from_checkpoint(checkpoint)
    retriever.add([tmp_path / "q.png"])
    retriever.save(tmp_path / "ok.index")
    filled = [a.format(tmp=tmp_path, ckpt=checkpoint) for a in argv]
    assert main(filled) == 2
    err = capsys.readouterr().err
    assert err.startswith("dmlkit: error: ") and message in err
    assert len(err.strip().splitlines()) == 1
