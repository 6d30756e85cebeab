"""Load on `askdocs serve`: concurrent OpenAI-SDK chat completions and REST searches, on loopback.

    python benchmarks/serve_load.py                          # 50 concurrent chat completions (issue 5)
    python benchmarks/serve_load.py --clients 100 --duration 60 --mix   # 100 clients for 60 s (issue 7)

Starts the server as a subprocess over the bundled sample (ingested into a temporary Milvus Lite file
unless --uri is given) with the CPU default LLM, so its memory can be read from /proc.  Reports
latency percentiles, requests per second, errors, and the server's RSS before, during and after.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "What do the parameters of HNSW mean?",
    "How do I install Milvus Lite?",
    "What is a partition key?",
    "How do I create a collection?",
    "What index types does Milvus support?",
    "How does IVF_FLAT work?",
    "What is the difference between FLAT and IVF_FLAT?",
    "How do I run a hybrid search?",
]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=None, help="total requests (default: one per client)")
    ap.add_argument("--duration", type=float, default=None, help="run for this many seconds instead")
    ap.add_argument("--mix", action="store_true", help="half REST searches, half chat completions")
    ap.add_argument("--stream", action="store_true", help="stream the chat completions")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--uri", help="existing Milvus Lite file / server with the sample ingested")
    ap.add_argument("--llm-backend", default="local")
    ap.add_argument("--llm-url")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()

    import openai

    tmp = tempfile.mkdtemp(prefix="askdocs-load-")
    uri = args.uri or os.path.join(tmp, "load.db")
    env = {**os.environ, "ASKDOCS_MILVUS_URI": uri, "ASKDOCS_MAX_TOKENS": str(args.max_tokens)}
    askdocs = [sys.executable, "-m", "askdocs.cli"]
    if not args.uri:
        subprocess.run([*askdocs, "ingest", str(REPO / "samples" / "milvus-docs"), "--quiet"], env=env, check=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [*askdocs, "serve", "--host", "127.0.0.1", "--port", str(port), "--llm-backend", args.llm_backend]
    if args.llm_url:
        cmd += ["--llm-url", args.llm_url]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise SystemExit("server did not start")
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=600, max_retries=0)
        rest = httpx.Client(base_url=url, timeout=600, limits=httpx.Limits(max_connections=args.clients * 2))
        # warm-up: first request pays lazy initialisation, not measured
        client.chat.completions.create(model="askdocs", messages=[{"role": "user", "content": "hello"}], max_tokens=4)
        rss_start = rss_mb(proc.pid)

        lock = threading.Lock()
        lat: dict[str, list[float]] = {"chat": [], "search": []}
        errors: list[str] = []
        rss_samples: list[tuple[int, float]] = []
        done = [0]

        def one(i: int) -> None:
            kind = "search" if args.mix and i % 2 else "chat"
            q = random.choice(QUESTIONS)
            t0 = time.perf_counter()
            try:
                if kind == "search":
                    r = rest.post("/api/search", json={"query": q, "k": 5})
                    r.raise_for_status()
                    assert r.json()["results"]
                elif args.stream:
                    pieces = list(
                        client.chat.completions.create(
                            model="askdocs", messages=[{"role": "user", "content": q}], stream=True
                        )
                    )
                    assert pieces[-1].model_extra.get("sources")
                else:
                    r = client.chat.completions.create(model="askdocs", messages=[{"role": "user", "content": q}])
                    assert r.choices[0].message.content is not None and r.model_extra["sources"]
            except Exception as e:
                with lock:
                    errors.append(f"{kind}: {type(e).__name__}: {str(e)[:200]}")
                return
            with lock:
                lat[kind].append(time.perf_counter() - t0)
                done[0] += 1
                if done[0] % 100 == 0:
                    rss_samples.append((done[0], rss_mb(proc.pid)))

        t_start = time.perf_counter()
        if args.duration:
            stop = t_start + args.duration

            def client_loop(c: int) -> None:
                i = c
                while time.perf_counter() < stop:
                    one(i)
                    i += args.clients

            with ThreadPoolExecutor(args.clients) as pool:
                list(pool.map(client_loop, range(args.clients)))
        else:
            n = args.requests or args.clients
            with ThreadPoolExecutor(args.clients) as pool:
                list(pool.map(one, range(n)))
        wall = time.perf_counter() - t_start
        rss_end = rss_mb(proc.pid)
        total = sum(len(v) for v in lat.values())
        result = {
            "clients": args.clients,
            "mix": args.mix,
            "stream": args.stream,
            "max_tokens": args.max_tokens,
            "requests_ok": total,
            "errors": len(errors),
            "error_samples": errors[:5],
            "wall_s": round(wall, 2),
            "rps": round(total / wall, 2),
            "rss_mb": {"start": round(rss_start, 1), "end": round(rss_end, 1), "samples": rss_samples},
        }
        for kind, values in lat.items():
            if values:
                result[kind] = {
                    "n": len(values),
                    "p50_s": round(statistics.median(values), 3),
                    "p95_s": round(pct(values, 95), 3),
                    "p99_s": round(pct(values, 99), 3),
                    "max_s": round(max(values), 3),
                }
        batches = httpx.get(f"{url}/metrics").text
        result["metrics_excerpt"] = [x for x in batches.splitlines() if x.startswith("askdocs_tokens_total")]
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        if errors:
            raise SystemExit(1)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
