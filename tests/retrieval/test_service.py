"""The HTTP service with a real client on a loopback port: answers equal the Python API also
under concurrent clients (and are batched), uploads that are not images or too large are refused
with a clear 4xx, and the search page works in headless Chromium (screenshot kept)."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from dmlkit.data import DMLDataset
from dmlkit.retrieval import Retriever
from dmlkit.retrieval.service import BackgroundServer, create_app, running

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def retriever(checkpoint: Path, test_split: DMLDataset) -> Retriever:
    retriever = Retriever.from_checkpoint(checkpoint)
    retriever.add_dataset(test_split)
    hits = retriever.search([test_split.image(0)], k=10)[0]
    retriever.set_threshold({"threshold": hits[5].score, "fmr_target": 1e-3})
    return retriever


@pytest.fixture(scope="module")
def server(retriever: Retriever) -> Iterator[BackgroundServer]:
    app = create_app(retriever, max_upload_bytes=20_000, max_batch=8, batch_wait_s=0.2)
    with running(app) as started:
        yield started


def test_search_answers_equal_the_python_api_under_concurrent_clients(
    server: BackgroundServer, retriever: Retriever, test_split: DMLDataset
) -> None:
    images = [png(test_split.image(i)) for i in range(24)]

    def ask(data: bytes) -> dict:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            response = client.post(
                "/search", params={"k": 5}, files={"image": ("q.png", data, "image/png")}
            )
            assert response.status_code == 200
            return response.json()

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(ask, images))
    expected = retriever.search(images, k=5)
    for answer, hits in zip(answers, expected, strict=True):
        assert [n["id"] for n in answer["neighbours"]] == [h.id for h in hits]
        assert [n["score"] for n in answer["neighbours"]] == pytest.approx(
            [h.score for h in hits], abs=1e-5
        )
        assert [n["match"] for n in answer["neighbours"]] == [h.match for h in hits]
        assert answer["threshold"] == pytest.approx(retriever.threshold)
    batches = server.server.config.app.state.batcher.batches
    assert sum(batches) >= 24 and max(batches) > 1  # concurrent requests shared forward passes


def test_refusals_are_clear_4xx(server: BackgroundServer, test_split: DMLDataset) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        text = client.post("/search", files={"image": ("notes.txt", b"just text", "text/plain")})
        assert text.status_code == 415 and "cannot decode image upload" in text.json()["detail"]
        big = client.post("/search", files={"image": ("big.png", b"\x00" * 30_000, "image/png")})
        assert big.status_code == 413 and "at most 20000 bytes" in big.json()["detail"]
        bad_k = client.post(
            "/search",
            params={"k": 0},
            files={"image": ("q.png", png(test_split.image(0)), "image/png")},
        )
        assert bad_k.status_code == 422
        missing = client.post("/search")
        assert missing.status_code == 422
        health = client.get("/health").json()
        assert health["items"] == len(test_split) and health["dim"] == 16
        thumb = client.get(f"/items/{int(test_split.item_ids[3])}/thumbnail")
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
        assert client.get("/items/999999/thumbnail").status_code == 404


def test_binds_to_loopback_by_default(server: BackgroundServer) -> None:
    assert server.host == "127.0.0.1"
    from dmlkit.cli import build_parser

    args = build_parser().parse_args(["serve", "x.index"])
    assert (args.host, args.port) == ("127.0.0.1", 8080)


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMEDRIVER).exists(), reason="chromedriver is not installed")
def test_the_page_finds_neighbours_in_headless_chromium(
    server: BackgroundServer, retriever: Retriever, test_split: DMLDataset, tmp_path: Path
) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    query = tmp_path / "query.png"
    test_split.image(0).resize((64, 64), Image.Resampling.NEAREST).save(query)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
                 "--window-size=1100,700"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(server.url + "/")
        driver.find_element(By.ID, "file").send_keys(str(query))
        WebDriverWait(driver, 60).until(lambda d: d.title.startswith("dmlkit search: 10"))
        cells = driver.find_elements(By.CSS_SELECTOR, "#results .cell")
        assert len(cells) == 11  # the query and its 10 neighbours
        marks = [c.get_attribute("class") for c in cells[1:]]
        expected = retriever.search([query], k=10)[0]
        assert marks == ["cell match" if h.match else "cell nomatch" for h in expected]
        texts = [c.text.split("\n") for c in cells[1:]]
        assert [t[0] for t in texts] == [f"#{r} id {h.id}" for r, h in enumerate(expected, 1)]
        loaded = driver.execute_script(
            "return Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length"
        )
        assert loaded == 11  # every thumbnail decoded
        shot = tmp_path / "search_page.png"
        driver.save_screenshot(str(shot))
    finally:
        driver.quit()
    print(f"screenshot: {shot}")
    with Image.open(shot) as img:
        pixels = np.asarray(img.convert("L"), dtype=np.float64)
    assert pixels.std() > 20
