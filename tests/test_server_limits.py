"""The server's edge under hostile clients (issue 12): every limit a clear 4xx, bad input never a 500,
one error shape everywhere, and another client served meanwhile.

A real ``askdocs serve`` configuration (uvicorn with h11, as the CLI runs it), real Milvus Lite, MiniLM
and SmolLM2; the limits are set small so that each is reached with a few kilobytes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from servers import Running, free_port

from askdocs.config import Settings
from askdocs.server import create_app

ERROR_KEYS = {"message", "type", "param", "code"}


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, embedder) -> Settings:
    base = tmp_path_factory.mktemp("limits")
    root = base / "docs"
    root.mkdir()
    (root / "vacuum.md").write_text("# Vacuum\n\nVACUUM FULL takes an ACCESS EXCLUSIVE lock on the table.\n")
    s = Settings(
        milvus_uri=str(base / "limits.db"),
        upload_dir=base / "uploads",
        ingest_roots=[root],
        max_tokens=8,
        temperature=0.0,
        max_upload_bytes=10_000,
        max_upload_files=2,
        max_form_fields=2,
        max_request_bytes=64 * 1024,
        max_header_bytes=8 * 1024,
        max_question_chars=500,
        max_messages=4,
        max_tokens_limit=32,
    )
    from askdocs import Index

    with Index(s, embedder=embedder) as ix:
        assert ix.ingest(root).added == 1
    return s


@pytest.fixture(scope="module")
def url(settings: Settings, embedder, local_llm) -> Iterator[str]:
    with Running(create_app(settings, generator=local_llm, embedder=embedder), free_port(), settings) as running:
        yield running.url


@pytest.fixture
def http(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=60) as c:
        yield c


def one_error(r: httpx.Response, status: int) -> dict:
    """The response is ``status`` with OpenAI's error object and nothing else."""
    assert r.status_code == status, r.text[:500]
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == ERROR_KEYS, body
    assert body["error"]["message"] and "Traceback" not in r.text
    return body["error"]


def while_searching(url: str, send) -> httpx.Response:
    """Send a bad request while another client searches: the search must still be answered."""
    result: dict[str, httpx.Response] = {}

    def bad() -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            result["r"] = send(c)

    t = threading.Thread(target=bad)
    t.start()
    with httpx.Client(base_url=url, timeout=30) as other:
        r = other.post("/api/search", json={"query": "vacuum lock", "k": 1})
        assert r.status_code == 200 and r.json()["results"][0]["source"] == "vacuum.md"
    t.join(60)
    return result["r"]


def chat(messages: list, **extra: object) -> dict:
    return {"messages": messages, **extra}


USER = {"role": "user", "content": "Which lock does VACUUM FULL take?"}

LIMITS = {
    "query": (lambda c: c.post("/api/search", json={"query": "q" * 501}), 400, "query"),
    "question": (lambda c: c.post("/api/ask", json={"question": "q" * 501}), 400, "question"),
    "history": (
        lambda c: c.post("/api/ask", json={"question": "q", "history": [{"role": "user", "content": "h" * 501}]}),
        400,
        "history.0.content",
    ),
    "chat message": (
        lambda c: c.post("/v1/chat/completions", json=chat([{"role": "user", "content": "m" * 501}])),
        400,
        "messages.0.content",
    ),
    "messages": (lambda c: c.post("/v1/chat/completions", json=chat([USER] * 5)), 400, "messages"),
    "max_tokens": (lambda c: c.post("/v1/chat/completions", json=chat([USER], max_tokens=33)), 400, "max_tokens"),
    "max_completion_tokens": (
        lambda c: c.post("/v1/chat/completions", json=chat([USER], max_completion_tokens=10_000)),
        400,
        "max_tokens",
    ),
    "json body (declared)": (
        lambda c: c.post("/api/search", json={"query": "q", "pad": "x" * 70_000}),
        413,
        None,
    ),
    "json body (chunked)": (
        lambda c: c.post(
            "/api/search",
            content=(b"x" * 8192 for _ in range(10)),
            headers={"content-type": "application/json"},
        ),
        413,
        None,
    ),
    "form fields": (
        lambda c: c.post(
            "/api/ingest",
            data={f"f{i}": "v" for i in range(3)},
            files=[("files", ("a.md", b"# a\n\ntext\n", "text/markdown"))],
        ),
        400,
        None,
    ),
    "upload count": (
        lambda c: c.post("/api/ingest", files=[("files", (f"f{i}.md", b"# a", "text/markdown")) for i in range(3)]),
        413,
        None,
    ),
    "upload size": (
        lambda c: c.post("/api/ingest", files=[("files", ("a.md", b"x" * 10_001, "text/markdown"))]),
        413,
        None,
    ),
}


@pytest.mark.parametrize("case", list(LIMITS))
def test_each_limit_is_a_clear_4xx_while_others_are_served(url: str, case: str) -> None:
    send, status, param = LIMITS[case]
    err = one_error(while_searching(url, send), status)
    assert err["param"] == param, err


def test_oversized_headers_are_refused_and_the_server_lives_on(http: httpx.Client) -> None:
    r = http.get("/health", headers={"x-pad": "h" * 9000})
    assert r.status_code in (400, 431)  # h11 answers before the app sees the request
    assert http.get("/health").status_code == 200


@pytest.mark.parametrize(
    "content",
    [
        [{"type": "text", "text": 5}],
        [{"type": "text", "text": ["a"]}],
        [{"type": "text", "text": {"a": 1}}],
        [{"type": 3}],
        7,
    ],
)
def test_malformed_chat_content_is_400(http: httpx.Client, content: object) -> None:
    """F8: content parts whose text is an int, a list or an object were a 500 (TypeError in join)."""
    one_error(http.post("/v1/chat/completions", json=chat([{"role": "user", "content": content}])), 400)


def test_null_text_part_is_no_text(http: httpx.Client) -> None:
    r = http.post("/v1/chat/completions", json=chat([{"role": "user", "content": [{"type": "text", "text": None}]}]))
    assert "must be a non-empty user message" in one_error(r, 400)["message"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "a \\ud800 b"}]}'),
        ("/v1/chat/completions", '{"messages": [{"role": "user", "content": [{"type": "text", "text": "\\udfff"}]}]}'),
        ("/api/search", '{"query": "x\\ud83d"}'),
        ("/api/ask", '{"question": "\\ud83d"}'),
    ],
)
def test_lone_surrogate_is_400(http: httpx.Client, path: str, body: str) -> None:
    """F8: ``"\\ud800"`` is valid JSON but no valid text; it reached the tokenizer and was a 500."""
    r = http.post(path, content=body, headers={"content-type": "application/json"})
    assert any(w in one_error(r, 400)["message"] for w in ("surrogate", "unicode"))


def test_hostile_server_paths_are_400(http: httpx.Client, settings: Settings) -> None:
    """F8: ENAMETOOLONG (a 300-character name, a 5,000-character path) and a symlink loop were 500s."""
    root = settings.ingest_roots[0]
    loop = root / "loop"
    loop.symlink_to(loop)
    try:
        for paths, status in [
            (["a" * 300], 400),
            (["a/" * 2500], 400),
            (["a" * 100_000], 413),  # over max_request_bytes before it is even parsed
            (["loop"], 400),
        ]:
            r = http.post("/api/ingest", json={"paths": paths})
            err = one_error(r, status)
            assert len(r.content) < 2000 and str(root) not in err["message"], err  # no echo of the path
    finally:
        loop.unlink()


def test_long_upload_names(http: httpx.Client, settings: Settings) -> None:
    """F8: a 250-byte name failed on its 268-byte ``.part`` temp name; past 255 bytes it is a 400."""
    name = "n" * 247 + ".md"
    r = http.post("/api/ingest", files=[("files", (name, b"# Long\n\nA long name.\n", "text/markdown"))])
    assert r.status_code == 202, r.text
    one_error(http.post("/api/ingest", files=[("files", ("n" * 297 + ".md", b"# x", "text/markdown"))]), 400)
    deadline = time.time() + 60
    while http.get(f"/api/jobs/{r.json()['job']}").json()["state"] not in ("done", "failed"):
        assert time.time() < deadline
        time.sleep(0.2)
    assert (settings.upload_dir / name).is_file()
    assert not list(settings.upload_dir.glob(".*.part"))


def test_every_error_has_one_shape(http: httpx.Client) -> None:
    """N: unknown routes, wrong methods, bad multipart, bad JSON: one shape, 400 for bad requests."""
    one_error(http.get("/no/such/route"), 404)
    one_error(http.get("/v1/no-such"), 404)
    one_error(http.delete("/v1/chat/completions"), 405)
    one_error(http.post("/api/ingest", content=b"--x\r\n", headers={"content-type": "multipart/form-data"}), 400)
    bad_utf8 = b'{"query": "\xff\xfe"}'
    one_error(http.post("/api/search", content=bad_utf8, headers={"content-type": "application/json"}), 400)
    deep = "[" * 30_000 + "]" * 30_000
    one_error(http.post("/api/search", content=deep, headers={"content-type": "application/json"}), 400)
    one_error(http.post("/api/ingest", content="[" * 30_000, headers={"content-type": "application/json"}), 400)
    err = one_error(http.post("/v1/chat/completions", json={"messages": []}), 400)
    assert err["param"] == "messages" and err["code"]
    err = one_error(http.post("/api/search", json={"query": "x", "k": 0}), 400)
    assert err["param"] == "k"


def test_metric_labels_stay_bounded(http: httpx.Client) -> None:
    """F7: arbitrary methods and paths, before auth, must not each make a new Prometheus series."""
    for i in range(5):
        http.request(f"X{i}METHOD", "/health")
        http.get(f"/random-{i}")
    text = http.get("/metrics").text
    lines = [line for line in text.splitlines() if line.startswith("askdocs_requests_total{")]
    assert not any("X0METHOD" in line or "random-" in line for line in lines), lines
    assert any('method="other"' in line for line in lines)
    assert len({json.dumps(line.split("}")[0]) for line in lines}) < 20


@pytest.fixture
def busy_server(
    request: pytest.FixtureRequest, settings: Settings, embedder, local_llm
) -> Iterator[tuple[str, object]]:
    """A server that admits one answer at a time and lets a client ask for long ones."""
    update = {"max_pending_answers": 1, "max_tokens_limit": 4000, **getattr(request, "param", {})}
    tight = settings.model_copy(update=update)
    app = create_app(tight, generator=local_llm, embedder=embedder)
    with Running(app, free_port(), tight) as running:
        yield running.url, app


LONG = {"question": "Write a very long essay about VACUUM, locks and tables.", "max_tokens": 4000}


def test_backpressure_then_cancellation_on_disconnect(busy_server, local_llm) -> None:
    """F5: a full server says 503 + Retry-After at once (others are still served), and a client that
    goes away stops its generation: the model is free again within seconds, not after 4,000 tokens."""
    url, app = busy_server
    service = app.state.service
    with httpx.Client(base_url=url, timeout=60) as first, first.stream("POST", "/api/ask", json=LONG) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        while not next(lines).startswith("event: token"):
            pass
        with httpx.Client(base_url=url, timeout=30) as other:
            t = time.monotonic()
            busy = other.post("/api/ask", json={"question": "x"})
            assert time.monotonic() - t < 10
            one_error(busy, 503)
            assert busy.headers["retry-after"]
            chat_busy = other.post("/v1/chat/completions", json=chat([USER]))
            one_error(chat_busy, 503)
            assert other.post("/api/search", json={"query": "vacuum", "k": 1}).status_code == 200
        assert service.in_flight == 1
    # the client has closed its stream: the generation must stop and the slot come back
    deadline = time.monotonic() + 30
    while service.in_flight or service.streams:
        assert time.monotonic() < deadline, (service.in_flight, len(service.streams))
        time.sleep(0.2)
    assert local_llm._lock.acquire(timeout=15), "the model is still generating for a client that has gone"
    local_llm._lock.release()
    with httpx.Client(base_url=url, timeout=120) as again:
        r = again.post("/v1/chat/completions", json=chat([USER], max_tokens=4))
        assert r.status_code == 200, r.text
    assert service.in_flight == 0


@pytest.mark.parametrize("busy_server", [{"request_timeout_s": 2.0, "max_pending_answers": 2}], indirect=True)
def test_request_timeout_ends_an_answer(busy_server, local_llm) -> None:
    """An answer past request_timeout_s ends: 504 when whole, an error event when streaming; the model is freed."""
    url, app = busy_server
    with httpx.Client(base_url=url, timeout=120) as c:
        t = time.monotonic()
        r = c.post("/v1/chat/completions", json=chat([USER], max_tokens=4000))
        assert "timed out" in one_error(r, 504)["message"]
        with c.stream("POST", "/api/ask", json=LONG) as s:
            text = "".join(s.iter_text())
        assert "event: error" in text and "timed out" in text and "event: done" not in text
        assert time.monotonic() - t < 60
    deadline = time.monotonic() + 30
    while app.state.service.in_flight:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert local_llm._lock.acquire(timeout=60)
    local_llm._lock.release()


def test_non_streaming_disconnect_cancels_its_generation(busy_server, local_llm) -> None:
    """F5: a whole (non-streaming) answer whose client goes away stops too.  Starlette does not notice a
    disconnect while a non-streaming handler runs, so without the server watching for it the model wrote
    all 4,000 tokens for nobody and the slot stayed taken."""
    url, app = busy_server
    service = app.state.service
    timeout = httpx.Timeout(60, read=4)  # this client gives up after 4 s without a byte and hangs up
    long_chat = chat([{"role": "user", "content": LONG["question"]}], max_tokens=4000)
    with httpx.Client(base_url=url, timeout=timeout) as gone, pytest.raises(httpx.ReadTimeout):
        gone.post("/v1/chat/completions", json=long_chat)
    t = time.monotonic()
    while service.in_flight:
        assert time.monotonic() - t < 10, "the slot of a client that has gone is still taken"
        time.sleep(0.1)
    assert local_llm._lock.acquire(timeout=10), "the model is still generating for a client that has gone"
    local_llm._lock.release()
    with httpx.Client(base_url=url, timeout=120) as again:
        r = again.post("/v1/chat/completions", json=chat([USER], max_tokens=4))
        assert r.status_code == 200, r.text


def test_cancelling_one_answer_leaves_the_rest_of_its_batch(local_llm) -> None:
    """The micro-batcher runs several answers in one ``generate``: cancelling one row stops that row only,
    and the others come out exactly as they would have."""
    from askdocs.generate import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=12)
    convs = [[{"role": "user", "content": LONG["question"]}], [USER]]
    whole = local_llm.generate(convs, params)
    gone, kept = threading.Event(), threading.Event()
    gone.set()
    cut = local_llm.generate(convs, params, cancelled=[gone, kept])
    assert cut[0].finish_reason == "cancelled" and cut[0].completion_tokens <= 1
    assert cut[1] == whole[1] and whole[0].completion_tokens > 1
