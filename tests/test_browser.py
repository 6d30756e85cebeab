"""The web page in a real browser: Playwright driving Debian's chromium against the real server.

Asks a question and watches the answer stream in, opens a source's passage, uploads a file and
finds it in the documents list, deletes it; keyboard only where a user would type.  A screenshot
is kept in test-artifacts/.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_server import Running, free_port

from askdocs import Index
from askdocs.config import Settings
from askdocs.server import create_app

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, embedder, local_llm):
    base = tmp_path_factory.mktemp("web")
    corpus = base / "docs"
    for rel in ("reference/index.md", "getstarted/milvus_lite.md"):
        (corpus / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "samples" / "milvus-docs" / rel, corpus / rel)
    settings = Settings(
        milvus_uri=str(base / "web.db"), upload_dir=base / "uploads", max_tokens=16, temperature=0.0, top_k=3
    )
    with Index(settings, embedder=embedder) as ix:
        ix.ingest(corpus)
    with Running(create_app(settings, generator=local_llm, embedder=embedder), free_port()) as running:
        yield running.url


def test_ask_read_a_source_upload_and_delete(browser, site: str, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.on("dialog", lambda d: d.accept())  # the delete confirmation
    page.goto(site)
    page.wait_for_selector("#info:has-text('2 documents')")
    assert page.locator("#key-form").is_hidden(), "no API key is configured"

    # ask with the keyboard: the question box has focus, Enter submits
    page.keyboard.type("What do the parameters of HNSW mean?")
    page.keyboard.press("Enter")
    page.wait_for_selector(".answer:not(.pending)", timeout=120_000)
    answer = page.inner_text(".answer")
    assert answer.strip() and "error" not in page.inner_html(".turn")
    sources = page.locator(".sources button")
    assert sources.count() == 3
    assert "reference/index.md" in page.inner_text(".sources")

    # open the best source with the keyboard and read its passage
    sources.first.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#panel:not([hidden])")
    assert len(page.inner_text("#panel-text")) > 50
    assert page.inner_text("#panel-title").startswith("[3] ")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser.png"), full_page=True)
    page.keyboard.press("Escape")
    assert page.locator("#panel").is_hidden()

    # documents: upload a file, watch the job finish, find it, delete it
    page.click("#tab-docs")
    note = tmp_path / "okapi-notes.md"
    note.write_text("# Okapi\n\nThe okapi setting tunes the flux capacitor of the askdocs browser test.\n")
    page.set_input_files("#files", str(note))
    page.click("#upload-button")
    page.wait_for_selector("#upload-status:has-text('Ingest done')", timeout=120_000)
    row = page.locator("#docs-body tr", has_text="okapi-notes.md")
    row.wait_for()
    assert row.count() == 1
    page.screenshot(path=str(ARTIFACTS / "browser-documents.png"), full_page=True)
    row.get_by_role("button", name="Delete okapi-notes.md").click()
    page.wait_for_selector("#upload-status:has-text('Removed okapi-notes.md')")
    from playwright.sync_api import expect

    expect(page.locator("#docs-body tr", has_text="okapi-notes.md")).to_have_count(0)
    page.close()
