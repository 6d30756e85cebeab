"""Two ``askdocs serve`` replicas sharing one real Milvus 2.3.5 standalone server.

Replicas share what lives in Milvus (documents, chunks, the collection's metadata); ingest jobs and
uploaded files are per replica (README, "Scaling out").  The server and both replicas run in the
loopback-only network namespace of ``test_milvus_server``'s ``milvus23`` fixture, and so does every
request: a short Python client started in the namespace per call.  Milvus 2.3 has no BM25, so the
replicas search densely.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_milvus_server import milvus23  # noqa: F401  (the fixture: Milvus 2.3.5 in a namespace)

URI = "http://127.0.0.1:19530"
PORTS = (18081, 18082)
QUESTION = "Which parameter sets the maximum degree of a node in the graph?"

_CLIENT = """
import json, sys, httpx
method, url, body, upload = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
files = [("files", (upload.rsplit("/", 1)[-1], open(upload, "rb"), "text/markdown"))] if upload else None
try:
    r = httpx.request(method, url, json=body, files=files, timeout=120)
    print(json.dumps([r.status_code, r.json()]))
except httpx.TransportError as e:
    print(json.dumps([0, str(e)]))
"""


def call(ns: str, port: int, method: str, path: str, body: object = None, upload: Path | None = None):
    """(status, JSON body) of one request made from inside the namespace (status 0: not reachable)."""
    cmd = ["ip", "netns", "exec", ns, sys.executable, "-c", _CLIENT, method, f"http://127.0.0.1:{port}{path}"]
    out = subprocess.run([*cmd, json.dumps(body), str(upload or "")], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    return tuple(json.loads(out.stdout))


@pytest.fixture(scope="module")
def replicas(milvus23: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # noqa: F811
    base = tmp_path_factory.mktemp("replicas")
    procs = []
    for i, port in enumerate(PORTS):
        env = {
            **os.environ,
            "ASKDOCS_SEARCH_MODE": "dense",
            "ASKDOCS_COLLECTION": "replicated",
            "ASKDOCS_UPLOAD_DIR": str(base / f"uploads{i}"),  # per replica, as on separate hosts
        }
        cmd = ["ip", "netns", "exec", milvus23, sys.executable, "-m", "askdocs.cli", "serve", "--uri", URI,
               "--port", str(port), "--llm-backend", "none"]  # fmt: skip
        log = (base / f"replica{i}.log").open("w")
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
    try:
        for i, port in enumerate(PORTS):
            deadline = time.monotonic() + 300
            while call(milvus23, port, "GET", "/health")[0] != 200:
                if procs[i].poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"replica {i} did not start: {(base / f'replica{i}.log').read_text()[-2000:]}")
                time.sleep(2)
        yield milvus23
    finally:
        for p in procs:
            p.terminate()  # ip netns exec passes the signal on: it execs the command
        for p in procs:
            p.wait(timeout=60)


def search(ns: str, port: int) -> list[str]:
    status, body = call(ns, port, "POST", "/api/search", {"query": QUESTION, "k": 3})
    assert status == 200, body
    return [h["id"] for h in body["results"]]


def test_ingest_through_one_replica_found_through_the_other(replicas: str, tmp_path: Path) -> None:
    ns, (a, b) = replicas, PORTS
    doc = tmp_path / "graphs.md"
    doc.write_text(
        "# Graph indexes\n\n## HNSW\n\nHNSW builds a hierarchical navigable small world graph. The parameter M "
        "is the maximum degree of a node and efConstruction controls the build-time search range.\n",
        encoding="utf-8",
    )
    status, job = call(ns, a, "POST", "/api/ingest", upload=doc)
    assert status == 202, job
    deadline = time.monotonic() + 300
    while (state := call(ns, a, "GET", f"/api/jobs/{job['job']}")[1])["state"] not in ("done", "failed"):
        assert time.monotonic() < deadline, state
        time.sleep(1)
    assert state["state"] == "done" and state["report"]["added"] == 1, state
    # jobs are per replica: the other one does not know this job
    assert call(ns, b, "GET", f"/api/jobs/{job['job']}")[0] == 404

    # the documents are in Milvus: the other replica finds them (Milvus's bounded staleness: seconds at most)
    deadline = time.monotonic() + 30
    while not (found := search(ns, b)):
        assert time.monotonic() < deadline, "replica B never saw replica A's ingest"
        time.sleep(1)
    sources = {d["source"] for d in call(ns, b, "GET", "/api/documents")[1]["documents"]}
    assert sources == {"graphs.md"}

    # alternating requests get the same answers from both
    for port in (a, b, a, b):
        assert search(ns, port) == found
    info = [call(ns, port, "GET", "/api/info")[1] for port in (a, b)]
    assert info[0]["chunks"] == info[1]["chunks"] > 0 and info[0]["embed_model"] == info[1]["embed_model"]

    # a delete through B is seen by A
    assert call(ns, b, "DELETE", "/api/documents/graphs.md")[0] == 200
    deadline = time.monotonic() + 30
    while search(ns, a):
        assert time.monotonic() < deadline, "replica A still finds the deleted document"
        time.sleep(1)
