"""The web explorer in a real browser: Debian's Chromium driven by Playwright against a live server.

The page must draw the points, search (the matches light up and are listed), and show a clicked
point's neighbours by the index's own metric. Empty indexes get a message, not a blank page.
Set LIKEWISE_SCREENSHOT=docs/explorer.png to refresh the README's screenshot.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import likewise

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import uvicorn

    from likewise.server import create_app

    db = likewise.open(tmp_path_factory.mktemp("explorer") / "data")
    shows = db.create_index("shows", dimensions=16, description="TV shows")
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 16)) * 3
    genres = ["sitcom", "horror", "drama"]
    shows.upsert_arrays(
        [f"show-{i}" for i in range(240)],
        np.array([centres[i % 3] + rng.standard_normal(16) for i in range(240)]),
        metadata=[{"genre": genres[i % 3], "year": 1980 + i % 40} for i in range(240)],
        texts=[f"A {genres[i % 3]} show, number {i}" for i in range(240)],
    )
    db.create_index("empty", dimensions=4)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(db), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)
    db.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    assert Path(CHROMIUM).exists(), "the explorer's browser test needs Debian's chromium (.ci/run installs it)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def test_map_search_and_neighbours(server: str, browser: object) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 860})  # type: ignore[attr-defined]
    page.goto(f"{server}/?index=shows")
    page.wait_for_function("document.querySelectorAll('#map .scatterlayer .point').length >= 240", timeout=20000)
    assert "240" in page.inner_text("#status")
    page.select_option("#color", "genre")
    page.wait_for_function("document.querySelectorAll('#map .legendtext').length === 3", timeout=10000)
    assert sorted(page.eval_on_selector_all("#map .legendtext", "els => els.map(e => e.textContent)")) == [
        "drama", "horror", "sitcom"]

    # search by id with a filter: matches listed, all of the filtered genre, highlighted on the map
    page.fill("#q", "show-0")
    page.fill("#filter", '{"genre": "horror"}')
    page.click("#go")
    page.wait_for_selector("#list li")
    items = page.eval_on_selector_all("#list li", "els => els.map(e => e.dataset.id)")
    assert len(items) == 10 and all(int(i.split("-")[1]) % 3 == 1 for i in items)
    assert page.locator("#map .legendtext", has_text="matches").count() == 1

    # click a point: its neighbours (by the index's cosine metric) are listed with scores
    page.fill("#filter", "")
    point = page.locator("#map .scatterlayer .trace").first.locator(".point").first
    point.click(force=True)
    page.wait_for_function("document.querySelector('#listTitle').textContent.startsWith('Neighbours of')", timeout=10000)
    clicked = page.inner_text("#listTitle").removeprefix("Neighbours of ").strip()
    listed = page.eval_on_selector_all("#list li", "els => els.map(e => e.dataset.id)")
    import httpx

    expected = httpx.post(f"{server}/v1/indexes/shows/query", json={"id": clicked, "top_k": 11}).json()
    want = [m["id"] for m in expected["matches"] if m["id"] != clicked][:10]
    assert listed == want
    shot = os.environ.get("LIKEWISE_SCREENSHOT")
    if shot:
        page.screenshot(path=shot)
    page.close()


def test_empty_index_gets_a_message(server: str, browser: object) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(f"{server}/?index=empty")
    page.wait_for_selector("#empty h3")
    assert "empty" in page.inner_text("#empty").lower()
    page.close()
