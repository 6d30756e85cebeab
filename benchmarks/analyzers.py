"""BM25 analyzers side by side: standard against jieba, on English and Chinese questions.

    python benchmarks/analyzers.py --db DB --collection SRC QA.jsonl [QA.jsonl ...] [--out results/analyzers.md]

SRC is an askdocs collection already built from a corpus (any analyzer).  Its rows, vectors included,
are copied once into one collection per analyzer, so the analyzers are compared on identical chunks and
vectors: only the BM25 side differs (Milvus computes the sparse vectors from the text on insert).  Each
question set is then searched in the bm25, dense and hybrid modes; dense is the same in every column, a
check that the copies are faithful.  Skips cleanly (exit 0) when a question file is absent.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ANALYZERS = ("standard", "jieba")
MODES = ("bm25", "dense", "hybrid")


def copy_collection(index_src, index_dst, analyzer: str) -> int:
    """Rows of ``index_src`` into a new collection of ``index_dst`` built with ``analyzer``."""
    from askdocs.store.schema import OUTPUT_FIELDS, STATE_FIELDS

    meta = dict(index_src.store.meta() or {})
    if index_dst.store.exists():
        index_dst.store.drop()
    index_dst.store.create(meta["model"], meta["dim"], {**meta, "analyzer": analyzer})
    client = index_src.store.conn.connected()
    fields = sorted({"id", "vector", "n_chunks", "doc_hash", *OUTPUT_FIELDS, *STATE_FIELDS})
    it = client.query_iterator(index_src.store.collection, batch_size=1000, output_fields=fields)
    dst = index_dst.store.conn.connected()
    n = 0
    while rows := it.next():
        dst.insert(index_dst.store.collection, rows)
        n += len(rows)
    it.close()
    dst.flush(index_dst.store.collection)
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("questions", nargs="+")
    ap.add_argument("--db", required=True)
    ap.add_argument("--collection", required=True)
    ap.add_argument("--dense-weight", type=float, default=None)
    ap.add_argument("--out")
    args = ap.parse_args()
    files = [Path(q) for q in args.questions if Path(q).is_file()]
    if not files:
        print("skipped: no question file found")
        return 0

    from askdocs import Index
    from askdocs.evaluate import evaluate_retrieval, load_questions

    over = {"milvus_uri": args.db}
    if args.dense_weight is not None:
        over["dense_weight"] = args.dense_weight
    src = Index(collection=args.collection, **over)
    results: dict[tuple[str, str, str], dict[str, float]] = {}
    for analyzer in ANALYZERS:
        dst = Index(collection=f"{args.collection}_{analyzer}", **over)
        t = time.perf_counter()
        n = copy_collection(src, dst, analyzer)
        print(f"{analyzer}: {n} rows copied in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        for f in files:
            got = evaluate_retrieval(dst, load_questions(f), MODES)
            for mode in MODES:
                for lang, m in got[mode]["by_lang"].items():
                    results[(f"{f.name} {lang}", mode, analyzer)] = m
        dst.close()
    meta = src.store.meta() or {}
    src.close()

    lines = [
        "# BM25 analyzers: standard against jieba",
        "",
        f"`python benchmarks/analyzers.py --db DB --collection {args.collection} "
        + " ".join(f.name for f in files)
        + "`: one askdocs collection (model "
        + f"`{meta.get('model')}`, chunking `{meta.get('chunking')}`) copied once per analyzer, so chunks and "
        + "vectors are identical and only BM25 differs. k=10; hit@k: a gold source in the top k."
        + (f" Dense weight {args.dense_weight}." if args.dense_weight is not None else ""),
        "",
        "| questions | mode | " + " | ".join(f"{a} hit@1 / hit@5 / MRR" for a in ANALYZERS) + " |",
        "|---|---|" + "---|" * len(ANALYZERS),
    ]
    for name in dict.fromkeys(k[0] for k in results):  # question file and language, in order
        for mode in MODES:
            cells = []
            for a in ANALYZERS:
                m = results[(name, mode, a)]
                cells.append(f"{m['hit@1']:.2f} / {m['hit@5']:.2f} / {m['mrr@10']:.2f}")
            n = results[(name, mode, ANALYZERS[0])]["n"]
            lines.append(f"| {name} ({n}) | {mode} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
