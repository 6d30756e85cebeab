"""Retrieval quality of askdocs variants on the shared dev sets, in one command.

    python benchmarks/quality_variants.py [--sets milvus,postgresql] [--chunk-sizes 256,1024]
        [--reference] [--bench-dir .bench] [--out benchmarks/results/quality_variants.md] [--json OUT]

Why one script: the fusion choice (RRF vs weighted, dense_weight) and chunk size interact with the
corpus, so every variant is measured on both dev sets with the same metric code as ``askdocs eval``
(``askdocs.evaluate``: hit@k, MRR@10, nDCG@10 by source, deduplicated; answerable questions only).

Each distinct chunking is ingested ONCE into its own Milvus Lite file under --bench-dir (re-runs
sync, so an unchanged corpus costs seconds) and every mode/fusion variant then only searches it:
embedding is the slow part on CPU (milvus-docs ~4 min, PostgreSQL ~15 min), search is not.
Chunk-size variants run on milvus-docs only (each is another ingest).  Fusion variants set
``index.retriever.dense_weight`` on the open index (None = RRF), the same switch that
``fusion=weighted`` + ``dense_weight`` make in config.

The reference pipeline (benchmarks/reference_pipeline.py) re-embeds the corpus itself; with
--reference it runs as a subprocess (--json), otherwise the row is read from --reference-json
files when given.  A set whose corpus or questions are absent (no ../shared) is skipped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
SETS = {
    "milvus": (SHARED / "corpus" / "milvus-docs", SHARED / "qa" / "milvus-dev.jsonl"),
    "postgresql": (SHARED / "corpus" / "postgresql-15-html", SHARED / "qa" / "postgresql-dev.jsonl"),
}
FUSIONS: list[tuple[str, str, float | None]] = [
    ("dense", "dense", None),
    ("bm25", "bm25", None),
    ("hybrid RRF", "hybrid", None),
    ("hybrid weighted 0.3", "hybrid", 0.3),
    ("hybrid weighted 0.5", "hybrid", 0.5),
    ("hybrid weighted 0.7", "hybrid", 0.7),
]
COLS = ["hit@1", "hit@3", "hit@5", "hit@10", "mrr@10", "ndcg@10"]


def _en(res: dict[str, Any]) -> dict[str, Any]:
    return res["by_lang"].get("en", res["all"])


def run_set(name: str, corpus: Path, qa: Path, chunk_sizes: list[int], bench: Path) -> dict[str, Any]:
    """All variants of one dev set: {row name: evaluate_sources result}, plus ingest timings."""
    from askdocs import Index
    from askdocs import evaluate as ev

    questions = [q for q in ev.load_questions(qa) if q["answerable"]]
    rows: dict[str, Any] = {}
    ingests: dict[str, Any] = {}
    for size in [None, *chunk_sizes]:
        tag = "default" if size is None else f"chunk{size}"
        over: dict[str, Any] = {} if size is None else {"chunk_size": size, "chunk_overlap": round(size * 0.1)}
        with Index(milvus_uri=str(bench / f"{name}-{tag}.db"), **over) as index:
            t = time.perf_counter()
            rep = index.ingest(corpus)
            ingests[tag] = {"seconds": round(time.perf_counter() - t, 1), "summary": rep.summary()}
            print(f"{name} {tag}: {rep.summary()}", file=sys.stderr)
            default_weight = index.retriever.dense_weight
            texts = [q["question"] for q in questions]
            variants = (
                FUSIONS if size is None else [("hybrid RRF", "hybrid", None), ("hybrid weighted 0.5", "hybrid", 0.5)]
            )
            if size is None:
                hits = index.search_many(texts, k=ev.DEPTH)
                rows["askdocs default"] = ev.evaluate_sources(questions, [[h.source for h in hs] for hs in hits])
            for label, mode, weight in variants:
                index.retriever.dense_weight = weight
                hits = index.search_many(texts, k=ev.DEPTH, mode=mode)  # type: ignore[arg-type]
                key = label if size is None else f"{label}, chunk {size}"
                rows[key] = ev.evaluate_sources(questions, [[h.source for h in hs] for hs in hits])
            index.retriever.dense_weight = default_weight
    return {"rows": rows, "ingest": ingests, "n": len(questions)}


def reference_row(corpus: Path, qa: Path, run: bool, saved: Path | None) -> dict[str, Any] | None:
    """The reference pipeline's per-question top sources scored with askdocs.evaluate."""
    from askdocs import evaluate as ev

    if saved is not None and saved.is_file():
        ref = json.loads(saved.read_text())
    elif run:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "ref.json"
            script = Path(__file__).with_name("reference_pipeline.py")
            subprocess.run(
                [sys.executable, str(script), str(corpus), "--questions", str(qa), "--json", str(out)], check=True
            )
            ref = json.loads(out.read_text())
    else:
        return None
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
        "the JSON). Model: packaged all-MiniLM-L6-v2 on CPU. askdocs default = the config defaults "
        "(hybrid, RRF k=60, 512-char chunks, overlap 51).",
        "",
    ]
    for name, res in results.items():
        n_en = next(iter(res["rows"].values()))["by_lang"].get("en", {}).get("n", res["n"])
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
            "",
            "Misses of askdocs default (gold source not at rank 1):",
            "",
        ]
        lines += [f"- {m}" for m in misses(res["rows"]["askdocs default"])] or ["- none"]
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="milvus,postgresql")
    ap.add_argument("--chunk-sizes", default="256,1024", help="extra chunk sizes for milvus-docs ('' for none)")
    ap.add_argument("--bench-dir", default=str(REPO / ".bench"))
    ap.add_argument("--reference", action="store_true", help="run reference_pipeline.py (re-embeds the corpus)")
    ap.add_argument("--reference-json", nargs="*", default=[], help="saved reference --json files, NAME=PATH")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "quality_variants.md"))
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    bench = Path(args.bench_dir)
    bench.mkdir(parents=True, exist_ok=True)
    saved = dict(x.split("=", 1) for x in args.reference_json)
    sizes = [int(s) for s in args.chunk_sizes.split(",") if s.strip()]
    results: dict[str, Any] = {}
    for name in args.sets.split(","):
        corpus, qa = SETS[name]
        if not corpus.is_dir() or not qa.is_file():
            print(f"skipped {name}: {corpus} or {qa} is absent", file=sys.stderr)
            continue
        results[name] = run_set(name, corpus, qa, sizes if name == "milvus" else [], bench)
        ref = reference_row(corpus, qa, args.reference, Path(saved[name]) if name in saved else None)
        if ref is not None:
            results[name]["rows"]["reference pipeline"] = ref
    if not results:
        print("skipped: no dev set present")
        return 0
    text = markdown(results)
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
