"""``dmlkit search INDEX QUERY... [--k 10] [--json] [--html OUT]``: the nearest indexed items of
query images (files or folders), as text, JSON or a page of thumbnails."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dmlkit.data import image_files, read_image
from dmlkit.retrieval.page import results_page
from dmlkit.retrieval.retriever import Retriever, thumbnail_png


def _thumbnail(retriever: Retriever, item_id: int) -> bytes | None:
    try:
        return retriever.thumbnail(item_id) or None
    except (FileNotFoundError, ValueError):
        return None  # a file gone since indexing: the page shows a blank cell


def run(args: argparse.Namespace) -> int:
    """Search INDEX with every query image and print or write the neighbours."""
    retriever = Retriever.load(args.index)
    files = image_files(args.queries)
    results = retriever.search(files, args.k)
    if args.json:
        answer = [
            {"query": str(f), "neighbours": [hit.to_dict() for hit in hits]}
            for f, hits in zip(files, results, strict=True)
        ]
        print(json.dumps({"threshold": retriever.threshold, "results": answer}, indent=2))
    else:
        for f, hits in zip(files, results, strict=True):
            print(f"{f}:")
            for rank, hit in enumerate(hits, 1):
                mark = {True: "  match", False: "  no match", None: ""}[hit.match]
                where = hit.path or f"id {hit.id}"
                print(f"  {rank:>3}  {hit.score:8.4f}  {hit.class_name:<16} {where}{mark}")
    if args.html:
        ids = {hit.id for hits in results for hit in hits}
        thumbs = {i: _thumbnail(retriever, i) for i in ids}
        queries = [(str(f), thumbnail_png(read_image(f))) for f in files]
        page = results_page(queries, results, thumbs, retriever.threshold)
        Path(args.html).write_text(page, encoding="utf-8")
        if not args.json:
            print(f"page: {args.html}")
    return 0
