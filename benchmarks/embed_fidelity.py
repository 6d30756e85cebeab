"""How close each CPU embedding backend's vectors are to the packaged MiniLM in float32, and how fast.

The figures behind ``askdocs.embed.default_backend``'s choice and the README's cosines: the same
shuffled sample of chunks embedded as documents by every backend (``make_embedder``), each compared
with sentence-transformers in float32 (cosine per chunk: mean and minimum), with chunks/s beside.

    python benchmarks/embed_fidelity.py ../shared/corpus/milvus-docs --n 1500
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from multilingual_embed import chunks

BACKENDS = ("torch", "torch-bf16", "onnx", "onnx-int8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", nargs="?", default=str(Path(__file__).parent.parent / "samples" / "milvus-docs"))
    ap.add_argument("--n", type=int, default=1500, help="chunks embedded per backend")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "embed_fidelity.md")
    args = ap.parse_args()

    from askdocs.embed import CPU_DEFAULT_MODEL, cpu_has_amx, make_embedder

    texts = chunks(args.corpus, args.n)
    rows, reference = [], None
    for backend in BACKENDS:  # torch first: the float32 reference
        emb = make_embedder(CPU_DEFAULT_MODEL, backend)
        emb.embed_documents(texts[:64])  # load, export once, warm
        t = time.perf_counter()
        vectors = emb.embed_documents(texts)
        seconds = time.perf_counter() - t
        reference = vectors if reference is None else reference
        cos = (vectors * reference).sum(axis=1)
        rows.append((backend, float(cos.mean()), float(cos.min()), len(texts) / seconds))
        print(f"{backend:11s} cosine mean {cos.mean():.5f} min {cos.min():.5f}  {len(texts) / seconds:6.1f} chunks/s")
    lines = [
        "# Embedding backends against float32",
        "",
        f"`python benchmarks/embed_fidelity.py {args.corpus} --n {args.n}`: {len(texts)} chunks of that corpus, "
        f"packaged all-MiniLM-L6-v2, this CPU {'with' if cpu_has_amx() else 'without'} AMX, "
        f"{time.strftime('%Y-%m-%d')}. Cosine of each chunk's vector with sentence-transformers' float32 one.",
        "",
        "| backend | cosine mean | cosine min | chunks/s |",
        "|---|---:|---:|---:|",
        *(f"| {b} | {m:.5f} | {lo:.5f} | {r:.1f} |" for b, m, lo, r in rows),
        "",
    ]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
