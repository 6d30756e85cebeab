"""Milvus Lite engines side by side: 2.5.x (Milvus's C++ engine) against 3.x (pure Python), bare pymilvus.

The two engines need different pymilvus majors, so they cannot share one virtualenv: run this script once
under each, then merge::

    /work/venv-ml25/bin/python benchmarks/engines.py run      # pymilvus 2.5 + milvus-lite 2.5 + setuptools<81
    /work/venv-ml3/bin/python  benchmarks/engines.py run      # pymilvus 3 + milvus-lite 3
    python benchmarks/engines.py merge                        # -> benchmarks/results/engines.md

Only pymilvus and numpy are imported (no askdocs, no torch), so the script measures the engine, not us.
Rows are real chunk texts (paragraphs of ../shared/corpus/milvus-docs, packed to ~700 characters; copies past
the first are perturbed: one word dropped, one corpus word appended) with random unit vectors of 384 dims,
and the schema is askdocs's: a VARCHAR with the English stop-word analyzer feeding a BM25 function.

Parts (all in one process per engine, the collection grows from size to size):
  freshness  3,000 rows flushed, then "Zebra rotates keys every night. zebra zebra." flushed on its own; the
             BM25 query "Zebra rotates keys" must rank it first (an old row with "zebra zebra" appended is
             the decoy).
  features   BM25 with a stop-word filter, hybrid_search with RRF and weighted rankers, the jieba tokenizer,
             query_iterator, delete by expression: each tried, ok or the error.
  scale      insert+flush throughput, dense/BM25/hybrid top-10 p50 and p95 (one query per call), process
             tree RSS (Lite 2.5 runs its engine in a child process), open and close time, at each size.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus" / "milvus-docs"
OUT = REPO / "benchmarks" / "results"
DIM = 384
STOP = (  # noqa: SIM905 - askdocs's list (Lucene's English stop words), one line of words
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "
    "these they this to was will with"
).split()
ANALYZER = {"tokenizer": "standard", "filter": ["lowercase", {"type": "stop", "stop_words": STOP}]}
ZEBRA = "Zebra rotates keys every night. zebra zebra."


def engine_name() -> str:
    from importlib.metadata import version

    return f"milvus-lite {version('milvus-lite')} (pymilvus {version('pymilvus')})"


def texts_from_corpus(limit_chars: int = 700) -> list[str]:
    """Paragraphs of the Milvus docs packed into chunks of about ``limit_chars`` characters."""
    out: list[str] = []
    for path in sorted(CORPUS.rglob("*.md")):
        buf = ""
        for para in re.split(r"\n\s*\n", path.read_text(errors="replace")):
            para = para.strip()
            if not para:
                continue
            if buf and len(buf) + len(para) > limit_chars:
                out.append(buf)
                buf = ""
            buf = f"{buf}\n\n{para}" if buf else para[: limit_chars * 2]
        if buf:
            out.append(buf)
    return out


def make_rows(base: list[str], start: int, n: int, rng: random.Random, vocab: list[str]) -> list[dict]:
    rows = []
    vecs = np.random.default_rng(start).standard_normal((n, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    for j in range(n):
        i = start + j
        text = base[i % len(base)]
        if i >= len(base):  # a perturbed copy: one word dropped, one corpus word appended
            words = text.split()
            del words[rng.randrange(len(words))]
            text = " ".join(words) + " " + rng.choice(vocab)
        rows.append({"id": i, "text": text, "vector": vecs[j].tolist()})
    return rows


def tree_rss_mb() -> float:
    """RSS of this process and its descendants (Lite 2.5 runs the engine as a child ``milvus`` process)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/status") as f:
                st = f.read()
        except OSError:
            continue
        m_pp = re.search(r"^PPid:\s+(\d+)", st, re.M)
        m_rss = re.search(r"^VmRSS:\s+(\d+)", st, re.M)
        if m_pp:
            parents[int(d)] = int(m_pp.group(1))
            rss[int(d)] = int(m_rss.group(1)) if m_rss else 0
    me = os.getpid()
    total = 0
    for pid in rss:
        p = pid
        while p and p != me:
            p = parents.get(p, 0)
        if p == me:
            total += rss[pid]
    return total / 1024


def schema(client, analyzer=ANALYZER):
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("text", DataType.VARCHAR, max_length=65535, enable_analyzer=True, analyzer_params=analyzer)
    s.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    s.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    s.add_function(
        Function(
            name="bm25", function_type=FunctionType.BM25, input_field_names=["text"], output_field_names=["sparse"]
        )
    )
    idx = client.prepare_index_params()
    idx.add_index("vector", index_type="AUTOINDEX", metric_type="COSINE")
    idx.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    return s, idx


def timed(fn, n: int) -> dict:
    times = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"p50": statistics.median(times), "p95": times[int(0.95 * (len(times) - 1))], "n": n}


def part_freshness(client, base, vocab) -> dict:
    client.create_collection("fresh", schema=schema(client)[0], index_params=schema(client)[1])
    rng = random.Random(1)
    rows = make_rows(base, 0, 3000, rng, vocab)
    rows[7]["text"] += " zebra zebra"  # the decoy: an old row that only repeats the word
    for i in range(0, 3000, 1000):
        client.insert("fresh", rows[i : i + 1000])
    client.flush("fresh")
    vec = np.random.default_rng(9).standard_normal(DIM).astype(np.float32)
    client.insert("fresh", [{"id": 10**9, "text": ZEBRA, "vector": (vec / np.linalg.norm(vec)).tolist()}])
    client.flush("fresh")
    res = client.search(
        "fresh",
        data=["Zebra rotates keys"],
        anns_field="sparse",
        limit=5,
        output_fields=["id"],
        search_params={"metric_type": "BM25"},
    )[0]
    ranked = [(int(r["id"]), round(float(r["distance"]), 2)) for r in res]
    ids = [i for i, _ in ranked]
    client.drop_collection("fresh")
    return {
        "rank_of_new_row": ids.index(10**9) + 1 if 10**9 in ids else None,
        "top": ranked[:3],
        "passes": bool(ids) and ids[0] == 10**9,
    }


def part_features(client, base, vocab) -> dict:
    from pymilvus import AnnSearchRequest, RRFRanker, WeightedRanker

    out: dict[str, str] = {}

    def attempt(name, fn):
        try:
            r = fn()
            out[name] = "ok" + (f": {r}" if r else "")
        except Exception as exc:  # the point is to record what each engine refuses
            out[name] = f"FAILS: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"

    s, idx = schema(client)
    client.create_collection("feat", schema=s, index_params=idx)
    rows = make_rows(base, 0, 500, random.Random(2), vocab)
    rows[0]["text"] = "the the the of of and and"
    rows[1]["text"] = "rotation of keys"
    client.insert("feat", rows)
    client.flush("feat")
    q = np.asarray(rows[1]["vector"], dtype=np.float32)

    def stop():
        hits = client.search(
            "feat", data=["the of and"], anns_field="sparse", limit=3, search_params={"metric_type": "BM25"}
        )[0]
        assert not hits, f"stop words matched {len(hits)} rows"
        hits = client.search(
            "feat", data=["the rotation"], anns_field="sparse", limit=1, search_params={"metric_type": "BM25"}
        )[0]
        assert hits and hits[0]["id"] == 1, hits
        return "stop-word-only query matches nothing"

    def hybrid(ranker):
        reqs = [
            AnnSearchRequest([q.tolist()], "vector", {"metric_type": "COSINE"}, 10),
            AnnSearchRequest(["rotation keys"], "sparse", {"metric_type": "BM25"}, 10),
        ]
        hits = client.hybrid_search("feat", reqs, ranker, limit=5)[0]
        assert hits[0]["id"] == 1, hits
        return ""

    def jieba():
        s2, idx2 = schema(client, {"tokenizer": "jieba"})
        client.create_collection("feat_zh", schema=s2, index_params=idx2)
        v = np.eye(DIM, dtype=np.float32)
        client.insert(
            "feat_zh",
            [
                {"id": 1, "text": "向量数据库支持混合搜索", "vector": v[0].tolist()},
                {"id": 2, "text": "今天天气很好", "vector": v[1].tolist()},
            ],
        )
        client.flush("feat_zh")
        hits = client.search(
            "feat_zh", data=["混合搜索"], anns_field="sparse", limit=2, search_params={"metric_type": "BM25"}
        )[0]
        client.drop_collection("feat_zh")
        assert [h["id"] for h in hits] == [1], hits
        return ""

    def iterator():
        it = client.query_iterator("feat", batch_size=128, filter="", output_fields=["id"])
        seen = 0
        while batch := it.next():
            seen += len(batch)
        it.close()
        assert seen == 500, seen
        return ""

    def delete():
        client.delete("feat", filter='id in [3, 4] or text like "rotation%"')
        left = client.query("feat", filter="id in [1, 3, 4, 5]", output_fields=["id"])
        assert sorted(r["id"] for r in left) == [5], left
        return ""

    attempt("BM25 + stop-word filter", stop)
    attempt("hybrid_search RRFRanker", lambda: hybrid(RRFRanker(60)))
    attempt("hybrid_search WeightedRanker", lambda: hybrid(WeightedRanker(0.5, 0.5)))
    attempt("jieba tokenizer", jieba)
    attempt("query_iterator", iterator)
    attempt("delete by expression", delete)
    client.drop_collection("feat")
    return out


OPEN_CLOSE = """
import sys, time
from pymilvus import MilvusClient
t = time.perf_counter()
c = MilvusClient(sys.argv[1])
c.load_collection("scale")
c.search("scale", data=[[0.05] * 384], anns_field="vector", limit=10, search_params={"metric_type": "COSINE"})
t_open = time.perf_counter() - t
t = time.perf_counter()
c.close()
try:  # pymilvus's close() leaves Lite 2.5's engine process running; askdocs stops it, so time that too
    from milvus_lite.server_manager import server_manager_instance
    server_manager_instance.release_server(sys.argv[1])
except ImportError:
    pass
print(t_open, time.perf_counter() - t)
"""


def release(db: str) -> None:
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:
        return
    server_manager_instance.release_server(db)


def open_close(db: str) -> tuple[float, float]:
    """Open (client, load, first search) and close time in a fresh process, pymilvus already imported."""
    import subprocess

    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", OPEN_CLOSE, db], capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[-2]), float(out[-1])


def part_scale(db: str, base, vocab, sizes: list[int], queries: int, budget_s: float) -> list[dict]:
    from pymilvus import AnnSearchRequest, MilvusClient, RRFRanker

    client = MilvusClient(db)
    s, idx = schema(client)
    client.create_collection("scale", schema=s, index_params=idx)
    rng = random.Random(3)
    qrng = np.random.default_rng(4)
    qtexts = [" ".join(random.Random(i).sample(base[i * 37 % len(base)].split()[:40], 4)) for i in range(queries)]
    have = 0
    results = []
    insert_s = flush_s = 0.0
    t_start = time.perf_counter()
    for size in sizes:
        while have < size:
            n = min(2000, size - have)
            rows = make_rows(base, have, n, rng, vocab)
            t = time.perf_counter()
            client.insert("scale", rows)
            insert_s += time.perf_counter() - t
            have += n
        t = time.perf_counter()
        client.flush("scale")
        flush_s += time.perf_counter() - t
        client.load_collection("scale")
        qv = qrng.standard_normal((queries, DIM)).astype(np.float32)
        qv /= np.linalg.norm(qv, axis=1, keepdims=True)
        qv = qv.tolist()

        def dense(i, client=client, qv=qv):
            client.search(
                "scale",
                data=[qv[i]],
                anns_field="vector",
                limit=10,
                output_fields=["text"],
                search_params={"metric_type": "COSINE"},
            )

        def bm25(i, client=client):
            client.search(
                "scale",
                data=[qtexts[i]],
                anns_field="sparse",
                limit=10,
                output_fields=["text"],
                search_params={"metric_type": "BM25"},
            )

        def hybrid(i, client=client, qv=qv):
            reqs = [
                AnnSearchRequest([qv[i]], "vector", {"metric_type": "COSINE"}, 50),
                AnnSearchRequest([qtexts[i]], "sparse", {"metric_type": "BM25"}, 50),
            ]
            client.hybrid_search("scale", reqs, RRFRanker(60), limit=10, output_fields=["text"])

        for fn in (dense, bm25, hybrid):
            fn(0)  # warm
        row = {
            "rows": size,
            "dense": timed(dense, queries),
            "bm25": timed(bm25, queries),
            "hybrid": timed(hybrid, queries),
            "rss_mb": round(tree_rss_mb()),
            "insert_rows_per_s": round(have / insert_s),
            "insert_flush_rows_per_s": round(have / (insert_s + flush_s)),
        }
        client.close()
        release(db)
        row["open_load_first_search_s"], row["close_s"] = open_close(db)
        client = MilvusClient(db)
        client.load_collection("scale")
        results.append(row)
        print(json.dumps(row), flush=True)
        if time.perf_counter() - t_start > budget_s:
            print(f"budget of {budget_s:.0f} s spent after {size} rows: larger sizes skipped", flush=True)
            break
    client.close()
    return results


def run(args) -> None:
    from pymilvus import MilvusClient

    base = texts_from_corpus()
    vocab = sorted({w for t in base[:500] for w in t.split() if w.isalpha() and len(w) > 3})
    name = engine_name()
    print(name, f"{len(base)} base chunks", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        client = MilvusClient(os.path.join(tmp, "small.db"))
        fresh = part_freshness(client, base, vocab)
        print("freshness", fresh, flush=True)
        feats = part_features(client, base, vocab)
        print("features", json.dumps(feats, ensure_ascii=False, indent=1), flush=True)
        client.close()
        sizes = [int(s) for s in args.sizes.split(",")]
        scale = part_scale(os.path.join(tmp, "scale.db"), base, vocab, sizes, args.queries, args.budget)
    res = {
        "engine": name,
        "python": sys.version.split()[0],
        "base_chunks": len(base),
        "freshness": fresh,
        "features": feats,
        "scale": scale,
        "sizes_asked": sizes,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    from importlib.metadata import version

    out = OUT / f"engines-{version('milvus-lite')}.json"
    out.write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n")
    print("wrote", out)


def merge(_args) -> None:
    runs = [json.loads(p.read_text()) for p in sorted(OUT.glob("engines-*.json"))]
    lines = [
        "# Milvus Lite engines side by side",
        "",
        "`benchmarks/engines.py` (bare pymilvus; see its docstring). Each engine in its own virtualenv, run one "
        "after the other on the same machine; the machine was shared with other engineers' jobs (2 cores), "
        "so read the ratios, not the absolute times.",
        "",
    ]
    lines += ["## BM25 freshness", "", "| engine | new row's rank | top 3 (id, score) | passes |", "|---|---|---|---|"]
    for r in runs:
        f = r["freshness"]
        lines.append(f"| {r['engine']} | {f['rank_of_new_row']} | {f['top']} | {'yes' if f['passes'] else 'NO'} |")
    lines += [
        "",
        'New row id 1000000000; the decoy (an old row with "zebra zebra" appended) is id 7.',
        "",
        "## Features askdocs uses",
        "",
        "| feature | " + " | ".join(r["engine"] for r in runs) + " |",
        "|---|" + "---|" * len(runs),
    ]
    for feat in runs[0]["features"]:
        lines.append(f"| {feat} | " + " | ".join(r["features"].get(feat, "-") for r in runs) + " |")
    nq = runs[0]["scale"][0]["dense"]["n"] if runs[0]["scale"] else 0
    lines += [
        "",
        f"## Scale (top-10, one query per call, {nq} queries; ms)",
        "",
        "| engine | rows | dense p50 | BM25 p50 | hybrid p50 | hybrid p95 | insert rows/s | insert+flush rows/s "
        "| RSS MB | close s | open+load+1st search s |",
        "|---|" + "---|" * 10,
    ]
    for r in runs:
        for s in r["scale"]:
            lines.append(
                f"| {r['engine']} | {s['rows']:,} | {s['dense']['p50']:.1f} | {s['bm25']['p50']:.1f} | "
                f"{s['hybrid']['p50']:.1f} | {s['hybrid']['p95']:.1f} | {s['insert_rows_per_s']:,} | "
                f"{s['insert_flush_rows_per_s']:,} | {s['rss_mb']:,} | {s['close_s']:.2f} | "
                f"{s['open_load_first_search_s']:.2f} |"
            )
    if len(runs) == 2:
        a, b = runs
        lines += [
            "",
            f"## Ratios ({b['engine']} time / {a['engine']} time)",
            "",
            "| rows | dense | BM25 | hybrid |",
            "|---|---|---|---|",
        ]
        bs = {s["rows"]: s for s in b["scale"]}
        for s in a["scale"]:
            o = bs.get(s["rows"])
            if o:
                lines.append(
                    f"| {s['rows']:,} | "
                    + " | ".join(f"{o[m]['p50'] / s[m]['p50']:.0f}×" for m in ("dense", "bm25", "hybrid"))
                    + " |"
                )
    lines += [
        "",
        'WeightedRanker "ok": the right first hit here. Through askdocs, Milvus Lite 2.5.1\'s '
        "WeightedRanker normalised BM25 as a distance (1 - 2·atan(x)/π: the best keyword match fused lowest), "
        "so askdocs fuses weighted scores itself (askdocs/store/search.py); RRF stays in Milvus.",
        "Open+load+first search is a fresh process (pymilvus imported first); Lite 2.5 starts its engine "
        "process and loads the segments then. Memory is the RSS of the process tree (Lite 2.5's engine "
        "is a child process).",
    ]
    for r in runs:
        missing = [s for s in r["sizes_asked"] if s not in {x["rows"] for x in r["scale"]}]
        if missing:
            lines.append(f"\n{r['engine']}: sizes {missing} not measured (time budget of the run).")
    (OUT / "engines.md").write_text("\n".join(lines) + "\n")
    print((OUT / "engines.md").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--sizes", default="10000,22500,100000")
    r.add_argument("--queries", type=int, default=50)
    r.add_argument("--budget", type=float, default=900, help="seconds; sizes after it is spent are skipped")
    r.set_defaults(fn=run)
    m = sub.add_parser("merge")
    m.set_defaults(fn=merge)
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
