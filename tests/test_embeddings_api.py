"""``POST /v1/embeddings`` on a real ``askdocs serve`` app (uvicorn on loopback, MiniLM, Milvus Lite).

Clients are the openai SDK (its default asks for base64 and decodes it; ``float`` asked explicitly) and
askdocs itself: ``--embed-url`` pointed at the server ingests and searches like the in-process model.
Everything goes through the same API key as the rest of the server.
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from servers import Running, free_port
from test_server import SAMPLE

from askdocs import Index
from askdocs.config import Settings
from askdocs.generate.none import NoGenerator
from askdocs.server import create_app

KEY = "emb-s3cret"
TEXTS = ["What do the parameters of HNSW mean?", "Milvus Lite runs in your Python process.", "ünïcödé ✓"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, embedder) -> Iterator[Running]:
    base = tmp_path_factory.mktemp("embsrv")
    settings = Settings(milvus_uri=str(base / "served.db"), api_key=KEY, upload_dir=base / "uploads")
    with Running(create_app(settings, generator=NoGenerator(), embedder=embedder), free_port()) as running:
        yield running


@pytest.fixture
def client(server: Running):
    import openai

    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, timeout=120)


def test_sdk_float_and_base64_match_the_model(client, embedder) -> None:
    want = embedder.embed_documents(TEXTS)
    as_float = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS, encoding_format="float")
    as_b64 = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS)  # the SDK's base64 default
    for r in (as_float, as_b64):
        assert [d.index for d in r.data] == [0, 1, 2]
        got = np.array([d.embedding for d in r.data], dtype=np.float32)
        assert got.shape == (3, 384)
        np.testing.assert_allclose(got, want, atol=1e-6)
        assert r.usage.prompt_tokens == r.usage.total_tokens > len(TEXTS)
    one = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS[0], encoding_format="float")
    assert len(one.data) == 1
    np.testing.assert_allclose(one.data[0].embedding, want[0], atol=1e-6)


def test_base64_on_the_wire_is_little_endian_float32(server: Running, embedder) -> None:
    body = {"model": embedder.model_name, "input": TEXTS[1], "encoding_format": "base64"}
    r = httpx.post(f"{server.url}/v1/embeddings", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200 and r.json()["object"] == "list" and r.json()["model"] == embedder.model_name
    row = np.frombuffer(base64.b64decode(r.json()["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(row, embedder.embed_documents([TEXTS[1]])[0], atol=1e-6)


def test_errors_and_the_api_key(server: Running, client) -> None:
    import openai

    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    with pytest.raises(openai.BadRequestError, match="empty"):
        client.embeddings.create(model="all-MiniLM-L6-v2", input=["ok", ""])
    with pytest.raises(openai.BadRequestError, match="dimensions must be 384"):
        client.embeddings.create(model="all-MiniLM-L6-v2", input="x", dimensions=128)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong").embeddings.create(model="x", input="x")
    r = httpx.post(f"{server.url}/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": [1, 2]})
    assert r.status_code == 401  # the key is checked before the body


def test_askdocs_embed_url_ingests_and_searches_through_the_server(server: Running, embedder, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    for rel in ("reference/index.md", "getstarted/milvus_lite.md", "getstarted/quickstart.md"):
        (docs / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLE / rel, docs / rel)
    remote = Settings(
        milvus_uri=str(tmp_path / "remote.db"),
        embed_url=[f"{server.url}/v1"],
        embed_api_key=KEY,
        embed_model="all-MiniLM-L6-v2",
        search_mode="dense",
    )
    local = remote.model_copy(update={"milvus_uri": str(tmp_path / "local.db"), "embed_url": []})
    with Index(remote) as rix, Index(local, embedder=embedder) as lix:
        assert rix.ingest(docs).added == 3 and lix.ingest(docs).added == 3
        assert rix.status().model == embedder.model_name
        for query in ("What is Milvus Lite?", "What do the parameters of HNSW mean?"):
            got, want = rix.search(query, k=5), lix.search(query, k=5)
            assert [h.id for h in got] == [h.id for h in want]
            np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=1e-4)


def test_input_type_adds_the_models_prefixes(embedder, tmp_path: Path) -> None:
    """As given by default (the client prefixes); input_type asks for the model's own (e5: query:/passage:)."""
    import copy

    import openai

    prefixed = copy.copy(embedder)  # the same loaded MiniLM, with e5-style prefixes
    prefixed.query_instruction, prefixed.document_prefix = "query: ", "passage: "
    app = create_app(Settings(milvus_uri=str(tmp_path / "p.db")), generator=NoGenerator(), embedder=prefixed)
    with Running(app, free_port()) as running:
        client = openai.OpenAI(base_url=f"{running.url}/v1", api_key="unused", timeout=120)

        def one(**kw: object) -> np.ndarray:
            r = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS[0], encoding_format="float", **kw)
            return np.array(r.data[0].embedding)

        for kind, prefix in ((None, ""), ("query", "query: "), ("passage", "passage: ")):
            got = one(extra_body={"input_type": kind} if kind else None)
            np.testing.assert_allclose(got, embedder.embed_as_is([prefix + TEXTS[0]])[0], atol=1e-6)
