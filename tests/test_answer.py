"""Answers end to end on the CPU default: real Milvus Lite, real MiniLM, real SmolLM2 (transformers).

The 135M model's wording is not asserted; the structure is: the answer exists, its contexts are the
retrieved chunks best first ([1] = the top hit), its citations point at those contexts, usage and timings are filled.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from askdocs import Index, sentences
from askdocs.answer import Answerer, cited_numbers, is_refusal
from askdocs.cli import app
from askdocs.config import load_settings
from askdocs.embed import Embedder
from askdocs.generate import SamplingParams, make_generator
from askdocs.generate.local import LocalGenerator

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "milvus-docs"

runner = CliRunner()
QUESTION = "What do the parameters of HNSW mean?"


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> str:
    db = str(tmp_path_factory.mktemp("answers") / "sample.db")
    with Index(milvus_uri=db, embedder=embedder) as ix:
        report = ix.ingest(SAMPLE)
        assert report.failed == 0 and report.chunks > 100
    return db


@pytest.fixture
def answerer(sample_db: str, embedder: Embedder, local_llm: LocalGenerator):
    ix = Index(milvus_uri=sample_db, embedder=embedder, max_tokens=24, temperature=0.0, top_k=4)
    yield Answerer(ix, local_llm)
    ix.close()


def check_answer(answer, question: str, search_hits) -> None:
    assert answer.question == question
    assert answer.answer.strip(), "the model wrote something"
    # contexts are the retrieved chunks best first, numbered 1..k as search ranks them ([1] is the top hit)
    assert [c.id for c in answer.contexts] == [h.id for h in search_hits]
    assert [c.n for c in answer.contexts] == list(range(1, len(search_hits) + 1))
    by_n = {c.n: c for c in answer.contexts}
    for c in answer.citations:
        assert by_n[c.n] == c, "a citation is one of the prompt's documents"
    assert answer.usage["prompt_tokens"] > 100 and 0 < answer.usage["completion_tokens"] <= 24
    assert set(answer.timings) >= {"embed", "search", "generate"}
    assert all(v >= 0 for v in answer.timings.values())


def test_ask_answers_from_retrieved_chunks(answerer: Answerer) -> None:
    hits = answerer.index.search(QUESTION, k=4)
    assert {"reference/index.md", "integrations/milvus_rag_with_vllm.md"} & {h.source for h in hits}
    answer = answerer.ask(QUESTION)
    check_answer(answer, QUESTION, hits)
    d = answer.to_dict()
    assert set(d) == {
        "question",
        "answer",
        "citations",
        "contexts",
        "timings",
        "usage",
        "finish_reason",
        "sentences",
        "refused",
    }
    assert d["refused"] is False, "an answerable question is not refused"
    assert all({"text", "supported"} <= set(s) for s in d["sentences"])
    assert set(d["contexts"][0]) == {"n", "source", "section", "text", "score"}


def test_stream_gives_contexts_first_then_the_same_answer_piece_by_piece(answerer: Answerer) -> None:
    stream = answerer.stream(QUESTION)
    assert len(stream.contexts) == 4 and stream.answer is None
    pieces = list(stream)
    assert len(pieces) > 1, "streamed, not one block"
    assert stream.answer is not None
    assert "".join(pieces).strip() == stream.answer.answer
    check_answer(stream.answer, QUESTION, answerer.index.search(QUESTION, k=4))


def test_batch_keeps_input_order(answerer: Answerer) -> None:
    questions = ["How do I install Milvus Lite?", QUESTION, "What is a partition key?"]
    answers = answerer.ask_many(questions)
    assert [a.question for a in answers] == questions
    for q, a in zip(questions, answers, strict=True):
        check_answer(a, q, answerer.index.search(q, k=4))


def test_chat_follow_up_is_rewritten_before_retrieval(answerer: Answerer) -> None:
    history = [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": "M is the maximum degree and efConstruction the build search range [4]."},
    ]
    stream = answerer.stream("and what about IVF?", history=history)
    answer = stream.result()
    assert answer.query.strip() and "rewrite" in answer.timings
    # the history travels to the model between the system prompt and the new question
    roles = [m["role"] for m in stream.prepared.prompt.messages]
    assert roles == ["system", "user", "assistant", "user"]


def test_context_window_is_respected(answerer: Answerer, local_llm: LocalGenerator) -> None:
    prep = answerer.prepare_many([QUESTION], params=SamplingParams(max_tokens=local_llm.max_context - 300))[0]
    assert prep.prompt.prompt_tokens <= 300 and prep.prompt.dropped >= 1
    assert local_llm.count_tokens(prep.prompt.messages) == prep.prompt.prompt_tokens


def test_backend_choice() -> None:
    assert make_generator(load_settings(llm_backend="none")).name == "none"
    from askdocs.generate import resolve_backend

    assert resolve_backend(load_settings(llm_url="http://x:8000/v1")) == "openai"
    assert resolve_backend(load_settings(llm_backend="auto")) in ("extractive", "vllm")


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, sample_db: str) -> str:
    monkeypatch.setenv("ASKDOCS_MILVUS_URI", sample_db)
    monkeypatch.setenv("ASKDOCS_EMBED_DEVICE", "cpu")
    monkeypatch.setenv("ASKDOCS_MAX_TOKENS", "24")
    monkeypatch.setenv("ASKDOCS_LLM_BACKEND", "local")  # these tests are about the generative path
    return sample_db


def test_cli_ask_json(cli_env: str) -> None:
    res = runner.invoke(app, ["ask", QUESTION, "--json", "-k", "3"])
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)
    assert obj["question"] == QUESTION and obj["answer"]
    assert len(obj["contexts"]) == 3
    assert {c["n"] for c in obj["citations"]} <= {c["n"] for c in obj["contexts"]}
    assert set(obj["timings"]) >= {"embed", "search", "generate"}
    assert obj["usage"]["completion_tokens"] > 0


class QuotingLLM(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat server that records each prompt and streams back one sentence quoted
    from the document the prompt numbers [1], cited [1]: what the numbering means is then visible from
    both ends, in the prompt askdocs sends and in the answer it ties back to sources."""

    prompts: ClassVar[list[list[dict[str, str]]]] = []

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(200, json.dumps({"object": "list", "data": [{"id": "quoter", "object": "model"}]}).encode())

    def do_POST(self) -> None:
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not self.path.endswith("/chat/completions"):
            self._send(404, b'{"error": {"message": "no such route"}}')
            return
        self.prompts.append(req["messages"])
        doc1 = re.search(r'<doc id="1"[^>]*>\n(.*?)\n</doc>', req["messages"][-1]["content"], re.S)
        body = doc1.group(1) if doc1 else ""
        quote = next(
            (t for sp in sentences.split(body) if sp.kind == "sentence" and len((t := sp.of(body)).split()) >= 5), ""
        )
        answer = f"{quote} [1]"
        chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "quoter"}
        events = [
            {**chunk, "choices": [{"index": 0, "delta": {"content": answer}, "finish_reason": None}]},
            {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {**chunk, "choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}},
        ]
        sse = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        self._send(200, sse.encode(), "text/event-stream")


@pytest.fixture
def quoting_llm() -> Iterator[str]:
    QuotingLLM.prompts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), QuotingLLM)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_cli_ask_json_numbers_best_first_prompt_keeps_best_last(cli_env: str, quoting_llm: str) -> None:
    """[1] is the top search hit in `ask --json` as in `search`; the prompt counts down to it, next to the question."""
    res = runner.invoke(app, ["search", QUESTION, "--json", "-k", "3"])
    assert res.exit_code == 0, res.output
    ranked = json.loads(res.stdout)["results"]
    res = runner.invoke(app, ["ask", QUESTION, "--json", "-k", "3", "--llm-url", quoting_llm, "--llm-backend", "auto"])
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)
    assert [c["n"] for c in obj["contexts"]] == [1, 2, 3]
    assert [(c["source"], c["text"]) for c in obj["contexts"]] == [(h["source"], h["text"]) for h in ranked]
    # the prompt: the same numbers, written best last ("[3] ... [2] ... [1]" then the question)
    (messages,) = QuotingLLM.prompts
    user = messages[-1]["content"]
    docs = re.findall(r'<doc id="(\d+)" source="([^"]+)"[^>]*>\n(.*?)\n</doc>', user, re.S)
    assert [d[0] for d in docs] == ["3", "2", "1"]
    assert docs[-1][1] == ranked[0]["source"] and docs[-1][2] == ranked[0]["text"]
    assert user.rindex("</doc>") < user.index("<question>")
    # the LLM quoted the chunk it was shown as [1]: the citation resolves to the top hit and checks as supported
    quote = obj["answer"].removesuffix(" [1]")
    assert quote and quote in ranked[0]["text"]
    assert [(c["n"], c["source"]) for c in obj["citations"]] == [(1, ranked[0]["source"])]
    assert [(s["cites"], s["supported"]) for s in obj["sentences"]] == [([1], True)]


def test_cli_ask_streams_then_lists_sources(cli_env: str) -> None:
    res = runner.invoke(app, ["ask", QUESTION, "-k", "3"])
    assert res.exit_code == 0, res.output
    answer, _, sources = res.stdout.partition("Sources")
    assert answer.strip()
    assert len([line for line in sources.splitlines() if "[" in line and ".md" in line]) == 3


def test_cli_batch_jsonl_in_order(cli_env: str, tmp_path: Path) -> None:
    qfile = tmp_path / "q.jsonl"
    rows = [{"id": "a", "question": "How do I install Milvus Lite?"}, {"id": "b", "question": QUESTION}]
    qfile.write_text("\n".join(json.dumps(r) for r in rows) + "\nWhat is a collection?\n")
    out = tmp_path / "answers.jsonl"
    res = runner.invoke(app, ["ask", "--batch", str(qfile), "--out", str(out), "-k", "2"])
    assert res.exit_code == 0, res.output
    got = [json.loads(x) for x in out.read_text().splitlines()]
    assert [g.get("id") for g in got] == ["a", "b", None]
    assert [g["question"] for g in got] == [rows[0]["question"], QUESTION, "What is a collection?"]
    assert all(g["answer"] and len(g["contexts"]) == 2 for g in got)
    assert "3 answers" in res.stderr


def test_cli_none_backend_prints_passages(cli_env: str) -> None:
    res = runner.invoke(app, ["ask", QUESTION, "--llm-backend", "none", "-k", "2"])
    assert res.exit_code == 0, res.output
    assert res.stdout.count("[") >= 2 and ".md" in res.stdout


def test_cli_chat_two_turns(cli_env: str) -> None:
    res = runner.invoke(app, ["chat", "-k", "2"], input=f"{QUESTION}\nand what about IVF?\n\n")
    assert res.exit_code == 0, res.output
    assert res.stdout.count("Sources") == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--llm-backend", "auto", "--llm-url", "http://127.0.0.1:9/v1"],
            "cannot reach the LLM server at http://127.0.0.1:9/v1",
        ),
        (["--llm-backend", "local", "--llm-model", "/nonexistent/model"], "cannot load LLM"),
        (["--prompt-file", "/nonexistent.toml"], "cannot read prompt file"),
    ],
)
def test_cli_errors_are_one_line(cli_env: str, args: list[str], message: str) -> None:
    res = runner.invoke(app, ["ask", QUESTION, *args])
    assert res.exit_code == 1
    assert message in res.stderr
    assert "Traceback" not in res.output


# --------------------------------------------------------------------------- citations and refusals, pure


def test_citation_parsing() -> None:
    assert cited_numbers("HNSW uses M [3] and ef [1, 3]; see also [2][9] and [0].", 5) == [3, 1, 2]
    assert cited_numbers("no citations here, just [a] and [ 1 ]", 5) == []


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("The documents do not contain the answer.", True),
        ("The provided documents don't mention the capital of France.", True),
        ("There is no information about that in the context.", True),
        ("HNSW has parameters M and efConstruction [2].", False),
        ("Milvus does not support sparse vectors in version 2.3 [1].", False),
    ],
)
def test_refusal_detection(text: str, refused: bool) -> None:
    assert is_refusal(text) is refused
