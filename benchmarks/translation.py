"""Chinese questions over English documents, with and without query translation, side by side.

    python benchmarks/translation.py --db DB --collection NAME ZH.jsonl [EN.jsonl ...] [--out results/translation.md]

The collection is an askdocs collection of the English documents (any model).  Every question set is
searched in the dense, bm25 and hybrid modes twice in one process: ``query_translation = off`` (the
question as asked) and ``dictionary`` (askdocs/translate.py).  English questions are the control: the
translation leaves them as they are, so their rows must not move.  Skips cleanly when a file is absent.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

MODES = ("dense", "bm25", "hybrid")
SETTINGS = ("off", "dictionary")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("questions", nargs="+")
    ap.add_argument("--db", required=True)
    ap.add_argument("--collection", default="askdocs")
    ap.add_argument("--out")
    args = ap.parse_args()
    files = [Path(q) for q in args.questions if Path(q).is_file()]
    if not files or not Path(args.db).exists():
        print("skipped: no question file or no collection")
        return 0

    from askdocs import Index
    from askdocs.evaluate import evaluate_retrieval, load_questions

    rows = []
    meta: dict = {}
    per_query_ms: dict[str, float] = {}
    for setting in SETTINGS:
        with Index(milvus_uri=args.db, collection=args.collection, query_translation=setting) as ix:
            meta = ix.meta() or {}
            for f in files:
                qs = load_questions(f)
                t = time.perf_counter()
                got = evaluate_retrieval(ix, qs, MODES)
                per_query_ms[f"{f.name} {setting}"] = 1000 * (time.perf_counter() - t) / (len(MODES) * len(qs))
                for mode in MODES:
                    for lang, m in got[mode]["by_lang"].items():
                        rows.append((f"{f.name} {lang} ({m['n']})", mode, setting, m))
    lines = [
        "# Query translation: Chinese questions over English documents",
        "",
        f"`python benchmarks/translation.py --db DB --collection {args.collection} "
        + " ".join(f.name for f in files)
        + f"`: collection model `{meta.get('model')}`, BM25 analyzer `{meta.get('analyzer', 'standard')}`, "
        "k=10; hit@k: a gold source in the top k.  `off`: the question as asked; `dictionary`: searched with "
        "its English glosses (jieba words, CC-CEDICT glosses, askdocs/translate.py).",
        "",
        "| questions | mode | " + " | ".join(f"{s}: hit@1 / hit@5 / MRR" for s in SETTINGS) + " |",
        "|---|---|" + "---|" * len(SETTINGS),
    ]
    keys = list(dict.fromkeys((r[0], r[1]) for r in rows))
    for name, mode in keys:
        cells = []
        for s in SETTINGS:
            m = next(r[3] for r in rows if r[0] == name and r[1] == mode and r[2] == s)
            cells.append(f"{m['hit@1']:.2f} / {m['hit@5']:.2f} / {m['mrr@10']:.2f}")
        lines.append(f"| {name} | {mode} | " + " | ".join(cells) + " |")
    lines += ["", "Mean time per search (loaded 2-core machine; includes the first dictionary load):", ""]
    lines += [f"- {k}: {v:.1f} ms" for k, v in per_query_ms.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
