"""The playground at /ui, driven in headless Chromium (Debian's package) by Playwright, against a
real server with the real all-minilm model: every tab loads, a similarity of three sentences shows
the cosines /api/embed gives, a search over a small collection ranks and filters, API errors are
shown in the API's words, the tabs work from the keyboard, the page fits 375 px, and with --auth it
asks for a key and keeps it in sessionStorage only. Screenshots go to test-artifacts/ui/."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from serverkit import serve
from servicekit import require

from embedserve.config import Settings

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - the test extra has it
    expect = None
from embedserve.server.app import create_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("EMBEDSERVE_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts")) / "ui"
SENTENCES = ["A cat sits on the mat.", "A kitten is resting on a rug.", "Interest rates rose again."]
DOCS = [
    {"id": "cat", "text": "The cat curled up on the warm windowsill and slept.", "metadata": {"kind": "animal"}},
    {"id": "dog", "text": "A dog fetched the stick from the river.", "metadata": {"kind": "animal"}},
    {"id": "car", "text": "The electric car charges overnight in the garage.", "metadata": {"kind": "vehicle"}},
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require(Path(CHROMIUM).exists(), "Debian's chromium package (scripts/services installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    sync_api.expect.set_options(timeout=60_000)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
        )
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(real_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("ui-home")
    (home / "models").symlink_to(real_home / "models")  # the real model; collections of our own
    app = create_app(Settings(home=home, offline=True))
    with serve(app) as url:
        with httpx.Client(base_url=url, timeout=120) as c:
            assert c.post("/api/collections", json={"name": "pets", "model": "all-minilm"}).status_code == 201
            assert c.post("/api/collections/pets/documents", json={"documents": DOCS}).status_code == 200
        yield url


def _page(browser: Any, url: str, width: int = 1200) -> Any:
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.set_default_timeout(60_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{url}/ui")  # redirects to /ui/
    page.wait_for_selector("#sim-model-a option", state="attached")
    page.js_errors = errors
    return page


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_every_tab_loads_and_models_are_listed(browser: Any, server: str) -> None:
    page = _page(browser, server)
    assert not page.is_visible("#keybox")  # no --auth: no key asked for
    assert not page.is_visible("#search-ask")  # no LLM configured: no ask button
    for tab in ("similarity", "search", "models", "server"):
        page.click(f"#tab-{tab}")
        assert page.is_visible(f"#panel-{tab}")
        for other in {"similarity", "search", "models", "server"} - {tab}:
            assert not page.is_visible(f"#panel-{other}")
        if tab == "models":
            page.wait_for_selector("#models-table tbody tr[data-name='all-minilm:latest']")
            cells = page.locator("#models-table tbody tr[data-name='all-minilm:latest'] td").all_inner_texts()
            assert cells[2] == "F32" and cells[3] == "384"
        if tab == "server":  # texts/s comes from /metrics deltas: embed some texts, watch it rise
            expect(page.locator("#stat-queue")).to_have_text(re.compile(r"\d"))
            seen = (0.0, 0.0)
            with httpx.Client(base_url=server, timeout=60) as c:
                for _ in range(40):
                    c.post("/api/embed", json={"model": "all-minilm", "input": SENTENCES})
                    seen = (float(page.inner_text("#stat-rate")), float(page.inner_text("#stat-batch")))
                    if min(seen) > 0:
                        break
                    page.wait_for_timeout(300)
            assert min(seen) > 0, seen
        _shot(page, f"tab-{tab}")
    assert page.js_errors == []
    page.close()


def test_similarity_matrix_matches_api_embed(browser: Any, server: str) -> None:
    page = _page(browser, server)
    page.fill("#sim-texts", "\n".join(SENTENCES))
    page.select_option("#sim-model-a", "all-minilm:latest")
    page.click("#sim-run")
    page.wait_for_selector(".matrix td[data-row='2'][data-col='2']")
    shown = np.zeros((3, 3))
    for cell in page.locator(".matrix td").all():
        shown[int(cell.get_attribute("data-row")), int(cell.get_attribute("data-col"))] = float(
            cell.get_attribute("data-value"))
    vectors = np.array(httpx.post(f"{server}/api/embed", json={"model": "all-minilm", "input": SENTENCES},
                                  timeout=60).json()["embeddings"])
    expected = vectors @ vectors.T
    assert np.abs(shown - expected).max() < 1e-4
    assert shown[0, 1] > shown[0, 2]  # cat ~ kitten, not interest rates
    title = page.locator(".matrix td[data-row='0'][data-col='1']").get_attribute("title")
    assert f"{expected[0, 1]:.4f}" in title  # the value on hover
    _shot(page, "similarity")
    # two models side by side (the same model twice gives the same matrix)
    page.select_option("#sim-model-b", "all-minilm:latest")
    page.click("#sim-run")
    expect(page.locator(".matrix")).to_have_count(2)
    assert page.locator(".matrix td").count() == 18
    page.close()


def test_search_ranks_filters_and_shows_api_errors(browser: Any, server: str) -> None:
    page = _page(browser, server)
    page.click("#tab-search")
    page.wait_for_selector("#search-collection option[value='pets']", state="attached")
    page.fill("#search-query", "a sleeping cat")
    page.click("#search-run")
    page.wait_for_selector("#hits li.hit")
    ids = [li.get_attribute("data-id") for li in page.locator("#hits li.hit").all()]
    assert ids[0] == "cat" and set(ids) == {"cat", "dog", "car"}
    assert page.locator("#hits li.hit").first.locator("mark").first.inner_text().lower() == "cat"
    api = httpx.post(f"{server}/api/collections/pets/query", json={"query": "a sleeping cat", "top_k": 5}).json()
    shown = [float(s) for s in page.locator(".hit-score").all_inner_texts()]
    assert np.allclose(shown, [h["score"] for h in api["results"]], atol=6e-5)
    _shot(page, "search")
    page.fill("#search-where", '{"kind": "vehicle"}')
    page.click("#search-run")
    expect(page.locator("#hits li.hit")).to_have_count(1)
    assert page.locator("#hits li.hit").get_attribute("data-id") == "car"
    # an invalid filter: the API's own message, shown in the alert box
    page.fill("#search-where", '{"kind": {"$near": 1}}')
    page.click("#search-run")
    page.wait_for_selector("#error:not([hidden])")
    api_error = httpx.post(f"{server}/api/collections/pets/query",
                           json={"query": "x", "where": {"kind": {"$near": 1}}}).json()["error"]
    assert page.inner_text("#error") == api_error
    # not JSON at all: the page says so itself and sends nothing
    page.fill("#search-where", "{kind")
    page.click("#search-run")
    expect(page.locator("#error")).to_contain_text("not valid JSON")
    assert page.js_errors == []
    page.close()


def test_keyboard_tabs_and_narrow_screen(browser: Any, server: str) -> None:
    page = _page(browser, server, width=375)
    page.focus("#tab-similarity")
    page.keyboard.press("ArrowRight")
    assert page.get_attribute("#tab-search", "aria-selected") == "true"
    assert page.evaluate("document.activeElement.id") == "tab-search"
    page.keyboard.press("End")
    assert page.evaluate("document.activeElement.id") == "tab-server"
    page.keyboard.press("ArrowRight")  # wraps around
    assert page.evaluate("document.activeElement.id") == "tab-similarity"
    assert page.is_visible("#panel-similarity")
    # the form works from the keyboard: Tab to the button, Enter submits
    page.fill("#sim-texts", "\n".join(SENTENCES))
    page.focus("#sim-run")
    page.keyboard.press("Enter")
    page.wait_for_selector(".matrix td[data-row='2'][data-col='2']")
    for tab in ("similarity", "search", "models", "server"):
        page.click(f"#tab-{tab}")
        page.wait_for_timeout(300)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{tab} scrolls sideways by {overflow}px at 375px"
        _shot(page, f"narrow-{tab}")
    page.close()


def test_auth_page_asks_for_a_key_and_keeps_it_in_the_tab(browser: Any, tmp_path: Path) -> None:
    from authkit import auth_server

    with auth_server(tmp_path) as srv:
        key = srv.key("admin")
        page = browser.new_page()
        page.set_default_timeout(30_000)
        page.goto(f"{srv.url}/ui/")  # the page itself needs no key
        page.wait_for_selector("#keybox:not([hidden])")
        assert "needs an API key" in page.inner_text("#error")
        page.fill("#apikey", "es-wrong")
        page.click("#savekey")
        expect(page.locator("#error")).to_have_text("unauthorized")
        page.fill("#apikey", key)
        page.click("#savekey")
        page.wait_for_selector("#sim-model-a option[value='fake:latest']", state="attached")
        assert page.evaluate("sessionStorage.getItem('embedserve.apiKey')") == key
        assert page.evaluate("localStorage.length") == 0
        page.click("#tab-models")
        page.wait_for_selector("#models-table tbody tr")
        page.fill("#pull-name", "fake")  # the NDJSON stream drives the progress bar to the end
        page.click("#pull-run")
        expect(page.locator("#pull-status")).to_have_text("success")
        assert page.evaluate("document.getElementById('pull-progress').value") == 1
        page.fill("#pull-name", "no-such-model")  # a failing pull: the stream's own error text
        page.click("#pull-run")
        expect(page.locator("#error")).to_contain_text("file does not exist")
        page.click("#forgetkey")
        assert page.evaluate("sessionStorage.getItem('embedserve.apiKey')") is None
        _shot(page, "auth")
        page.close()


def test_ask_streams_the_answer_when_an_llm_is_configured(
    browser: Any, real_home: Path, tmp_path: Path
) -> None:
    from index.llm_stub import llm_stub

    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(real_home / "models")
    with llm_stub() as stub:
        app = create_app(Settings(home=home, offline=True, llm_url=stub.url, llm_model="tiny"))
        with serve(app) as url:
            with httpx.Client(base_url=url, timeout=120) as c:
                assert c.post("/api/collections/pets/documents", json={"documents": DOCS}).status_code == 200
            page = _page(browser, url)
            page.click("#tab-search")
            page.wait_for_selector("#search-ask:not([hidden])")
            page.wait_for_selector("#search-collection option[value='pets']", state="attached")
            page.fill("#search-query", "where does the cat sleep")
            page.click("#search-ask")
            expect(page.locator("#answer")).to_have_text("The answer is in [a#0].")
            expect(page.locator("#hits li.hit").first).to_have_attribute("data-id", "cat")
            path, body = stub.requests[-1]
            assert body["stream"] is True and "windowsill" in body["prompt"]
            _shot(page, "ask")
            assert page.js_errors == []
            page.close()
