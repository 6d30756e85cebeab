"""Soak `askdocs serve`: several clients alternate upload, search, ask and delete for a while.

    python benchmarks/soak.py --duration 3600 --clients 8            # an hour (issue 12)
    python benchmarks/soak.py --duration 600 --llm-backend local     # with the packaged CPU model

Starts one server as a subprocess (a temporary Milvus Lite file, the ``none`` LLM backend by default
so the CPU goes to ingest and search) and reads its memory from /proc.  Each client writes documents
that carry a word of their own, waits for the ingest job, finds the document by that word, asks about
it, and deletes every third one.  Passes (exit 0) when there were no errors, the server's RSS after
warm-up grew by less than ``--max-growth``, and every acknowledged, undeleted document is found by its
word at the end.  tests/test_soak.py runs it for 60 s in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _word() -> str:
    return "zq" + uuid.uuid4().hex[:10]  # one token no other document holds


def _wait_job(c: httpx.Client, job: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        j = c.get(f"/api/jobs/{job}").json()
        if j["state"] in ("done", "failed") or time.monotonic() > deadline:
            return j
        time.sleep(0.2)


def _found(c: httpx.Client, word: str, name: str) -> bool:
    r = c.post("/api/search", json={"query": word, "k": 3, "mode": "bm25"})
    r.raise_for_status()
    return any(h["source"] == name for h in r.json()["results"])


class Client(threading.Thread):
    """One user: upload, find, ask, sometimes delete, until the deadline."""

    def __init__(self, url: str, n: int, deadline: float, errors: list[str], kept: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url, self.n, self.deadline, self.errors, self.kept = url, n, deadline, errors, kept
        self.ops = 0

    def run(self) -> None:
        rng = random.Random(self.n)
        with httpx.Client(base_url=self.url, timeout=120) as c:
            i = 0
            while time.monotonic() < self.deadline:
                i += 1
                word, name = _word(), f"soak-{self.n}-{i}.md"
                body = f"# Note {i}\n\nThe {word} is filed by client {self.n}. " + "Filler text. " * rng.randint(5, 200)
                try:
                    r = c.post("/api/ingest", files=[("files", (name, body.encode(), "text/markdown"))])
                    if r.status_code != 202:
                        self.errors.append(f"upload {r.status_code}: {r.text[:200]}")
                        continue
                    job = _wait_job(c, r.json()["job"])
                    if job["state"] != "done" or job["failures"]:
                        self.errors.append(f"job {json.dumps(job)[:300]}")
                        continue
                    self.kept[name] = word
                    if not _found(c, word, name):
                        self.errors.append(f"{name} acknowledged but not found by {word}")
                    with c.stream("POST", "/api/ask", json={"question": f"What is the {word}?", "max_tokens": 16}) as a:
                        text = "".join(a.iter_text())
                        if a.status_code != 200 or "event: done" not in text:
                            self.errors.append(f"ask {a.status_code}: {text[-200:]}")
                    if i % 3 == 0:
                        d = c.delete(f"/api/documents/{name}")
                        if d.status_code != 200:
                            self.errors.append(f"delete {d.status_code}: {d.text[:200]}")
                        else:
                            self.kept.pop(name, None)
                    self.ops += 4
                except httpx.HTTPError as e:
                    self.errors.append(f"{type(e).__name__}: {e}")


def soak(duration: float, clients: int, llm_backend: str = "none", max_growth: float = 0.25) -> dict:
    """Run the soak against a fresh server; returns the report (``ok`` says whether it passed)."""
    tmp = Path(tempfile.mkdtemp(prefix="askdocs-soak-"))
    port = _free_port()
    env = {
        **os.environ,
        "ASKDOCS_MILVUS_URI": str(tmp / "soak.db"),
        "ASKDOCS_UPLOAD_DIR": str(tmp / "uploads"),
        "ASKDOCS_LLM_BACKEND": llm_backend,
        "ASKDOCS_EMBED_DEVICE": "cpu",
        "ASKDOCS_MAX_PENDING_ANSWERS": str(max(8, clients * 2)),
    }
    cmd = [sys.executable, "-m", "askdocs.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=(tmp / "serve.log").open("w"))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {(tmp / 'serve.log').read_text()[-2000:]}")
            time.sleep(0.5)
        errors: list[str] = []
        kept: dict[str, str] = {}
        start = time.monotonic()
        workers = [Client(url, n, start + duration, errors, kept) for n in range(clients)]
        for w in workers:
            w.start()
        samples: list[tuple[float, float]] = []
        while any(w.is_alive() for w in workers):
            samples.append((time.monotonic() - start, _rss_mb(server.pid)))
            time.sleep(1)
        for w in workers:
            w.join()
        with httpx.Client(base_url=url, timeout=60) as c:
            missing = [name for name, word in sorted(kept.items()) if not _found(c, word, name)]
        warm = [rss for t, rss in samples if t >= duration / 3] or [samples[-1][1]]
        growth = (max(warm) - warm[0]) / warm[0] if warm[0] else 0.0
        report = {
            "duration_s": round(time.monotonic() - start, 1),
            "clients": clients,
            "operations": sum(w.ops for w in workers),
            "errors": len(errors),
            "first_errors": errors[:5],
            "documents_kept": len(kept),
            "missing_at_end": missing[:10],
            "rss_mb_after_warmup": round(warm[0], 1),
            "rss_mb_max_after_warmup": round(max(warm), 1),
            "rss_growth": round(growth, 3),
        }
        report["ok"] = not errors and not missing and growth < max_growth and report["operations"] > 0
        return report
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=600, help="seconds of load (default 600)")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--llm-backend", default="none", help="none (default) or local for the packaged CPU model")
    ap.add_argument("--max-growth", type=float, default=0.25, help="allowed RSS growth after warm-up (0.25 = 25%%)")
    args = ap.parse_args()
    report = soak(args.duration, args.clients, args.llm_backend, args.max_growth)
    print(json.dumps(report, indent=2))
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
