"""Grounded answers: sentence units, the support rule, the extractive backend, refusal before generation.

Real parts throughout: the packaged MiniLM, Milvus Lite over a slice of the bundled sample, the
extractive backend.  The one test double is a generator that counts its calls, because what the refusal
test asserts is precisely that no generator was called.
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from askdocs import Index
from askdocs.answer import Answerer, drop_unknown_citations
from askdocs.cli import app
from askdocs.embed import Embedder
from askdocs.generate.base import BaseGenerator, Generation, Message, SamplingParams
from askdocs.generate.extractive import ExtractiveGenerator
from askdocs.sentences import sentences, split
from askdocs.support import answer_units, check_answer, citations, strip_citations, supports

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "milvus-docs"
FILES = ["reference/index.md", "reference/metric.md", "reference/gpu_index.md", "getstarted/milvus_lite.md"]
REFUSAL = "The documents do not contain the answer."

# --------------------------------------------------------------------------- sentence units


def test_units_keep_code_tables_and_list_items_whole() -> None:
    text = (
        "## HNSW\n\nHNSW is a graph index. It takes M, e.g. 16, and ef. Version 2.4 adds more!\n\n"
        "```python\nindex_params = {'M': 8}\nclient.create_index(x)\n```\n\n"
        "| Parameter | Range |\n|---|---|\n| `M` | [2, 2048] |\n\n"
        "- `efConstruction`: search range. It is used when building.\n  continued here\n"
        "- `ef`: search range at query time\n"
    )
    got = sentences(text)
    assert got == [
        "## HNSW",
        "HNSW is a graph index.",
        "It takes M, e.g. 16, and ef.",
        "Version 2.4 adds more!",
        "```python\nindex_params = {'M': 8}\nclient.create_index(x)\n```",
        "| Parameter | Range |\n|---|---|\n| `M` | [2, 2048] |",
        "- `efConstruction`: search range. It is used when building.\n  continued here",
        "- `ef`: search range at query time",
    ]
    assert [s.kind for s in split(text)][3:7] == ["sentence", "code", "table", "item"]


def test_units_cjk_punctuation_and_cut_code() -> None:
    assert sentences("Milvus 支持 HNSW。它很快！真的吗？是的") == ["Milvus 支持 HNSW。", "它很快！", "真的吗？", "是的"]
    cut = split("Run this:\n\n```python\nx = 1\n")  # a chunk boundary inside a fence
    assert [s.kind for s in cut] == ["sentence", "fragment"]


def test_units_of_real_chunks_are_verbatim_spans(embedder: Embedder, tmp_path: Path) -> None:
    """Markdown and HTML chunks as askdocs makes them: every unit is an exact span, in order, fences balanced."""
    (tmp_path / "page.html").write_text(
        "<html><body><nav>Home | Docs</nav><h1>VACUUM</h1><p>VACUUM reclaims storage. VACUUM FULL rewrites "
        "the table! Is it slow? Yes.</p><pre>VACUUM (VERBOSE, ANALYZE) onek;</pre><ul><li>FULL: more "
        "space.</li><li>FREEZE: aggressive.</li></ul></body></html>",
        encoding="utf-8",
    )
    shutil.copy(SAMPLE / "reference" / "index.md", tmp_path / "index.md")
    with Index(milvus_uri=str(tmp_path / "u.db"), embedder=embedder) as ix:
        ix.ingest(tmp_path)
        hits = ix.search("VACUUM FULL rewrites", k=3) + ix.search("HNSW parameters code", k=5)
    assert {h.source for h in hits} == {"page.html", "index.md"}
    for h in hits:
        spans = split(h.text)
        assert spans and all(a.end <= b.start for a, b in itertools.pairwise(spans))
        for s in spans:
            assert s.of(h.text).strip() == s.of(h.text)
            if s.kind == "code":
                assert s.of(h.text).count("```") == 2


# --------------------------------------------------------------------------- the support rule

CHUNK = (
    "HNSW (Hierarchical Navigable Small World Graph) is a graph-based indexing algorithm. In order to improve "
    "performance, HNSW limits the maximum degree of nodes on each layer of the graph to `M`. In addition, you "
    "can use `efConstruction` (when building index) or `ef` (when searching targets) to specify a search "
    "range. GPU_CAGRA uses about 1.8 times the memory of the raw data."
)


@pytest.mark.parametrize(
    "sentence",
    [
        "HNSW limits the maximum degree of nodes on each layer of the graph to `M`. [1]",  # verbatim
        "HNSW caps the maximum degree of nodes on every graph layer at M [1].",  # paraphrase, same names
        "efConstruction sets the search range when building the index, ef when searching [1].",
        "GPU_CAGRA needs roughly 1.8 times the memory of the raw data [1].",
    ],
)
def test_supported(sentence: str) -> None:
    assert supports(strip_citations(sentence), CHUNK).supported


@pytest.mark.parametrize(
    ("sentence", "why"),
    [
        ("HNSW limits the maximum degree of nodes to maxDeg.", "maxdeg"),  # an invented name
        ("GPU_CAGRA uses about 2.5 times the memory of the raw data.", "2.5"),  # a wrong number
        ("HNSW stores vectors on disk and compresses them with product quantization.", "words"),
        ("The IVF_FLAT index divides vectors into nlist clusters.", "ivf_flat"),
    ],
)
def test_unsupported(sentence: str, why: str) -> None:
    v = supports(sentence, CHUNK)
    assert not v.supported
    assert why in v.reason


def test_answer_check_citations_and_refusal() -> None:
    chunks = ["Milvus Lite is a Python library.", CHUNK]
    answer = (
        "Milvus Lite is a Python library [1]. HNSW limits the maximum degree of nodes to `M` [2]. "
        "It also supports eleven other index types for your vectors. HNSW uses maxDeg [2]. Bad link [7]."
    )
    checks = check_answer(answer, chunks)
    assert [(c.cites, c.supported) for c in checks] == [
        ([1], True),
        ([2], True),
        ([], False),
        ([2], False),
        ([7], False),
    ]
    assert [c.reason for c in check_answer(REFUSAL, chunks, is_refusal=lambda t: t == REFUSAL)] == ["refusal"]
    assert answer_units("A sentence. [1] Another one [2].") == ["A sentence. [1]", "Another one [2]."]


def test_citations_to_no_retrieved_chunk_are_removed() -> None:
    assert drop_unknown_citations("A [1]. B [2, 9]. C [9]. D [0]", 5) == "A [1]. B [2]. C. D"
    assert drop_unknown_citations("A [1]. [9] is gone.", 5) == "A [1]. is gone."


# --------------------------------------------------------------------------- answers over the sample


class CountingGenerator(BaseGenerator):
    """Answers "ok [1]" and counts how often it was asked."""

    name = "counting"

    def __init__(self) -> None:
        self.calls = 0

    def generate(self, conversations: Sequence[Sequence[Message]], params: SamplingParams) -> list[Generation]:
        self.calls += len(conversations)
        return [Generation("HNSW limits the maximum degree of nodes [1].", 10, 5, "stop") for _ in conversations]


@pytest.fixture(scope="module")
def slice_db(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> str:
    root = tmp_path_factory.mktemp("slice")
    for f in FILES:
        (root / "docs" / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLE / f, root / "docs" / f)
    db = str(root / "slice.db")
    with Index(milvus_uri=db, embedder=embedder) as ix:
        assert ix.ingest(root / "docs").failed == 0
    return db


@pytest.fixture
def index(slice_db: str, embedder: Embedder):
    with Index(milvus_uri=slice_db, embedder=embedder, top_k=4) as ix:
        yield ix


@pytest.mark.parametrize(
    "question",
    ["What do the parameters of HNSW mean?", "How much memory does GPU_CAGRA use?", "How do I install Milvus Lite?"],
)
def test_extractive_answer_is_verbatim_and_cited(index: Index, question: str) -> None:
    answer = Answerer(index, ExtractiveGenerator()).ask(question)
    assert not answer.refused and answer.citations
    by_n = {c.n: c for c in answer.contexts}
    for unit in answer_units(answer.answer):
        cites = citations(unit)
        assert len(cites) == 1, unit
        assert strip_citations(unit) in by_n[cites[0]].text, "a verbatim span of the chunk it cites"
    assert answer.sentences and all(s.supported for s in answer.sentences)


def test_extractive_streams_the_same_answer(index: Index) -> None:
    answerer = Answerer(index, ExtractiveGenerator())
    stream = answerer.stream("What is the metric for binary vectors?")
    pieces = list(stream)
    assert len(pieces) >= 1 and "".join(pieces) == stream.answer.answer


def test_unanswerable_is_refused_without_calling_the_generator(index: Index) -> None:
    gen = CountingGenerator()
    answerer = Answerer(index, gen)
    a = answerer.ask("How do I install the pgvector extension and create an index on an embedding column?")
    assert a.refused and a.answer == REFUSAL and gen.calls == 0
    zh = answerer.ask("如何配置 PgBouncer 的 transaction pooling 模式？")
    assert zh.answer == "文档中没有答案。" and gen.calls == 0
    streamed = answerer.stream("Can Milvus export its metrics directly to Datadog?")
    assert "".join(streamed) == REFUSAL and gen.calls == 0
    ok = answerer.ask("What do the parameters of HNSW mean?")
    assert not ok.refused and gen.calls == 1
    off = Answerer(index, gen, index.settings.model_copy(update={"refuse": False}))
    off.ask("Can Milvus export its metrics directly to Datadog?")
    assert gen.calls == 2


def test_cli_extractive_json(slice_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASKDOCS_MILVUS_URI", slice_db)
    res = CliRunner().invoke(app, ["ask", "--llm-backend", "extractive", "--json", "How do I install Milvus Lite?"])
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)
    assert obj["citations"] and obj["sentences"] and all(s["supported"] for s in obj["sentences"])


# --------------------------------------------------------------------------- chat follow-ups and the server


def test_follow_up_keeps_the_subject_without_a_capable_llm(index: Index) -> None:
    """A scripted conversation: the follow-up's search query carries the new subject and the old question."""
    answerer = Answerer(index, ExtractiveGenerator())
    first = answerer.stream("What do the parameters of HNSW mean?").result()
    history = [
        {"role": "user", "content": first.question},
        {"role": "assistant", "content": first.answer},
    ]
    follow = answerer.stream("and what about IVF_FLAT?", history=history).result()
    assert follow.query == "and what about IVF_FLAT? parameters HNSW"
    assert any("IVF_FLAT" in c.text for c in follow.contexts)
    assert all(s.supported for s in follow.sentences)


def test_llm_rewrite_kept_only_when_sane() -> None:
    from askdocs.followup import sane

    history = [{"role": "user", "content": "What is HNSW?"}, {"role": "assistant", "content": "A graph index [1]."}]
    assert not sane("What a great question!", history, "and what about IVF_FLAT?")
    assert not sane("How do I bake bread?", history, "and what about IVF_FLAT?")
    assert sane("What is IVF_FLAT?", history, "and what about IVF_FLAT?")


def test_server_extractive_answers_refuses_and_flags_sentences(slice_db: str, embedder: Embedder) -> None:
    import httpx
    from servers import Running, free_port

    from askdocs.config import Settings
    from askdocs.server import create_app

    settings = Settings(milvus_uri=slice_db, top_k=4, llm_backend="extractive")
    app = create_app(settings, generator=ExtractiveGenerator(), embedder=embedder)
    with Running(app, free_port()) as server, httpx.Client(base_url=server.url, timeout=120) as http:
        body = {"model": "askdocs", "messages": [{"role": "user", "content": "How do I install Milvus Lite?"}]}
        r = http.post("/v1/chat/completions", json=body).json()
        assert "[" in r["choices"][0]["message"]["content"]
        assert r["sentences"] and all(s["supported"] for s in r["sentences"])
        assert any(s["cited"] for s in r["sources"])
        body["messages"][0]["content"] = "Can Milvus export its metrics directly to Datadog?"
        r = http.post("/v1/chat/completions", json=body).json()
        assert r["choices"][0]["message"]["content"] == REFUSAL
        with http.stream("POST", "/api/ask", json={"question": "How much memory does GPU_CAGRA use?"}) as s:
            events = [line for line in s.iter_lines() if line.startswith("data:")]
        done = json.loads(events[-1][5:])
        assert done["citations"] and all(x["supported"] for x in done["sentences"])


def test_agreement_of_dense_and_bm25_documents() -> None:
    from askdocs.evidence import agreement

    assert agreement(["a", "b", "c"], ["a", "d"]) == {"agree_top": 1.0, "agree5": 0.2}
    assert agreement(["b", "a"], ["a", "b"]) == {"agree_top": 0.0, "agree5": 0.4}
    assert agreement([], ["a"]) == {"agree_top": 0.0, "agree5": 0.0}


def test_missing_names_and_numbers_in_the_retrieved_chunks() -> None:
    from askdocs.evidence import missing_names
    from askdocs.store import Hit

    hits = [Hit("1", 1.0, "a.md", "Milvus Backup", "Overview", "Milvus Backup copies a collection in 2 steps.")]
    assert missing_names("How does Milvus Backup copy a collection?", hits) == 0
    assert missing_names("Does Milvus Backup run on Docker Swarm?", hits) == 2  # docker, swarm
    assert missing_names("How long does a 10 TB collection take, in 2 steps?", hits) == 2  # 10 and TB
    assert missing_names("What does Milvus Backup do (3)?", hits) == 0  # a lone digit says nothing
    assert missing_names("What does Backup do?", hits) == 0  # the first word is capitalised anyway
    assert missing_names("What does copy_collection do?", hits) == 1  # every part is there, the name is not
    assert missing_names("Can Milvus Backup take Google-style input?", hits) == 0  # a modifier, not a name
    assert missing_names("What does Milvus_Backup do?", hits) == 1


def test_extractive_quotes_only_the_best_supported_document() -> None:
    from askdocs.evidence import Evidence, Scored
    from askdocs.generate.extractive import select

    def unit(n: int, text: str, score: float, start: int = 0) -> Scored:
        return Scored(n, text, "sentence", start, score, 0.0)

    # one strong sentence on page b loses to page a's several good ones; page b is not quoted at all
    ev = Evidence(
        "How does the flux index build its graph?",
        [
            unit(1, "The flux index links every vector to its nearest neighbours in layers.", 0.8),
            unit(1, "Building the flux index takes longer when the layers are wider.", 0.75, 80),
            unit(1, "Each layer of the graph keeps fewer vectors than the layer below.", 0.7, 160),
            unit(2, "An integration guide mentions that graphs of vectors power its search.", 0.9),
        ],
        sources={1: "a.md", 2: "b.md"},
    )
    assert {u.n for u in select(ev)} == {1}


def _quoted(question: str, hit, embedder: Embedder):
    """The evidence gathered from one hit, and the extractive backend's answer from it."""
    from askdocs.evidence import gather

    gen = ExtractiveGenerator()
    ev = gather(question, [hit], embedder)
    return ev, gen.generate([gen.messages_for(ev)], SamplingParams())[0].text


def test_extractive_quotes_the_term_a_paragraph_defines_and_what_this_points_back_to(embedder: Embedder) -> None:
    """Reference pages name a setting on a line of its own and describe it below; quoting the description
    alone would answer "which setting?" without the setting. A sentence opening "Moreover, this function"
    comes with the sentences that name the function."""
    from askdocs.store import Hit

    text = (
        "log_min_duration_statement (integer)\n\nCauses the duration of each completed statement to be logged "
        "if the statement ran for at least the specified amount of time. For example, if you set it to 250ms "
        "then all SQL statements that run 250ms or longer will be logged.\n\n"
        "websearch_to_tsquery creates a tsquery value from querytext using an alternative syntax. Unlike "
        "plainto_tsquery, it also recognizes certain operators. Moreover, this function will never raise "
        "syntax errors, which makes it possible to use raw user-supplied input for search."
    )
    hit = Hit("1", 1.0, "logging.html", "Logging", "When to Log", text)
    for question, name in (
        ("Which setting logs every statement that runs longer than 250 ms?", "log_min_duration_statement"),
        ("Which function takes raw user-supplied search input without syntax errors?", "websearch_to_tsquery"),
    ):
        ev, answer = _quoted(question, hit, embedder)
        assert name in answer, answer
        assert all(u.text in text for u in ev.units)  # still quotes, never writes


def test_extractive_quotes_every_term_of_an_announced_definition_list(embedder: Embedder) -> None:
    from askdocs.store import Hit

    text = (
        "PostgreSQL offers built-in support for the following forms of partitioning:\n\n"
        "Range Partitioning\n\nThe table is partitioned into ranges defined by a key column.\n\n"
        "List Partitioning\n\nThe table is partitioned by explicitly listing which key values appear in each.\n\n"
        "Hash Partitioning\n\nThe table is partitioned by specifying a modulus and a remainder for each partition."
    )
    hit = Hit("1", 1.0, "ddl-partitioning.html", "Partitioning", "Overview", text)
    _, answer = _quoted("Which forms of partitioning does PostgreSQL support?", hit, embedder)
    assert all(f"{t} Partitioning" in answer for t in ("Range", "List", "Hash")), answer


def test_question_parts() -> None:
    from askdocs.evidence import question_parts

    assert question_parts(
        "If I CLUSTER a table on an index, does it stay ordered as rows are added, and does the command block "
        "other sessions?"
    ) == [
        "If I CLUSTER a table on an index, does it stay ordered as rows are added",
        "does the command block other sessions?",
    ]
    assert question_parts("How can I speed up pg_upgrade, and what's the downside?") == [
        "How can I speed up pg_upgrade",
        "what's the downside?",
    ]
    # one question with a list in it
    assert question_parts("How do I abort with my own error message and a specific SQLSTATE code?") == []
    assert question_parts("What do the parameters of HNSW mean?") == []


def test_extractive_answers_each_part_of_a_two_part_question(embedder: Embedder) -> None:
    """Scored as one, every best sentence answers the first part (ordering) and the lock is never quoted."""
    from askdocs.store import Hit

    text = (
        "When a table is clustered, it is physically reordered based on the index information. Clustering is a "
        "one-time operation: when the table is subsequently updated, the changes are not clustered. That is, no "
        "attempt is made to store new or updated rows according to their index order. If one wishes, one can "
        "periodically recluster by issuing the command again. Setting the table's fillfactor to less than 100% "
        "can aid in preserving cluster ordering during updates, since updated rows are kept on the same page.\n\n"
        "When a table is being clustered, an ACCESS EXCLUSIVE lock is acquired on it. This prevents any other "
        "database operations (both reads and writes) from operating on the table until the CLUSTER is finished."
    )
    hit = Hit("1", 1.0, "sql-cluster.html", "CLUSTER", "Notes", text)
    question = (
        "If I CLUSTER a table on an index, does it stay ordered as rows are added, and does the command block "
        "other sessions?"
    )
    ev, answer = _quoted(question, hit, embedder)
    assert "index order" in answer and "ACCESS EXCLUSIVE" in answer, answer
    assert all(len(u.parts) == 2 for u in ev.units)
    # asked alone, the first part is answered as before: ordering only
    _, first = _quoted(question.split(", and")[0] + "?", hit, embedder)
    assert "index order" in first and "ACCESS EXCLUSIVE" not in first, first


def test_a_hit_that_announces_a_list_is_continued() -> None:
    from askdocs.retrieve import CONTINUE_CHARS, announces, continued
    from askdocs.store import Hit

    assert announces("Some text.\n\nPostgreSQL offers the following forms of partitioning:")
    assert announces("Some text.\n\nthe following forms of partitioning:\n\nRange Partitioning")
    assert not announces("Some text.\n\nRange partitioning splits a table by ranges.")
    assert not announces("Note: this is a sentence that happens to hold a colon.")

    doc = "intro:\n\nRange\n\nBy ranges.\n\nList\n\nBy values.\n\n## Next section\n\nOther things."
    head = Hit("a", 1.0, "d.html", "D", "", doc[:13], chunk_index=0, start=0, end=13, root="/r")
    nxt = [
        Hit("b", 0.0, "d.html", "D", "", doc[8:30], chunk_index=1, start=8, end=30, root="/r"),
        Hit("c", 0.0, "d.html", "D", "", doc[25:], chunk_index=2, start=25, end=len(doc), root="/r"),
    ]
    whole = continued(head, nxt)
    assert whole.text == doc[: doc.index("## Next")].rstrip()  # each overlap once, and not past the heading
    assert whole.end == doc.index("## Next")
    # a next chunk whose overlap does not match (the document changed) adds nothing
    assert continued(head, [Hit("b", 0.0, "d.html", "D", "", "XXXX" + doc[12:30], 1, start=8, end=30)]) == head
    long = Hit("b", 0.0, "d.html", "D", "", doc[8:13] + "x" * 5000, chunk_index=1, start=8, end=5013, root="/r")
    assert len(continued(head, [long]).text) == len(head.text) + CONTINUE_CHARS


def test_extractive_quotes_a_list_the_chunker_cut_off(tmp_path: Path, embedder: Embedder) -> None:
    """The chunk that announces the list ends at its first term; the rest is in the next chunks, which
    the answer's search fetches (``SearchOptions.whole_lists``) while ``search`` shows the chunk as stored."""
    from askdocs.retrieve import SearchOptions, announces

    # four filler sentences put the chunk boundary right after the list's first term
    filler = " ".join(f"Partitioned tables help when a table grows past memory, note {i}." for i in range(4))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "partitioning.md").write_text(
        "# Table Partitioning\n\n"
        f"{filler}\n\nPostgreSQL offers built-in support for the following forms of partitioning:\n\n"
        "Range Partitioning\n\nThe table is partitioned into ranges defined by a key column or set of columns, "
        "with no overlap between the ranges of values assigned to different partitions.\n\n"
        "List Partitioning\n\nThe table is partitioned by explicitly listing which key values appear in each "
        "partition.\n\nHash Partitioning\n\nThe table is partitioned by specifying a modulus and a remainder "
        "for each partition.\n"
    )
    with Index(milvus_uri=str(tmp_path / "p.db"), embedder=embedder, top_k=1, search_mode="dense") as ix:
        ix.ingest(tmp_path / "docs")
        question = "Which forms of partitioning does PostgreSQL offer built-in support for?"
        top = ix.search(question)[0]
        assert announces(top.text) and "Hash" not in top.text, top.text  # the case this is about
        whole = ix.search(question, SearchOptions(whole_lists=True))[0]
        assert "Hash Partitioning" in whole.text and whole.text.startswith(top.text)
        answer = Answerer(ix, ExtractiveGenerator(), ix.settings.model_copy(update={"refuse": False})).ask(question)
    assert all(f"{t} Partitioning" in answer.answer for t in ("Range", "List", "Hash")), answer.answer
