"""askdocs speed, side by side with the reference pipeline: ingest, re-ingest, query latency, growth.

    python benchmarks/speed.py                       # every part, on every corpus present
    python benchmarks/speed.py --parts ingest,query --corpora milvus-docs --repeat 3

Writes ``benchmarks/results/speed.json`` (every measurement), ``speed.md`` (the tables) and
``speed.png`` (the charts).  Corpora: the bundled sample, ../shared/corpus/milvus-docs and
../shared/corpus/postgresql-15-html; absent ones are skipped.

Every ingest and every query run is a fresh child process, so its CPU seconds and peak memory are its
own (peak RSS is VmHWM, which, unlike getrusage's ru_maxrss, is not inherited across exec).  The
reference (benchmarks/reference_pipeline.py) and askdocs alternate, A B A B, so a machine that slows
down mid-run slows both; the tables quote medians and the ratio of each pair.

Parts:
  ingest   reference vs askdocs (each --backends value) on each corpus: docs/s, chunks/s, wall, CPU,
           peak RSS, askdocs's stage times; and askdocs against embedding its own chunks alone (the
           floor: load the model, encode the chunks in the same batches, nothing else).
  embedders embedding alone on the largest corpus's chunks with torch, onnx and onnx-int8.
  reingest the same corpus again unchanged, then with 1% of its files changed.
  query    p50/p95/p99 at k=10 for dense, bm25 and hybrid at ~10k and ~50k chunks, with Milvus's own
           search time for the same query alongside, and batched search throughput (64 per call).
           The collections are the largest ingested corpus's rows, inflated by copies whose vectors are
           perturbed (so the 50k point needs no hour of embedding on a CPU).
  growth   ingest time, peak RSS and query latency at 1x, 2x and 4x of a corpus (copies of it).
  answers  one-by-one against batched generation through vLLM: runs benchmarks/vllm_cpu.py's
           throughput part in .venv-vllm when it exists (``make test-vllm`` builds it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CORPORA = {
    "sample": REPO / "samples" / "milvus-docs",
    "milvus-docs": SHARED / "corpus" / "milvus-docs",
    "postgresql": SHARED / "corpus" / "postgresql-15-html",
}
QA = [SHARED / "qa" / "milvus-dev.jsonl", SHARED / "qa" / "postgresql-dev.jsonl"]
QA_OF = {"milvus-docs": QA[0], "postgresql": QA[1]}
OUT = REPO / "benchmarks" / "results"


# --------------------------------------------------------------------------- children


def _usage() -> dict:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    status = Path("/proc/self/status").read_text().splitlines()
    hwm = next((line.split()[1] for line in status if line.startswith("VmHWM:")), "0")
    return {"cpu_s": round(ru.ru_utime + ru.ru_stime, 2), "peak_rss_mib": round(int(hwm) / 1024, 1)}


def child_ingest(corpus: str, db: str, backend: str, questions: str | None = None) -> dict:
    """An ingest; with ``questions``, then the default search's quality on them (after the usage is read)."""
    from askdocs import Index
    from askdocs.evaluate import evaluate_retrieval, load_questions

    with Index(milvus_uri=db, embed_backend=backend) as ix:
        report = ix.ingest(corpus)
        out = {"report": report.to_dict(), **_usage()}
        if questions:
            res = evaluate_retrieval(ix, load_questions(questions), [ix.settings.search_mode])
            out["quality"] = res[ix.settings.search_mode]["by_lang"].get("en")
    return out


def child_embed_only(corpus: str, backend: str) -> dict:
    """The floor for an ingest: the model loaded and askdocs's chunks encoded, in the same batches."""
    from askdocs.chunk import Chunker
    from askdocs.clean import clean
    from askdocs.config import Settings
    from askdocs.embed import CPU_DEFAULT_MODEL, make_embedder
    from askdocs.errors import LoadError
    from askdocs.load import discover, read

    s = Settings()
    chunker = Chunker(s.chunk_size, s.chunk_overlap)
    texts = []
    for f in discover([corpus]).files:
        with contextlib.suppress(LoadError):
            texts += [c.search_text for c in chunker.split(clean(read(f)))]
    t = time.perf_counter()
    emb = make_embedder(CPU_DEFAULT_MODEL, backend, "cpu", s.embed_batch_size)
    emb.warm_up()
    if backend != "torch":
        emb.embed_documents(["warm"])  # export/session load, as ingest's first batch pays it too
    model_s = time.perf_counter() - t
    batch = max(s.embed_batch_size * 4, 64)  # the ingest's batch across documents
    t = time.perf_counter()
    for i in range(0, len(texts), batch):
        emb.embed_documents(texts[i : i + batch])
    return {"chunks": len(texts), "model_s": model_s, "embed_s": time.perf_counter() - t, **_usage()}


def _queries(n: int) -> list[str]:
    qs = [json.loads(line)["question"] for p in QA if p.is_file() for line in p.read_text().splitlines() if line]
    words = ["index", "vector", "search", "replication", "vacuum", "partition", "function", "trigger", "memory"]
    rng = random.Random(0)
    while len(qs) < n:  # short keyword queries fill the set so p99 has enough samples
        qs.append(" ".join(rng.sample(words, 3)))
    return qs[:n]


def child_query(db: str, n_queries: int) -> dict:
    """Latency per mode through askdocs, and Milvus's own search time for the same query."""
    from pymilvus import AnnSearchRequest, RRFRanker

    from askdocs import Index
    from askdocs.store import OUTPUT_FIELDS

    qs = _queries(n_queries)
    out: dict = {}
    with Index(milvus_uri=db) as ix:
        st = ix.store
        chunks = st.count() if hasattr(st, "count") else None
        for mode in ("dense", "bm25", "hybrid"):  # warm: model, collection load, first-call paths
            ix.search_many(qs[:4], k=10, mode=mode)
        vectors = ix.embedder().embed_queries(qs)
        # A fresh collection keeps indexing its sealed segments in the background for a while (searched by
        # brute force meanwhile: 3x slower dense at 22.5k chunks); wait until the dense latency settles.
        settle_t0, prev = time.perf_counter(), float("inf")
        while time.perf_counter() - settle_t0 < 120:
            ts = []
            for v in vectors[:20]:
                t = time.perf_counter()
                st.client.search(st.collection, [v.tolist()], limit=10, anns_field="vector")
                ts.append(time.perf_counter() - t)
            now = statistics.median(ts)
            if now > 0.9 * prev:
                break
            prev = now
            time.sleep(5)
        out["settle_s"] = time.perf_counter() - settle_t0
        lat: dict[str, list[float]] = {m: [] for m in ("dense", "bm25", "hybrid")}
        raw: dict[str, list[float]] = {m: [] for m in ("dense", "bm25", "hybrid")}
        c, coll = st.client, st.collection
        metric = st.schema.metric_type
        n = ix.retriever.candidates  # what each route of a hybrid search fetches (50)
        for q, v in zip(qs, vectors, strict=True):
            for mode in lat:
                t = time.perf_counter()
                ix.search(q, k=10, mode=mode)
                lat[mode].append(time.perf_counter() - t)
            t = time.perf_counter()
            c.search(coll, [v.tolist()], limit=10, anns_field="vector", output_fields=OUTPUT_FIELDS)
            raw["dense"].append(time.perf_counter() - t)
            t = time.perf_counter()
            c.search(
                coll,
                [q],
                limit=10,
                anns_field="sparse",
                search_params={"metric_type": "BM25"},
                output_fields=OUTPUT_FIELDS,
            )
            raw["bm25"].append(time.perf_counter() - t)
            if ix.settings.fusion == "weighted":  # the default: the same two searches askdocs makes, in turn
                t = time.perf_counter()
                c.search(
                    coll,
                    [v.tolist()],
                    limit=n,
                    anns_field="vector",
                    output_fields=OUTPUT_FIELDS,
                    search_params={"metric_type": metric},
                )
                c.search(
                    coll,
                    [q],
                    limit=n,
                    anns_field="sparse",
                    search_params={"metric_type": "BM25"},
                    output_fields=OUTPUT_FIELDS,
                )
                raw["hybrid"].append(time.perf_counter() - t)
            else:  # RRF in Milvus, one call
                reqs = [
                    AnnSearchRequest([v.tolist()], "vector", {"metric_type": metric}, n),
                    AnnSearchRequest([q], "sparse", {"metric_type": "BM25"}, n),
                ]
                t = time.perf_counter()
                c.hybrid_search(coll, reqs, RRFRanker(ix.settings.rrf_k), limit=10, output_fields=OUTPUT_FIELDS)
                raw["hybrid"].append(time.perf_counter() - t)
        t = time.perf_counter()
        ix.embedder().embed_queries(qs)
        out["embed_per_query_ms"] = 1000 * (time.perf_counter() - t) / len(qs)
        for mode in lat:
            out[mode] = _pcts(lat[mode])
            out[f"raw_{mode}"] = _pcts(raw[mode])
            batch = qs[:64]
            t = time.perf_counter()
            ix.search_many(batch, k=10, mode=mode)
            out[f"batched_{mode}_qps"] = len(batch) / (time.perf_counter() - t)
        out["chunks"] = chunks
    return {**out, **_usage()}


def child_inflate(src_db: str, dst_db: str, target: int) -> dict:
    """A collection of ``target`` chunks: the source's rows, then copies with perturbed vectors."""
    import numpy as np

    from askdocs import Index

    rng = np.random.default_rng(0)
    with Index(milvus_uri=src_db) as src:
        st = src.store
        st.schema.ensure_loaded()
        it = st.client.query_iterator(st.collection, filter="", output_fields=["*"], batch_size=2000)
        rows = []
        while batch := it.next():
            rows += [{k: v for k, v in r.items() if k != "sparse"} for r in batch]
        it.close()
        meta = st.meta()
    rows = rows[:target]
    with Index(milvus_uri=dst_db) as dst:
        dst.store.create(meta["model"], meta["dim"], {k: v for k, v in meta.items() if k not in ("model", "dim")})
        made, copy = 0, 0
        t = time.perf_counter()
        while made < target:
            part = []
            for r in rows[: target - made]:
                r2 = dict(r)
                if copy:
                    v = np.asarray(r["vector"], dtype=np.float32) + rng.normal(0, 0.02, len(r["vector"]))
                    r2["vector"] = (v / np.linalg.norm(v)).astype(np.float32).tolist()
                    r2["id"] = f"c{copy}-{r['id']}"[:64]
                    r2["source"] = f"copy{copy}/{r['source']}"
                part.append(r2)
            for i in range(0, len(part), 2000):
                dst.store.client.insert(dst.store.collection, part[i : i + 2000])
            made += len(part)
            copy += 1
        dst.store.flush()
        return {"chunks": made, "insert_s": time.perf_counter() - t}


CHILDREN = {"ingest": child_ingest, "embed_only": child_embed_only, "query": child_query, "inflate": child_inflate}


def run_child(name: str, *args: object, timeout: float = 7200) -> dict:
    env = {**os.environ, "ASKDOCS_EMBED_DEVICE": "cpu", "TOKENIZERS_PARALLELISM": "false"}
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "_child", name, json.dumps(list(args))],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{name} child failed:\n{proc.stderr[-3000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "process_wall_s": round(wall, 2)}


def run_reference(corpus: Path, questions: Path | None = None) -> dict:
    """The blog's pipeline in its own process; with ``questions`` it also scores retrieval (as it prints)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, str(REPO / "benchmarks" / "reference_pipeline.py"), str(corpus), "--json", out.name]
        if questions is not None and questions.is_file():
            cmd += ["--questions", str(questions)]
        t = time.perf_counter()
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=7200, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"}
        )
        if proc.returncode != 0:
            raise RuntimeError(f"reference failed:\n{proc.stderr[-3000:]}")
        report = json.loads(Path(out.name).read_text())
    report.pop("per_question", None)
    return {**report, "process_wall_s": round(time.perf_counter() - t, 2)}


# --------------------------------------------------------------------------- helpers


def _pcts(xs: list[float]) -> dict:
    xs = sorted(xs)

    def p(q: float) -> float:
        return round(1000 * xs[min(len(xs) - 1, round(q * (len(xs) - 1)))], 2)

    return {"p50_ms": p(0.5), "p95_ms": p(0.95), "p99_ms": p(0.99), "n": len(xs)}


def _med(xs: list[float]) -> float:
    return round(statistics.median(xs), 3)


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- parts


def part_ingest(corpora: dict[str, Path], backends: list[str], repeat: int, work: Path) -> dict:
    res: dict = {}
    for name, path in corpora.items():
        runs: dict[str, list[dict]] = {"reference": [], **{f"askdocs-{b}": [] for b in backends}}
        floors: dict[str, list[dict]] = {b: [] for b in backends}
        for r in range(repeat):
            _log(f"ingest {name} round {r + 1}/{repeat}: reference")
            runs["reference"].append(run_reference(path, QA_OF.get(name)))
            for b in backends:
                _log(f"ingest {name} round {r + 1}/{repeat}: askdocs {b}")
                db = work / f"ingest-{name}-{b}-{r}.db"
                qa = QA_OF.get(name)
                runs[f"askdocs-{b}"].append(run_child("ingest", str(path), str(db), b, str(qa) if qa else None))
                shutil.rmtree(db, ignore_errors=True)
                _log(f"ingest {name} round {r + 1}/{repeat}: embed-only {b}")
                floors[b].append(run_child("embed_only", str(path), b))
        ref_wall = [x["timings_s"]["ingest_total"] for x in runs["reference"]]
        summary = {
            "reference": {
                "docs": runs["reference"][0]["docs"],
                "chunks": runs["reference"][0]["chunks"],
                "wall_s": _med(ref_wall),
                "cpu_s": _med([x["cpu_s"] for x in runs["reference"]]),
                "process_wall_s": _med([x["process_wall_s"] for x in runs["reference"]]),
                "peak_rss_mib": _med([x["peak_rss_mib"] for x in runs["reference"]]),
                "quality_en": (runs["reference"][0].get("metrics") or {}).get("en"),
                "stages_s": {
                    k: _med([x["timings_s"][k] for x in runs["reference"]])
                    for k in ("load", "chunk", "model", "embed", "insert+flush")
                },
            }
        }
        for b in backends:
            rs = runs[f"askdocs-{b}"]
            wall = [x["report"]["seconds"] for x in rs]
            floor = [f["model_s"] + f["embed_s"] for f in floors[b]]
            rep = rs[0]["report"]
            summary[f"askdocs-{b}"] = {
                "docs": rep["added"],
                "chunks": rep["chunks"],
                "wall_s": _med(wall),
                "cpu_s": _med([x["cpu_s"] for x in rs]),
                "process_wall_s": _med([x["process_wall_s"] for x in rs]),
                "peak_rss_mib": _med([x["peak_rss_mib"] for x in rs]),
                "stages_s": {k: _med([x["report"]["stages"].get(k, 0.0) for x in rs]) for k in rep["stages"]},
                "embed_only_s": _med(floor),
                "vs_embed_only": _med([w / f for w, f in zip(wall, floor, strict=True)]),
                "speedup_vs_reference": _med([rw / w for rw, w in zip(ref_wall, wall, strict=True)]),
                "speedup_process_vs_reference": _med(
                    [x["process_wall_s"] / y["process_wall_s"] for x, y in zip(runs["reference"], rs, strict=True)]
                ),
                "quality_en": rs[0].get("quality"),
            }
        for v in summary.values():
            v["docs_per_s"] = round(v["docs"] / v["wall_s"], 2)
            v["chunks_per_s"] = round(v["chunks"] / v["wall_s"], 1)
        res[name] = {"summary": summary, "runs": runs, "embed_only_runs": floors}
    return res


def part_embedders(corpus: Path, backends: list[str]) -> dict:
    """Embedding alone, per backend, on one corpus's chunks: what each backend costs."""
    res: dict = {}
    for b in backends:
        _log(f"embedders: {b} on {corpus.name}")
        r = run_child("embed_only", str(corpus), b)
        res[b] = {**r, "chunks_per_s": round(r["chunks"] / r["embed_s"], 1)}
    base = res.get("torch", {}).get("chunks_per_s")
    for r in res.values():
        r["vs_torch"] = round(r["chunks_per_s"] / base, 2) if base else None
    return res


def part_reingest(corpora: dict[str, Path], backend: str, work: Path) -> dict:
    res: dict = {}
    for name, path in corpora.items():
        copy = work / f"reingest-{name}"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(path, copy)
        db = work / f"reingest-{name}.db"
        shutil.rmtree(db, ignore_errors=True)
        _log(f"reingest {name}: first ingest")
        first = run_child("ingest", str(copy), str(db), backend)
        _log(f"reingest {name}: unchanged")
        same = run_child("ingest", str(copy), str(db), backend)
        files = sorted(p for p in copy.rglob("*") if p.is_file() and p.suffix in (".md", ".html", ".txt"))
        changed = random.Random(1).sample(files, max(1, len(files) // 100))
        for p in changed:
            with p.open("a", encoding="utf-8") as f:
                f.write("\n\nAn added closing paragraph, so that this file's version changes.\n")
        _log(f"reingest {name}: {len(changed)} files changed")
        one = run_child("ingest", str(copy), str(db), backend)
        fs = first["report"]["seconds"]
        res[name] = {
            "first_s": fs,
            "unchanged_s": same["report"]["seconds"],
            "unchanged_pct_of_first": round(100 * same["report"]["seconds"] / fs, 2),
            "changed_files": len(changed),
            "one_pct_changed_s": one["report"]["seconds"],
            "one_pct_changed_pct_of_first": round(100 * one["report"]["seconds"] / fs, 2),
            "reports": [first["report"], same["report"], one["report"]],
        }
        shutil.rmtree(db, ignore_errors=True)
        shutil.rmtree(copy, ignore_errors=True)
    return res


def part_query(source_db: Path, sizes: list[int], n_queries: int, work: Path) -> dict:
    res: dict = {}
    for size in sizes:
        db = work / f"query-{size}.db"
        shutil.rmtree(db, ignore_errors=True)
        _log(f"query: building a {size}-chunk collection from {source_db.name}")
        built = run_child("inflate", str(source_db), str(db), size)
        _log(f"query: {n_queries} queries x 3 modes at {size} chunks")
        res[str(size)] = {"build": built, **run_child("query", str(db), n_queries)}
        shutil.rmtree(db, ignore_errors=True)
    return res


def part_growth(base: Path, backend: str, factors: list[int], n_queries: int, work: Path) -> dict:
    res: dict = {}
    for f in factors:
        corpus = work / f"growth-{f}x"
        shutil.rmtree(corpus, ignore_errors=True)
        for i in range(f):  # f copies side by side: f times the files, chunks and vectors
            shutil.copytree(base, corpus / f"copy{i}")
        db = work / f"growth-{f}x.db"
        shutil.rmtree(db, ignore_errors=True)
        _log(f"growth {f}x: ingest")
        ing = run_child("ingest", str(corpus), str(db), backend)
        _log(f"growth {f}x: queries")
        q = run_child("query", str(db), n_queries)
        res[f"{f}x"] = {
            "chunks": ing["report"]["chunks"],
            "ingest_s": ing["report"]["seconds"],
            "ingest_peak_rss_mib": ing["peak_rss_mib"],
            "query": {m: q[m] for m in ("dense", "bm25", "hybrid")},
        }
        shutil.rmtree(db, ignore_errors=True)
        shutil.rmtree(corpus, ignore_errors=True)
    return res


def part_answers() -> dict:
    py = REPO / ".venv-vllm" / "bin" / "python"
    if not py.exists():
        return {"skipped": ".venv-vllm is absent (make test-vllm builds it)"}
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        proc = subprocess.run(
            [str(py), str(REPO / "benchmarks" / "vllm_cpu.py"), "--skip", "coldstart,local", "--json", f.name],
            capture_output=True,
            text=True,
            timeout=3600,
            env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"},
        )
        if proc.returncode != 0:
            return {"failed": proc.stderr[-2000:]}
        return json.loads(Path(f.name).read_text())


# --------------------------------------------------------------------------- report


def _table(head: list[str], rows: list[list[object]], align: str = "") -> list[str]:
    """A Markdown table; ``align`` has one l/r per column (default: the first left, the rest right)."""
    align = align or "l" + "r" * (len(head) - 1)
    return [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|",
        *("| " + " | ".join(str(c) for c in row) + " |" for row in rows),
        "",
    ]


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [
        "# askdocs speed",
        "",
        f"`python benchmarks/speed.py {' '.join(res['argv'])}` on {m['cpus']} CPUs ({m['cpu']}), "
        f"{res['date']}; embedding model: the packaged all-MiniLM-L6-v2 for both pipelines. Medians of "
        f"{res['repeat']} alternating runs; ratios are medians of the per-pair ratios.",
        "",
    ]
    for name, r in res.get("ingest", {}).items():
        lines += [f"## Ingest: {name}", ""]
        head = [
            "pipeline",
            "docs",
            "chunks",
            "wall s",
            "docs/s",
            "chunks/s",
            "CPU s",
            "peak RSS MiB",
            "vs embed-only",
            "speed-up vs reference",
            "process s",
            "speed-up, whole processes",
        ]
        rows = [
            [
                k,
                v["docs"],
                v["chunks"],
                f"{v['wall_s']:.1f}",
                f"{v['docs_per_s']:.2f}",
                f"{v['chunks_per_s']:.1f}",
                f"{v['cpu_s']:.1f}",
                f"{v['peak_rss_mib']:.0f}",
                v.get("vs_embed_only", "–"),
                v.get("speedup_vs_reference", "–"),
                f"{v['process_wall_s']:.1f}",
                v.get("speedup_process_vs_reference", "–"),
            ]
            for k, v in r["summary"].items()
        ]
        lines += _table(head, rows)
        quality = [(k, v["quality_en"]) for k, v in r["summary"].items() if v.get("quality_en")]
        if quality:
            lines += [
                "Retrieval on the same collections (English answerable dev questions, k=10; the reference "
                "counts chunk ranks, askdocs source ranks):",
                "",
            ]
            rows = [[k] + [f"{q[x]:.2f}" for x in ("hit@1", "hit@5", "hit@10", "mrr@10")] for k, q in quality]
            lines += _table(["pipeline", "hit@1", "hit@5", "hit@10", "MRR@10"], rows)
        lines += ["Stage seconds (askdocs's stages overlap: reader, embedder and writer threads):", ""]
        for k, v in r["summary"].items():
            lines.append(f"- {k}: " + ", ".join(f"{s} {t:.1f}" for s, t in v["stages_s"].items()))
        lines.append("")
    if res.get("embedders"):
        e = res["embedders"]
        lines += [f"## Embedding alone: {e['corpus']} chunks, by backend", ""]
        rows = [
            [
                b,
                r["chunks"],
                f"{r['model_s']:.1f}",
                f"{r['embed_s']:.1f}",
                r["chunks_per_s"],
                r["vs_torch"],
                f"{r['peak_rss_mib']:.0f}",
            ]
            for b, r in e.items()
            if b != "corpus"
        ]
        lines += _table(["backend", "chunks", "model load s", "embed s", "chunks/s", "vs torch", "peak RSS MiB"], rows)
    if res.get("reingest"):
        lines += ["## Re-ingest", ""]
        rows = [
            [
                name,
                f"{r['first_s']:.1f}",
                f"{r['unchanged_s']:.2f}",
                f"{r['unchanged_pct_of_first']:.2f}",
                r["changed_files"],
                f"{r['one_pct_changed_s']:.2f}",
                f"{r['one_pct_changed_pct_of_first']:.2f}",
            ]
            for name, r in res["reingest"].items()
        ]
        head = ["corpus", "first s", "unchanged s", "% of first", "1% changed (files)", "s", "% of first"]
        lines += _table(head, rows)
    if res.get("query"):
        lines += [
            f"## Query latency (k=10, {res['n_queries']} queries, one at a time)",
            *([res["query_note"], ""] if res.get("query_note") else []),
            "",
            "askdocs = the whole `Index.search` (dense and hybrid include embedding the query); Milvus = "
            "the `MilvusClient` calls alone with a precomputed vector (for hybrid, the calls askdocs's fusion "
            "makes: with the default weighted fusion a dense and a BM25 search of 50 candidates each, in turn; "
            "with RRF one `hybrid_search`).",
            "",
        ]
        rows = []
        for size, r in res["query"].items():
            for mode in ("dense", "bm25", "hybrid"):
                a, w = r[mode], r[f"raw_{mode}"]
                rows.append(
                    [
                        size,
                        mode,
                        a["p50_ms"],
                        a["p95_ms"],
                        a["p99_ms"],
                        w["p50_ms"],
                        w["p95_ms"],
                        w["p99_ms"],
                        f"{r[f'batched_{mode}_qps']:.1f}",
                    ]
                )
            rows.append([size, "hybrid/dense p50", f"{r['hybrid']['p50_ms'] / r['dense']['p50_ms']:.2f}"] + [""] * 6)
        head = ["chunks", "mode", "askdocs p50", "p95", "p99", "Milvus p50", "p95", "p99", "batched q/s"]
        lines += _table(head, rows, "rl" + "r" * 7)
    if res.get("growth"):
        lines += ["## Growth", ""]
        rows = [
            [f, r["chunks"], f"{r['ingest_s']:.1f}", f"{r['ingest_peak_rss_mib']:.0f}"]
            + [r["query"][mode]["p50_ms"] for mode in ("dense", "bm25", "hybrid")]
            for f, r in res["growth"].items()
        ]
        head = ["size", "chunks", "ingest s", "ingest peak RSS MiB", "dense p50", "bm25 p50", "hybrid p50"]
        lines += _table(head, rows)
    if res.get("answers"):
        a = res["answers"]
        lines += ["## Answers through vLLM-CPU: one batched call against one call per question", ""]
        if "throughput" in a:
            lines += [f"{a.get('max_tokens')} tokens per answer, greedy; medians over rounds.", ""]
            rows = [
                [
                    model,
                    f"{_med([r['batch_tok_s'] for r in t['rounds']]):.0f}",
                    f"{_med([r['single_tok_s'] for r in t['rounds']]):.0f}",
                    f"{_med([r['ratio'] for r in t['rounds']]):.1f}",
                ]
                for model, t in a["throughput"].items()
                if t.get("rounds")
            ]
            lines += _table(["model", "batched tok/s", "one-by-one tok/s", "ratio"], rows)
        else:
            lines += [f"Not measured: {a.get('skipped') or a.get('failed', '')[:500]}", ""]
    lines += ["![charts](speed.png)", ""]
    return "\n".join(lines)


def chart(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in ("ingest", "query", "growth") if res.get(p)]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, p in zip(axes[0], panels, strict=True):
        if p == "ingest":
            names, labels, vals = list(res["ingest"]), [], []
            for corpus in names:
                for k, v in res["ingest"][corpus]["summary"].items():
                    labels.append(f"{corpus}\n{k}")
                    vals.append(v["chunks_per_s"])
            ax.barh(labels, vals, color=["#888" if "reference" in lb else "#2a7" for lb in labels])
            ax.set_xlabel("chunks per second (higher is better)")
            ax.set_title("Ingest")
            ax.tick_params(axis="y", labelsize=7)
        elif p == "query":
            sizes = list(res["query"])
            for mode in ("dense", "bm25", "hybrid"):
                ax.plot(sizes, [res["query"][s][mode]["p50_ms"] for s in sizes], marker="o", label=f"{mode} p50")
                ax.plot(
                    sizes, [res["query"][s][mode]["p95_ms"] for s in sizes], ls="--", alpha=0.6, label=f"{mode} p95"
                )
            ax.set_xlabel("chunks in the collection")
            ax.set_ylabel("ms")
            ax.set_title("Query latency (k=10)")
            ax.legend(fontsize=7)
        else:
            g = res["growth"]
            xs = [r["chunks"] for r in g.values()]
            ax.plot(xs, [r["ingest_s"] for r in g.values()], marker="o", label="ingest s")
            for mode in ("dense", "hybrid"):
                ax.plot(xs, [r["query"][mode]["p50_ms"] for r in g.values()], marker="s", label=f"{mode} p50 ms")
            ax2 = ax.twinx()
            ax2.plot(xs, [r["ingest_peak_rss_mib"] for r in g.values()], color="#c33", marker="^", label="peak MiB")
            ax2.set_ylabel("ingest peak RSS (MiB)", color="#c33")
            ax2.set_ylim(bottom=0)
            ax.set_xlabel("chunks (1x, 2x, 4x)")
            ax.set_title("Growth")
            ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="ingest,embedders,reingest,query,growth,answers")
    ap.add_argument("--corpora", default=",".join(CORPORA), help="subset of: " + ", ".join(CORPORA))
    ap.add_argument("--backends", default="onnx-int8", help="askdocs embed backends to ingest with")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--sizes", default="10000,50000", help="collection sizes for the query part")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--growth-corpus", default="sample", help="corpus copied 1x, 2x, 4x for the growth part")
    ap.add_argument("--query-db", default=None, help="collection to inflate for the query part (default: built)")
    ap.add_argument("--out", default=str(OUT / "speed"), help="output path without suffix")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--render", default=None, help="only rewrite the .md and .png from this saved .json")
    args = ap.parse_args()
    if args.render:
        res = json.loads(Path(args.render).read_text())
        for r in res.get("ingest", {}).values():  # files saved before the reference's quality was summarised
            ref = r["summary"]["reference"]
            if not ref.get("quality_en"):
                ref["quality_en"] = (r["runs"]["reference"][0].get("metrics") or {}).get("en")
        out = Path(args.render).with_suffix("")
        out.with_suffix(".md").write_text(markdown(res))
        chart(res, out.with_suffix(".png"))
        return

    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    corpora = {n: CORPORA[n] for n in args.corpora.split(",") if n in CORPORA and CORPORA[n].is_dir()}
    for n in args.corpora.split(","):
        if n not in corpora:
            _log(f"skipping corpus {n}: {CORPORA.get(n, 'unknown name')} is absent")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    work = Path(args.work or tempfile.mkdtemp(prefix="askdocs-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    res: dict = {
        "argv": sys.argv[1:],
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "repeat": args.repeat,
        "n_queries": args.queries,
        "machine": {"cpus": os.cpu_count(), "cpu": _cpu_name()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        out.with_suffix(".json").write_text(json.dumps(res, indent=1))
        out.with_suffix(".md").write_text(markdown(res))
        chart(res, out.with_suffix(".png"))

    if "ingest" in parts:
        res["ingest"] = part_ingest(corpora, backends, args.repeat, work)
        save()
    if "embedders" in parts and corpora:
        name = list(corpora)[-1]
        res["embedders"] = {
            "corpus": name,
            **part_embedders(corpora[name], ["torch", "torch-bf16", "onnx", "onnx-int8"]),
        }
        save()
    if "reingest" in parts:
        res["reingest"] = part_reingest(corpora, backends[-1], work)
        save()
    if "query" in parts:
        src = Path(args.query_db) if args.query_db else None
        if src is None:
            biggest = list(corpora)[-1]
            src = work / f"query-source-{biggest}.db"
            if not src.exists():
                _log(f"query: ingesting {biggest} as the source collection")
                run_child("ingest", str(corpora[biggest]), str(src), backends[-1])
        res["query"] = part_query(src, [int(s) for s in args.sizes.split(",")], args.queries, work)
        save()
    if "growth" in parts and args.growth_corpus in CORPORA and CORPORA[args.growth_corpus].is_dir():
        res["growth"] = part_growth(CORPORA[args.growth_corpus], backends[-1], [1, 2, 4], args.queries, work)
        save()
    if "answers" in parts:
        res["answers"] = part_answers()
        save()
    _log(f"wrote {out.with_suffix('.md')}, .json and .png")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        print(json.dumps(CHILDREN[sys.argv[2]](*json.loads(sys.argv[3]))))
    else:
        main()
