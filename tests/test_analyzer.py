"""BM25 analyzers on real Milvus Lite: jieba for Chinese text, standard for English, ``auto`` choosing by script."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ZH_DOCS = Path(__file__).resolve().parent.parent / "samples" / "zh-docs"

# No spaces, as Chinese is written: the standard tokenizer reads the whole question as one token.
ZH_QUESTION = "HNSW的efConstruction参数是什么意思？"


@pytest.fixture
def zh_doc(docs: Path) -> Path:
    (docs / "向量.md").write_text(
        "# 向量索引\n\n向量数据库把文本的含义存成向量，并按相似度检索最接近的段落。\n\n"
        "## 倒排文件\n\n倒排文件索引先把向量分成若干个簇，查询时只在最近的几个簇里搜索。\n",
        encoding="utf-8",
    )
    return docs


def test_jieba_matches_english_identifiers_and_chinese_words(make_index, zh_doc: Path) -> None:
    ix = make_index(bm25_analyzer="jieba")
    assert ix.ingest(zh_doc).failed == 0
    assert ix.store.meta()["analyzer"] == "jieba"
    hits = ix.search(ZH_QUESTION, k=3, mode="bm25")
    assert hits and hits[0].source == "guide/hnsw.md", [h.source for h in hits]
    hits = ix.search("倒排文件怎样查询？", k=3, mode="bm25")  # Chinese words inside a Chinese document
    assert hits and hits[0].source == "向量.md", [h.source for h in hits]
    # English keeps working as with the standard analyzer, and punctuation is not a keyword
    assert ix.search("VACUUM FULL lock", k=1, mode="bm25")[0].source == "page.html"
    assert ix.search("， 。 ( ) .", k=3, mode="bm25") == []


def test_standard_analyzer_is_a_setting_and_stays_with_its_collection(make_index, zh_doc: Path) -> None:
    ix = make_index(bm25_analyzer="standard", query_translation="off")  # the analyzer alone
    assert ix.ingest(zh_doc).failed == 0
    assert ix.store.meta()["analyzer"] == "standard"
    hits = ix.search(ZH_QUESTION, k=3, mode="bm25")  # one token that no chunk holds
    assert all(h.source != "guide/hnsw.md" for h in hits), [h.source for h in hits]
    assert ix.search("VACUUM FULL lock", k=1, mode="bm25")[0].source == "page.html"
    ix.close()
    again = make_index(bm25_analyzer="jieba")  # the collection keeps the analyzer it was built with
    assert again.ingest(zh_doc).unchanged == 5
    assert again.store.meta()["analyzer"] == "standard"


def test_auto_picks_jieba_for_chinese_documents_only(make_index, docs: Path, tmp_path: Path) -> None:
    zh = tmp_path / "zh"
    shutil.copytree(ZH_DOCS, zh)
    ix = make_index(collection="zh")  # the default: auto
    assert ix.ingest(zh).failed == 0
    assert ix.store.meta()["analyzer"] == "jieba"
    hits = ix.search("余弦相似度", k=3, mode="bm25")  # a word inside a Chinese sentence
    assert hits and hits[0].source == "search.md", [h.source for h in hits]
    en = make_index(collection="en")
    assert en.ingest(docs).failed == 0
    assert en.store.meta()["analyzer"] == "standard"
