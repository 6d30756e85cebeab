"""The web page in a real browser: Playwright driving Debian's chromium against the real server.

The first test asks the packaged CPU LLM a question and watches the answer stream in, opens a
source's passage, uploads a file and finds it in the documents list, deletes it; keyboard only
where a user would type.  The second runs a server with an API key and a scripted LLM (so that the
answer's citations are known): the page asks for the key and keeps it, "[n]" markers become buttons
while the answer streams, answer and document text are never parsed as HTML, and a follow-up
sends the conversation.  Screenshots are kept in test-artifacts/.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from servers import Running, free_port

from askdocs import Index
from askdocs.config import Settings
from askdocs.generate.base import BaseGenerator, Generation, Message, SamplingParams, TokenStream
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
    assert page.inner_text("#panel-title").startswith("[1] "), "the best source is listed first and numbered [1]"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser.png"), full_page=True)
    page.keyboard.press("Escape")
    assert page.locator("#panel").is_hidden()

    # documents: upload a file, watch the job finish, find it, delete it
    page.click("#tab-docs")
    note = tmp_path / "okapi-notes.md"
    note.write_text("# Okapi\n\nThe okapi setting tunes the flux capacitor of the askdocs browser test.\n")
    stray = tmp_path / "settings.json"  # not a document: refused, while the note is still ingested
    stray.write_text("{}")
    assert ".docx" in page.get_attribute("#files", "accept")
    page.set_input_files("#files", [str(note), str(stray)])
    page.click("#upload-button")
    page.wait_for_selector("#upload-status:has-text('Ingest done')", timeout=120_000)
    assert "not uploaded: settings.json: unsupported type .json" in page.inner_text("#upload-status")
    row = page.locator("#docs-body tr", has_text="okapi-notes.md")
    row.wait_for()
    assert row.count() == 1
    page.screenshot(path=str(ARTIFACTS / "browser-documents.png"), full_page=True)
    row.get_by_role("button", name="Delete okapi-notes.md").click()
    page.wait_for_selector("#upload-status:has-text('Removed okapi-notes.md')")
    from playwright.sync_api import expect

    expect(page.locator("#docs-body tr", has_text="okapi-notes.md")).to_have_count(0)
    page.close()


class Scripted(BaseGenerator):
    """An LLM whose answer is known: it cites [2] and [1] (the marker cut between two pieces),
    names a passage that does not exist ([9]) and writes markup that must stay text."""

    name = "scripted"
    PIECES = (
        "The okapi ",
        "setting <b>tunes</b> [",
        "2] the flux capacitor [1",
        "]. ",
        "[9] The okapi runs on plutonium.",
    )
    #: what the server sends back: [9] names no passage and is removed, which leaves that sentence uncited
    FINAL = "The okapi setting <b>tunes</b> [2] the flux capacitor [1]. The okapi runs on plutonium."

    def __init__(self) -> None:
        self.prompts: list[Sequence[Message]] = []
        # The first answer holds after its first citation until the test has seen it as a button
        # while the answer is still pending: a fixed delay raced the browser on a loaded CI machine.
        self.cited_seen = threading.Event()

    def generate(self, conversations: Sequence[Sequence[Message]], params: SamplingParams) -> list[Generation]:
        # only the follow-up rewrite comes here
        return [Generation("What does the okapi setting tune?") for _ in conversations]

    # the follow-up: Markdown, cut at max_tokens
    MARKDOWN = (
        "Tune it in **two** steps [1]:\n\n1. set `okapi`\n2. restart\n\n",
        "```\nokapi --tune <x>\n```\n\n| flux | phase |\n|---|---|\n| 1.21 | [2] |\n",
    )

    def stream(self, messages: Sequence[Message], params: SamplingParams) -> TokenStream:
        self.prompts.append(messages)
        turn = len(self.prompts)
        script, finish, delay = {1: (self.PIECES, "stop", 0.25), 2: (self.MARKDOWN, "length", 0.25)}.get(
            turn,
            (("A slow answer ",) * 60, "stop", 0.5),  # the third question is stopped by the user
        )

        def pieces(ts: TokenStream) -> Iterator[str]:
            for p in script:
                time.sleep(delay)
                yield p
                if turn == 1 and p.startswith("2]"):
                    self.cited_seen.wait(timeout=120)
            ts.result = Generation("".join(script), 100, 20, finish)

        return TokenStream(pieces)


@pytest.fixture(scope="module")
def keyed_site(tmp_path_factory: pytest.TempPathFactory, embedder) -> Iterator[tuple[str, Scripted]]:
    base = tmp_path_factory.mktemp("keyed")
    corpus = base / "docs"
    corpus.mkdir()
    (corpus / "okapi.txt").write_text(
        "The okapi setting tunes the flux capacitor. "
        'Beware of <img src=x onerror="window.pwned=1"> and <script>window.pwned=2</script> in documents.\n'
    )
    deep = corpus / "guides" / "configuration-reference" / "time-circuits"
    deep.mkdir(parents=True)
    (deep / "gigawatt-tables-for-the-time-circuits-appendix.txt").write_text("Time circuits need a date.\n")
    (corpus / "flux.txt").write_text("The flux capacitor needs 1.21 gigawatts; the okapi setting changes its phase.\n")
    # about citations and escaping, not refusal: refusal off
    settings = Settings(
        milvus_uri=str(base / "keyed.db"), upload_dir=base / "uploads", top_k=2, api_key="s3cret-key", refuse=False
    )
    with Index(settings, embedder=embedder) as ix:
        ix.ingest(corpus)
    llm = Scripted()
    with Running(create_app(settings, generator=llm, embedder=embedder), free_port()) as running:
        yield running.url, llm


def test_api_key_citations_escaping_and_follow_up(browser, keyed_site: tuple[str, Scripted]) -> None:
    from playwright.sync_api import expect

    site, llm = keyed_site
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.goto(site)

    # the server refuses the page until it has the key; the page asks for it and keeps it
    expect(page.locator("#key-form")).to_be_visible()
    expect(page.locator("#key")).to_be_focused()
    page.keyboard.type("wrong")
    page.keyboard.press("Enter")
    expect(page.locator("#key-status")).to_have_text("That key was refused.")
    page.fill("#key", "s3cret-key")
    page.keyboard.press("Enter")
    expect(page.locator("#info")).to_contain_text("3 documents")
    expect(page.locator("#key-form")).to_be_hidden()
    page.reload()
    expect(page.locator("#info")).to_contain_text("3 documents")
    expect(page.locator("#key-form")).to_be_hidden()

    # the answer streams: a citation becomes a button before the answer is finished
    expect(page.locator("#question")).to_be_focused()
    page.keyboard.type("What does the okapi setting tune?")
    page.keyboard.press("Enter")
    try:
        page.wait_for_selector(".answer.pending .cite", timeout=120_000)
    except Exception as e:  # say what the page showed instead
        raise AssertionError(f"no pending citation; the turn reads: {page.inner_text('.turn')!r}") from e
    finally:
        llm.cited_seen.set()
    expect(page.locator(".answer")).not_to_have_class("answer pending", timeout=60_000)
    answer = page.locator(".answer")
    # markup stays text; the uncited sentence is dimmed behind a marker (the done event's `sentences`)
    assert answer.inner_text().strip() == Scripted.FINAL.replace(". The okapi runs", ". ✗ The okapi runs")
    expect(answer.locator(".unsupported")).to_have_count(1)
    expect(answer.locator(".unsupported")).to_have_text("✗ The okapi runs on plutonium.")
    assert answer.locator(".unsupported").evaluate("e => Number(getComputedStyle(e).opacity)") < 1
    assert answer.locator("b").count() == 0
    cites = answer.locator("button.cite")
    assert cites.all_inner_texts() == ["[2]", "[1]"]  # [9] names no passage: text, not a button
    expect(answer).to_have_attribute("aria-busy", "false")
    expect(page.locator(".sources .cited")).to_have_count(2)

    # a citation opens its passage; the document's markup is shown as text, never run
    cites.first.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#panel")).to_be_visible()
    expect(page.locator("#panel")).to_be_focused()
    expect(page.locator("#panel-title")).to_have_text(re.compile(r"^\[2\] (okapi|flux)\.txt$"))
    texts = " ".join(page.locator(".sources button").all_inner_texts())
    assert "okapi.txt" in texts and "flux.txt" in texts
    page.locator(".sources button", has_text="okapi.txt").click()
    expect(page.locator("#panel-text")).to_contain_text('<img src=x onerror="window.pwned=1">')
    assert page.evaluate("window.pwned") is None
    assert page.locator("#panel img, #panel script, .turn img").count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-citations.png"))
    page.keyboard.press("Escape")
    expect(page.locator("#panel")).to_be_hidden()

    # a follow-up sends the conversation: the server rewrites it into a standalone query
    page.focus("#question")
    page.keyboard.type("and what else?")
    page.keyboard.press("Enter")
    expect(page.locator(".turn")).to_have_count(2)
    latest = page.locator(".turn").first
    expect(latest.locator(".query")).to_have_text("Searched for: What does the okapi setting tune?")
    expect(latest.locator(".answer")).to_have_attribute("aria-busy", "false", timeout=60_000)
    prompt = llm.prompts[-1]
    assert any(m["role"] == "assistant" and "okapi" in m["content"] for m in prompt), prompt

    # the follow-up's answer is Markdown: a list, code, a table, citations inside them; it was cut short
    md = latest.locator(".answer")
    expect(md.locator("ol > li")).to_have_count(2)
    expect(md.locator("strong")).to_have_text("two")
    expect(md.locator("pre code")).to_have_text("okapi --tune <x>")  # code keeps its < > as text
    expect(md.locator("table td").first).to_have_text("1.21")
    assert md.locator("button.cite").all_inner_texts() == ["[1]", "[2]"]
    expect(latest.locator(".note")).to_contain_text("max_tokens")
    expect(page.locator(".turn").nth(1).locator(".note")).to_be_hidden()  # the first answer was complete
    page.screenshot(path=str(ARTIFACTS / "ask-desktop.png"), full_page=True)

    # the conversation survives a reload, citations still open their passages
    page.reload()
    expect(page.locator(".turn")).to_have_count(2)
    expect(page.locator(".turn").first.locator(".answer table")).to_have_count(1)
    page.locator(".turn").nth(1).locator("button.cite").first.click()
    expect(page.locator("#panel-title")).to_have_text(re.compile(r"^\[2\] "))
    page.keyboard.press("Escape")

    # Stop ends a long answer at once and keeps what was written
    page.focus("#question")
    page.keyboard.type("Tell me everything.")
    page.keyboard.press("Enter")
    expect(page.locator("#stop-button")).to_be_visible()
    expect(page.locator(".turn").first.locator(".answer")).to_contain_text("A slow answer", timeout=30_000)
    page.click("#stop-button")
    stopped = page.locator(".turn").first
    expect(stopped.locator(".answer")).to_have_attribute("aria-busy", "false", timeout=5_000)
    expect(stopped.locator(".note")).to_have_text(re.compile("^Stopped"))
    expect(page.locator("#stop-button")).to_be_hidden()
    expect(page.locator("#ask-button")).to_be_enabled()

    # every view at a phone's width (390 px) and the desktop's: nothing wider than the screen
    for name, width, height in (("phone", 390, 844), ("desktop", 1200, 800)):
        page.set_viewport_size({"width": width, "height": height})
        page.click("#tab-ask")
        page.screenshot(path=str(ARTIFACTS / f"ask-{name}.png"), full_page=True)
        page.locator(".turn").nth(1).locator("button.cite").first.click()
        expect(page.locator("#panel")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / f"passage-{name}.png"))
        page.keyboard.press("Escape")
        page.click("#tab-docs")
        expect(page.locator("#docs-body tr")).to_have_count(3)
        page.screenshot(path=str(ARTIFACTS / f"documents-{name}.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        for row in page.locator("#docs-body tr").all():
            box = row.get_by_role("button").bounding_box()
            assert box and box["x"] + box["width"] <= width, (name, box)
        # a long path breaks at its slashes and hyphens, not letter by letter: a few lines at most
        lines = page.evaluate(
            "(td) => td.getBoundingClientRect().height / parseFloat(getComputedStyle(td).lineHeight)",
            page.locator("td.src", has_text="gigawatt-tables").element_handle(),
        )
        assert lines <= (5 if name == "phone" else 3), (name, lines)
    page.click("#tab-ask")
    page.click("#new-chat")
    expect(page.locator(".turn")).to_have_count(0)
    page.reload()
    expect(page.locator("#info")).to_contain_text("3 documents")
    expect(page.locator(".turn")).to_have_count(0)  # a new chat is forgotten for good
    context.close()


def test_api_docs_render_offline(browser, site: str) -> None:
    """/docs with every request off the server refused: Swagger UI comes from askdocs, not a CDN."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    refused: list[str] = []

    def offline(route) -> None:
        if route.request.url.startswith(site):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page.route("**/*", offline)
    page.goto(f"{site}/docs")
    page.locator(".opblock-summary-path", has_text="/v1/chat/completions").first.wait_for(timeout=30_000)
    page.locator(".opblock-summary-path", has_text="/api/search").first.click()
    page.wait_for_selector("text=Request body")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-api-docs.png"))
    assert not [u for u in refused if u.endswith((".js", ".css"))], refused
    page.close()
