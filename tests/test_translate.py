"""Query translation: Chinese questions over English documents, through the real dictionary and a real index."""

from __future__ import annotations

from pathlib import Path

import pytest

from askdocs.translate import translate

QUESTIONS = [  # (question, gold) over the `docs` fixture, which is English
    ("真空清理会锁住整个表吗？", "page.html"),  # does VACUUM lock the whole table?
    ("分析器由哪些部分组成？", "intro.rst"),  # what is an analyzer made of?
    ("一个本地文件能被几个进程同时打开？", "notes.txt"),  # how many processes may open one local file?
    ("HNSW 的 efConstruction 参数控制什么？", "guide/hnsw.md"),
]


def test_glosses_keep_identifiers_and_leave_english_alone() -> None:
    q = translate("HNSW 索引的各个参数分别是什么意思？")
    words = q.lower().split()
    assert "hnsw" in words and "index" in words and "parameter" in words, q
    assert not any("\u4e00" <= ch <= "\u9fff" for ch in q), q  # nothing Chinese left to search with
    assert "什么" not in q and "的" not in q
    assert translate("What is HNSW?") == "What is HNSW?"


def test_chinese_questions_find_english_pages(make_index, docs: Path) -> None:
    ix = make_index()
    assert ix.ingest(docs).failed == 0
    assert ix.meta()["analyzer"] == "standard"  # English documents: auto translates Chinese questions
    right = {}
    for setting in ("auto", "off"):
        ix.settings.query_translation = setting
        right[setting] = [ix.search(q, k=1)[0].source == gold for q, gold in QUESTIONS]
    assert all(right["auto"]), right
    assert sum(right["off"]) < len(QUESTIONS), right  # as asked, the English-only model misses some


def test_chinese_documents_are_searched_in_chinese(make_index, tmp_path: Path) -> None:
    import shutil

    zh = tmp_path / "zh"
    shutil.copytree(Path(__file__).resolve().parent.parent / "samples" / "zh-docs", zh)
    ix = make_index(collection="zh")
    ix.ingest(zh)
    question = "怎样给服务器的接口加上密钥？"
    assert ix.search_query(question) == question  # a Chinese collection is asked in Chinese
    ix.settings.query_translation = "dictionary"
    assert ix.search_query(question) != question


@pytest.mark.parametrize("setting", ["auto", "dictionary"])
def test_answer_reports_the_search_query(make_index, docs: Path, setting: str) -> None:
    from askdocs.answer import Answerer
    from askdocs.generate.extractive import ExtractiveGenerator

    ix = make_index(query_translation=setting)
    ix.ingest(docs)
    a = Answerer(ix, ExtractiveGenerator()).ask("真空清理会锁住整个表吗？")
    assert a.query != a.question and "vacuum" in a.query.lower()
    assert not a.refused and any(c.source == "page.html" for c in a.citations), a.answer


def test_search_json_says_what_was_searched(monkeypatch: pytest.MonkeyPatch, db: str, docs: Path) -> None:
    """The README's promise: `search --json` carries the glossed query as `searched_as`, English none."""
    import json

    from typer.testing import CliRunner

    from askdocs.cli import app

    monkeypatch.setenv("ASKDOCS_MILVUS_URI", db)
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", str(docs), "-q"]).exit_code == 0
    zh = json.loads(runner.invoke(app, ["search", "--json", "-k", "1", QUESTIONS[0][0]]).stdout)
    assert "vacuum" in zh["searched_as"].lower() and zh["results"][0]["source"] == "page.html", zh
    en = json.loads(runner.invoke(app, ["search", "--json", "-k", "1", "VACUUM FULL lock"]).stdout)
    assert "searched_as" not in en
