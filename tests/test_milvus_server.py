"""A real Milvus 2.3 standalone server (``pip install milvus==2.3.5``): dense-only fallback.

Milvus 2.3 has no sparse vectors and no BM25 function.  askdocs must detect that, create a
dense-only collection with one warning, fall back from hybrid to dense, and refuse bm25 clearly.
The server binds every interface, so it runs in a network namespace with only loopback up, and
the askdocs commands run inside the same namespace.  Skipped where that is impossible.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

SERVER = Path(sys.executable).with_name("milvus-server")


def _netns_available() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


@pytest.fixture(scope="module")
def milvus23(tmp_path_factory: pytest.TempPathFactory):
    if not SERVER.exists():
        pytest.skip("milvus-server (pip install milvus==2.3.5) is not installed")
    if not _netns_available():
        pytest.skip("needs root and iproute2 to isolate the server in a network namespace")
    ns = f"askdocs-test-{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", ns], capture_output=True).returncode != 0:
        pytest.skip("cannot create a network namespace here")
    data = tmp_path_factory.mktemp("milvus23")
    server = None
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        log = (data / "server.log").open("w")
        server = subprocess.Popen(
            ["ip", "netns", "exec", ns, str(SERVER), "--data", str(data)], stdout=log, stderr=subprocess.STDOUT
        )
        probe = "import socket; socket.create_connection(('127.0.0.1', 19530), timeout=1)"
        for _ in range(180):
            ok = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", probe], capture_output=True)
            if ok.returncode == 0:
                break
            if server.poll() is not None:
                pytest.skip(f"milvus-server exited: {(data / 'server.log').read_text()[-500:]}")
            time.sleep(1)
        else:
            pytest.skip("milvus-server did not start within 3 minutes")
        time.sleep(3)  # the port opens a moment before the proxy serves requests
        yield ns
    finally:
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
        for pid in pids:
            subprocess.run(["kill", "-9", pid], capture_output=True)
        if server is not None:
            server.wait(timeout=30)
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


def _askdocs(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "askdocs.cli", *args, "--uri", "http://127.0.0.1:19530"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_dense_only_fallback_on_milvus_2_3(milvus23: str, docs: Path) -> None:
    ing = _askdocs(milvus23, "ingest", str(docs), "--collection", "fallback")
    assert ing.returncode == 0, ing.stderr
    assert ing.stderr.count("has no BM25 function") == 1
    assert "4 added" in ing.stderr

    hybrid = _askdocs(milvus23, "search", "Which lock does VACUUM FULL take?", "--json", "-k", "2", "-c", "fallback")
    assert hybrid.returncode == 0, hybrid.stderr
    assert "falls back to dense" in hybrid.stderr
    assert json.loads(hybrid.stdout)["results"][0]["source"] == "page.html"

    bm25 = _askdocs(milvus23, "search", "VACUUM", "--mode", "bm25", "-c", "fallback")
    assert bm25.returncode == 1 and "no BM25 index" in bm25.stderr and "Traceback" not in bm25.stderr

    again = _askdocs(milvus23, "ingest", str(docs), "--collection", "fallback")
    assert "4 unchanged" in again.stderr and "0 chunks written" in again.stderr


# --------------------------------------------------------------------------- a server that goes away


class Server:
    """A milvus-server in its own network namespace that a test can stop and start again."""

    def __init__(self, ns: str, data: Path) -> None:
        self.ns, self.data, self.proc = ns, data, None

    def start(self) -> None:
        log = (self.data / "server.log").open("a")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, str(SERVER), "--data", str(self.data)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        probe = "import socket; socket.create_connection(('127.0.0.1', 19530), timeout=1)"
        for _ in range(180):
            ok = subprocess.run(["ip", "netns", "exec", self.ns, sys.executable, "-c", probe], capture_output=True)
            if ok.returncode == 0:
                time.sleep(3)
                return
            if self.proc.poll() is not None:
                pytest.skip(f"milvus-server exited: {(self.data / 'server.log').read_text()[-500:]}")
            time.sleep(1)
        pytest.skip("milvus-server did not start within 3 minutes")

    def stop(self) -> None:
        """Stop the server as an operator would (SIGTERM, then SIGKILL); the test's clients stay."""

        def server_pids() -> list[str]:
            out = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True, text=True).stdout.split()
            keep = []
            for pid in out:
                cmdline = Path(f"/proc/{pid}/cmdline")
                if cmdline.exists() and b"askdocs" not in cmdline.read_bytes():
                    keep.append(pid)
            return keep

        for sig in ("-TERM", "-KILL"):
            for pid in server_pids():
                subprocess.run(["kill", sig, pid], capture_output=True)
            for _ in range(30):
                if not server_pids():
                    break
                time.sleep(1)
        if self.proc is not None:
            self.proc.wait(timeout=60)


@pytest.fixture
def flaky_server(tmp_path: Path):
    if not SERVER.exists():
        pytest.skip("milvus-server (pip install milvus==2.3.5) is not installed")
    if not _netns_available():
        pytest.skip("needs root and iproute2 to isolate the server in a network namespace")
    ns = f"askdocs-flaky-{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", ns], capture_output=True).returncode != 0:
        pytest.skip("cannot create a network namespace here")
    subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
    server = Server(ns, tmp_path / "milvus")
    server.data.mkdir()
    try:
        yield server
    finally:
        for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split():
            subprocess.run(["kill", "-9", pid], capture_output=True)
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


URI = "http://127.0.0.1:19530"


def test_server_down_mid_ingest_and_mid_query_then_resume(flaky_server: Server, sample_copy: Path) -> None:
    ns = flaky_server.ns
    # down at start: one line naming the URI, quickly
    t0 = time.monotonic()
    down = _askdocs(ns, "search", "HNSW")
    assert down.returncode == 1 and URI in down.stderr and "Traceback" not in down.stderr
    assert time.monotonic() - t0 < 120

    flaky_server.start()
    # stopped in the middle of an ingest: the sample twice (52 documents), embedded by torch in small batches,
    # takes about a minute here, so 25 s lands mid-way (the int8 default ingests the sample alone in ~15 s)
    corpus = sample_copy.parent / "twice"
    for half in ("a", "b"):
        shutil.copytree(sample_copy, corpus / half)
    cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "askdocs.cli", "ingest", str(corpus), "--uri", URI,
           "--batch-size", "8", "--embed-backend", "torch"]  # fmt: skip
    ingest = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(25)  # start-up, model load, collection creation, the first batches
    assert ingest.poll() is None, "the ingest finished before the server could be stopped"
    flaky_server.stop()
    t0 = time.monotonic()
    _, err = ingest.communicate(timeout=600)
    assert ingest.returncode == 1, err[-2000:]
    assert URI in err and "Traceback" not in err, err[-2000:]
    assert time.monotonic() - t0 < 300, "gave up only after a long retry"

    # back again: the next ingest resumes and completes
    flaky_server.start()
    done = _askdocs(ns, "ingest", str(corpus), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["failed"] == 0 and report["added"] + report["unchanged"] + report["updated"] == 52
    status = json.loads(_askdocs(ns, "status", "--json").stdout)
    assert status["documents"] == 52

    # stopped during a query
    flaky_server.stop()
    q = _askdocs(ns, "search", "What do the parameters of HNSW mean?")
    assert q.returncode == 1 and URI in q.stderr and "Traceback" not in q.stderr
