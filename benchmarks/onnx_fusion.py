"""ONNX Runtime's transformer optimizer on askdocs's exports, side by side: unfused against fused.

For all-MiniLM-L6-v2 and multilingual-e5-small, float32 and int8, embeds the same sample of Milvus-docs
chunks with the plain export (``fuse=False``, what askdocs exported before) and the fused one
(attention, LayerNorm and GELU fused by ``onnxruntime.transformers.optimizer``), in alternating rounds,
and reports chunks/s (median), fused/unfused and e5/MiniLM ratios, then

- agreement: cosine between fused and unfused vectors (chunks and the dev questions), and for each
  dev question whether the fused model ranks the same top chunks of the sample as the unfused one;
- session settings (fused int8): ONNX Runtime's default threads (0) against 1 and one per physical core;
- run batch (fused int8): sequences per ``session.run``.

    python benchmarks/onnx_fusion.py ../shared/corpus/milvus-docs ../shared/qa/milvus-dev.jsonl --n 64
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from multilingual_embed import chunks


def timed(runs: dict[str, Callable[[], np.ndarray]], rounds: int, n: int) -> tuple[dict, dict]:
    times: dict[str, list[float]] = {k: [] for k in runs}
    vectors: dict[str, np.ndarray] = {}
    for r in range(rounds):
        for name in list(runs) if r % 2 == 0 else list(reversed(runs)):
            t = time.perf_counter()
            vectors[name] = runs[name]()
            times[name].append(time.perf_counter() - t)
            print(f"round {r + 1} {name}: {n / times[name][-1]:.2f} chunks/s", flush=True)
    return {k: n / statistics.median(v) for k, v in times.items()}, vectors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus")
    ap.add_argument("questions", type=Path)
    ap.add_argument("--n", type=int, default=64, help="chunks embedded per run")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--skip-settings", action="store_true", help="only the fused/unfused table")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "onnx_fusion.json")
    args = ap.parse_args()

    from askdocs.embed import CPU_DEFAULT_MODEL, CPU_MULTILINGUAL_MODEL, OnnxEmbedder

    texts = chunks(args.corpus, args.n)
    questions = [json.loads(line)["question"] for line in args.questions.read_text().splitlines() if line.strip()]
    models = {"minilm": CPU_DEFAULT_MODEL, "e5": CPU_MULTILINGUAL_MODEL}
    embedders = {
        f"{m}-{prec}-{graph}": OnnxEmbedder(name, quantize=prec == "int8", fuse=graph == "fused")
        for m, name in models.items()
        for prec in ("float", "int8")
        for graph in ("unfused", "fused")
    }
    for emb in embedders.values():
        emb.embed_documents(["warm up"])  # export, quantization and session load outside the timing
    speed, vectors = timed(
        {k: (lambda e=e: e.embed_documents(texts)) for k, e in embedders.items()}, args.rounds, len(texts)
    )
    agreement = {}
    for m in models:
        for prec in ("float", "int8"):
            a, b = embedders[f"{m}-{prec}-unfused"], embedders[f"{m}-{prec}-fused"]
            va, vb = vectors[f"{m}-{prec}-unfused"], vectors[f"{m}-{prec}-fused"]
            qa, qb = a.embed_queries(questions), b.embed_queries(questions)
            top_a, top_b = np.argsort(-(qa @ va.T), axis=1)[:, :5], np.argsort(-(qb @ vb.T), axis=1)[:, :5]
            agreement[f"{m}-{prec}"] = {
                "chunk_cos_min": float((va * vb).sum(1).min()),
                "query_cos_min": float((qa * qb).sum(1).min()),
                "same_top1": float(np.mean(top_a[:, 0] == top_b[:, 0])),
                "top5_overlap": float(np.mean([len(set(x) & set(y)) / 5 for x, y in zip(top_a, top_b, strict=True)])),
            }
    res: dict = {
        "chunks": len(texts),
        "questions": len(questions),
        "chunks_per_s": speed,
        "fused_vs_unfused": {
            f"{m}-{p}": speed[f"{m}-{p}-fused"] / speed[f"{m}-{p}-unfused"] for m in models for p in ("float", "int8")
        },
        "e5_vs_minilm": {
            f"{p}-{g}": speed[f"e5-{p}-{g}"] / speed[f"minilm-{p}-{g}"]
            for p in ("float", "int8")
            for g in ("unfused", "fused")
        },
        "agreement": agreement,
    }
    print(json.dumps(res, indent=1), flush=True)
    if not args.skip_settings:
        for m, name in models.items():
            variants = {f"{m}-threads-{t}": OnnxEmbedder(name, quantize=True, threads=t) for t in (0, 1, None)}
            for b in (4, 32):
                variants[f"{m}-batch-{b}"] = emb = OnnxEmbedder(name, quantize=True, batch_size=b)
                emb.run_batch = b
            for emb in variants.values():
                emb.embed_documents(["warm up"])
            s, _ = timed({k: (lambda e=e: e.embed_documents(texts)) for k, e in variants.items()}, 1, len(texts))
            res.setdefault("settings_chunks_per_s", {}).update(s)
        print(json.dumps(res["settings_chunks_per_s"], indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
