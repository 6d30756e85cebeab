"""askdocs retrieval quality side by side with the reference pipeline.

    python benchmarks/search_quality.py CORPUS --questions QA.jsonl [--db PATH] [--reference] [--json OUT]

Ingests CORPUS with askdocs's defaults (or reuses --db: sync skips what is already there), times the
first ingest and an unchanged re-ingest, runs every search mode over the answerable questions, and,
with --reference, runs benchmarks/reference_pipeline.py on the same corpus with the same model.
Prints one Markdown table: hit@1/3/5/10 and MRR@10 (hit: a gold source among the top-k sources).
Skips cleanly (exit 0) when the corpus is absent.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CUTOFFS = (1, 3, 5, 10)


def metrics(questions: list[dict], sources: list[list[str]]) -> dict[str, float]:
    ranks = []
    for q, got in zip(questions, sources, strict=True):
        gold = set(q["gold_sources"])
        ranks.append(next((i for i, s in enumerate(got[:10], 1) if s in gold), None))
    n = len(ranks)
    out = {f"hit@{c}": sum(r is not None and r <= c for r in ranks) / n for c in CUTOFFS}
    out["mrr@10"] = sum(1 / r for r in ranks if r) / n
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus")
    ap.add_argument("--questions", required=True)
    ap.add_argument("--db", help="Milvus Lite file to build or reuse (default: temporary)")
    ap.add_argument("--modes", default="dense,bm25,hybrid")
    ap.add_argument("--lang", default="en", help="only questions in this language ('' for all)")
    ap.add_argument("--reference", action="store_true", help="also run benchmarks/reference_pipeline.py")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    if not Path(args.corpus).is_dir() or not Path(args.questions).is_file():
        print(f"skipped: {args.corpus} or {args.questions} is absent")
        return 0

    from askdocs import Index

    questions = [json.loads(x) for x in Path(args.questions).read_text(encoding="utf-8").splitlines() if x.strip()]
    evalq = [q for q in questions if q["answerable"] and (not args.lang or q["lang"] == args.lang)]
    tmp = tempfile.TemporaryDirectory()
    db = args.db or str(Path(tmp.name) / "quality.db")
    rows: dict[str, dict[str, float]] = {}
    report: dict[str, object] = {"corpus": args.corpus, "questions": args.questions, "n": len(evalq)}
    with Index(milvus_uri=db) as index:
        first = index.ingest(args.corpus)
        again = index.ingest(args.corpus)
        report["ingest"] = {"first": first.to_dict(), "unchanged": again.to_dict()}
        print(f"ingest: {first.summary()}\nre-ingest: {again.summary()}", file=sys.stderr)
        for mode in args.modes.split(","):
            t = time.perf_counter()
            hits = index.search_many([q["question"] for q in evalq], k=10, mode=mode)  # type: ignore[arg-type]
            rows[f"askdocs {mode}"] = metrics(evalq, [[h.source for h in hs] for hs in hits])
            rows[f"askdocs {mode}"]["seconds"] = time.perf_counter() - t
    if args.reference:
        out = Path(tmp.name) / "reference.json"
        script = Path(__file__).with_name("reference_pipeline.py")
        subprocess.run(
            [sys.executable, str(script), args.corpus, "--questions", args.questions, "--json", str(out)],
            check=True,
        )
        ref = json.loads(out.read_text())
        by_id = {p["id"]: p["top_sources"] for p in ref["per_question"]}
        rows["reference (blog)"] = metrics(evalq, [by_id[q["id"]] for q in evalq])
        report["reference_timings"] = ref["timings_s"]
    report["results"] = rows
    cols = [f"hit@{c}" for c in CUTOFFS] + ["mrr@10"]
    print(f"\n{Path(args.corpus).name}, {len(evalq)} answerable questions ({args.lang or 'all languages'})\n")
    print("| pipeline | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for name, m in rows.items():
        print(f"| {name} | " + " | ".join(f"{m[c]:.2f}" for c in cols) + " |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
