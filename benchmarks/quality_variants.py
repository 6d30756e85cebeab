"""Retrieval quality of askdocs variants on the shared dev sets, in one command.

    python benchmarks/quality_variants.py [--sets milvus,postgresql]
        [--chunkings default,chunk256,chunk1024,tokens200,noprefix,plain] [--reference]
        [--bench-dir .bench] [--out benchmarks/results/quality_variants.md]

Why one script: fusion (RRF vs weighted, dense_weight), candidate depth and chunking interact with
the corpus, so every variant is measured on both dev sets with the same metric code as
``askdocs eval`` (``askdocs.evaluate``: hit@k, MRR@10, nDCG@10 by source, deduplicated; answerable
questions only).

Each distinct chunking is ingested ONCE into its own Milvus Lite file under --bench-dir (re-runs
sync, so an unchanged corpus costs seconds) and every retrieval variant then only searches it:
embedding is the slow part on CPU (milvus-docs ~4-10 min, PostgreSQL ~15-30 min), search is not.
Retrieval variants set attributes of the open index's ``Retriever`` (``dense_weight`` None = RRF,
``candidates``), the same switches that ``fusion``/``dense_weight`` make in config.

Chunkings: ``default`` (config defaults: 512 chars, overlap 51, heading-aware sections, title and
heading path prefixed to the embedded/BM25 text), ``chunkN`` (N chars, 10 % overlap), ``tokensN``
(N tokens of the embedding model's tokenizer, 10 % overlap), ``noprefix`` (heading-aware, but only
the chunk text is embedded and indexed) and ``plain`` (no sections, no prefix: the whole cleaned
document split as one text).  askdocs has no setting for the last two on purpose (they are
measured to justify the prefix, not offered), so this script patches ``Chunk.search_text`` and
``Chunker._segments`` for their ingest and search, and marks their chunking fingerprint.

Results accumulate in ``<out>.json`` (per set, per row), so a run of one set or one chunking updates
its rows and the Markdown table is rewritten from everything measured so far.

The reference pipeline (benchmarks/reference_pipeline.py) re-embeds the corpus itself; with
--reference it runs as a subprocess once per set and its --json is cached in the bench dir, then
its per-question top sources are scored by the same ``askdocs.evaluate`` code (deduplicated by
source, so its rows can differ slightly from reference_pipeline.py's own chunk-rank output).
A set whose corpus or questions are absent (no ../shared) is skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
SETS = {
    "milvus": (SHARED / "corpus" / "milvus-docs", SHARED / "qa" / "milvus-dev.jsonl"),
    "postgresql": (SHARED / "corpus" / "postgresql-15-html", SHARED / "qa" / "postgresql-dev.jsonl"),
}
# label -> (mode, dense_weight (None = RRF), candidates per list)
RETRIEVALS: dict[str, tuple[str, float | None, int]] = {
    "dense": ("dense", None, 50),
    "bm25": ("bm25", None, 50),
    "hybrid RRF": ("hybrid", None, 50),
    "hybrid RRF, 100 candidates": ("hybrid", None, 100),
    "hybrid weighted 0.3": ("hybrid", 0.3, 50),
    "hybrid weighted 0.4": ("hybrid", 0.4, 50),
    "hybrid weighted 0.5": ("hybrid", 0.5, 50),
    "hybrid weighted 0.6": ("hybrid", 0.6, 50),
    "hybrid weighted 0.7": ("hybrid", 0.7, 50),
    "hybrid weighted 0.5, 20 candidates": ("hybrid", 0.5, 20),
    "hybrid weighted 0.5, 100 candidates": ("hybrid", 0.5, 100),
}
# what runs on the non-default chunkings (each is another ingest; the fusion sweep runs on default)
CHUNKING_RETRIEVALS = ["dense", "hybrid RRF", "hybrid weighted 0.5"]
CHUNKINGS: dict[str, dict[str, Any]] = {
    "default": {},
    "chunk256": {"chunk_size": 256, "chunk_overlap": 26},
    "chunk1024": {"chunk_size": 1024, "chunk_overlap": 102},
    "tokens200": {"chunk_unit": "tokens", "chunk_size": 200, "chunk_overlap": 20},
    "noprefix": {},
    "plain": {},
}
COLS = ["hit@1", "hit@3", "hit@5", "hit@10", "mrr@10", "ndcg@10"]


@contextlib.contextmanager
def chunking_patch(tag: str) -> Iterator[None]:
    """``noprefix``: embed/index the chunk text alone; ``plain``: also ignore headings (one section)."""
    from askdocs.chunk import Chunk, Chunker
    from askdocs.clean import Section

    if tag not in ("noprefix", "plain"):
        yield
        return
    saved_text, saved_segments = Chunk.search_text, Chunker._segments
    Chunk.search_text = property(lambda c: c.text)  # type: ignore[assignment,method-assign]
    if tag == "plain":
        Chunker._segments = lambda self, doc: iter([Section(0, len(doc.text), "")])  # type: ignore[method-assign]
    try:
        yield
    finally:
        Chunk.search_text = saved_text  # type: ignore[method-assign]
        Chunker._segments = saved_segments  # type: ignore[method-assign]


def _en(res: dict[str, Any]) -> dict[str, Any]:
    return res["by_lang"].get("en", res["all"])


def run_chunking(name: str, corpus: Path, qa: Path, tag: str, bench: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ingest (or re-sync) one chunking of one set, then run its retrieval variants."""
    from askdocs import Index
    from askdocs import evaluate as ev

    questions = [q for q in ev.load_questions(qa) if q["answerable"]]
    texts = [q["question"] for q in questions]
    rows: dict[str, Any] = {}
    with chunking_patch(tag), Index(milvus_uri=str(bench / f"{name}-{tag}.db"), **CHUNKINGS[tag]) as index:
        if tag in ("noprefix", "plain"):
            index.chunker().fingerprint += f"|{tag}"
        t = time.perf_counter()
        rep = index.ingest(corpus)
        ingest = {"seconds": round(time.perf_counter() - t, 1), "summary": rep.summary()}
        print(f"{name} {tag}: {rep.summary()}", file=sys.stderr, flush=True)
        r = index.retriever
        saved = (r.dense_weight, r.candidates)
        if tag == "default":
            hits = index.search_many(texts, k=ev.DEPTH)
            rows["askdocs default"] = ev.evaluate_sources(questions, [[h.source for h in hs] for hs in hits])
        labels = list(RETRIEVALS) if tag == "default" else CHUNKING_RETRIEVALS
        for label in labels:
            mode, weight, candidates = RETRIEVALS[label]
            r.dense_weight, r.candidates = weight, candidates
            hits = index.search_many(texts, k=ev.DEPTH, mode=mode)  # type: ignore[arg-type]
            key = label if tag == "default" else f"{label}, {tag}"
            rows[key] = ev.evaluate_sources(questions, [[h.source for h in hs] for hs in hits])
        r.dense_weight, r.candidates = saved
    return rows, ingest


def reference_row(name: str, corpus: Path, qa: Path, bench: Path, run: bool) -> dict[str, Any] | None:
    """The reference pipeline's per-question top sources scored with askdocs.evaluate (cached run)."""
    from askdocs import evaluate as ev

    cached = bench / f"reference-{name}.json"
    if not cached.is_file():
        if not run:
            return None
        script = Path(__file__).with_name("reference_pipeline.py")
        db = bench / f"reference-{name}.db"
        cmd = [sys.executable, str(script), str(corpus), "--questions", str(qa), "--db", str(db), "--json", str(cached)]
        subprocess.run(cmd, check=True)
    ref = json.loads(cached.read_text())
    questions = [q for q in ev.load_questions(qa) if q["answerable"]]
    by_id = {p["id"]: p["top_sources"] for p in ref["per_question"]}
    return ev.evaluate_sources(questions, [by_id.get(q["id"], []) for q in questions])


def misses(res: dict[str, Any]) -> list[str]:
    """Questions whose gold source is not first: what ranks above it."""
    out = []
    for r in res["per_question"]:
        if r["rank"] != 1:
            out.append(
                f"{r['id']}: gold {', '.join(r['gold'])} at rank {r['rank'] or '>10'}; "
                f"above/instead: {', '.join(s for s in r['top'] if s not in r['gold'])}"
            )
    return out


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# askdocs retrieval quality variants",
        "",
        "Generated by `benchmarks/quality_variants.py` (metrics: `askdocs.evaluate`, k=10, binary relevance by "
        "source with chunk duplicates removed; answerable questions; English subset shown, all languages in "
        "the JSON). Model: packaged all-MiniLM-L6-v2 on CPU. `askdocs default` = the config defaults at the "
        "time of the run; other rows name what differs (fusion, dense weight, candidates per list, chunking).",
        "",
    ]
    for name, res in results.items():
        first = next(iter(res["rows"].values()))
        n_en = first["by_lang"].get("en", first["all"])["n"]
        lines += [
            f"## {name} ({n_en} answerable English questions)",
            "",
            "| variant | " + " | ".join(COLS) + " |",
            "|---|" + "---:|" * len(COLS),
        ]
        for row, r in res["rows"].items():
            m = _en(r)
            lines.append(f"| {row} | " + " | ".join(f"{m[c]:.2f}" for c in COLS) + " |")
        lines += [
            "",
            "Ingest: " + "; ".join(f"{k} {v['seconds']} s ({v['summary']})" for k, v in res["ingest"].items()),
        ]
        if "askdocs default" in res["rows"]:
            lines += ["", "Misses of askdocs default (gold source not at rank 1):", ""]
            lines += [f"- {m}" for m in misses(res["rows"]["askdocs default"])] or ["- none"]
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="milvus,postgresql")
    ap.add_argument("--chunkings", default=",".join(CHUNKINGS), help=f"some of {', '.join(CHUNKINGS)}")
    ap.add_argument("--bench-dir", default=str(REPO / ".bench"))
    ap.add_argument("--reference", action="store_true", help="run reference_pipeline.py where not cached")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "quality_variants.md"))
    args = ap.parse_args()
    bench = Path(args.bench_dir)
    bench.mkdir(parents=True, exist_ok=True)
    store = Path(args.out).with_suffix(".json")
    results: dict[str, Any] = json.loads(store.read_text()) if store.is_file() else {}
    tags = [t for t in args.chunkings.split(",") if t.strip()]
    for tag in tags:
        if tag not in CHUNKINGS:
            ap.error(f"unknown chunking {tag!r}")
    ran = False
    for name in args.sets.split(","):
        corpus, qa = SETS[name]
        if not corpus.is_dir() or not qa.is_file():
            print(f"skipped {name}: {corpus} or {qa} is absent", file=sys.stderr)
            continue
        res = results.setdefault(name, {"rows": {}, "ingest": {}})
        for tag in tags:
            rows, ingest = run_chunking(name, corpus, qa, tag, bench)
            res["rows"].update(rows)
            res["ingest"][tag] = ingest
            store.write_text(json.dumps(results, indent=1, ensure_ascii=False))
            ran = True
        ref = reference_row(name, corpus, qa, bench, args.reference)
        if ref is not None:
            res["rows"]["reference pipeline"] = ref
            store.write_text(json.dumps(results, indent=1, ensure_ascii=False))
            ran = True
    if not ran:
        print("skipped: no dev set present")
        return 0
    text = markdown(results)
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
