"""The vllm backend on a real vLLM engine (vLLM-CPU here), in-process and behind its OpenAI server.

Run with ``make test-vllm`` (its own virtualenv, .venv-vllm); the base suite has no vllm and skips
this module.  The model is a tiny random Llama built in the session's tmp dir (tests/tiny_llama.py):
its text is noise, so the tests assert what the backends promise (one answer per conversation in
input order, token usage that matches the engine's count, streaming in pieces, one-line errors),
never wording.  Engine start costs a minute or more on CPU, so the session shares ONE in-process
engine and ONE server.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tiny_llama import build_tiny_llama
from typer.testing import CliRunner

from askdocs import Index
from askdocs.cli import app
from askdocs.config import Settings
from askdocs.embed import Embedder
from askdocs.errors import AskdocsError
from askdocs.generate import SamplingParams
from askdocs.generate.openai_api import OpenAIGenerator
from askdocs.generate.vllm_engine import VLLMGenerator, _load_error, model_max_positions

# askdocs imports vllm lazily, so everything above imports without it; the tests below need it.
pytest.importorskip("vllm")

pytestmark = pytest.mark.vllm

# vLLM-CPU sizes its KV cache from this (GiB); its own default takes a large share of the machine's memory.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "milvus-docs"
DTYPE = "bfloat16"  # askdocs's default; vLLM-CPU runs it (AVX-512 BF16 here, a slower path elsewhere)
MAX_LEN = 2048
SERVER_START_S = 300
PARAMS = SamplingParams(temperature=0.2, top_p=0.95, max_tokens=12, seed=7)
runner = CliRunner()


def conversation(i: int) -> list[dict[str, str]]:
    """Conversations of clearly different lengths, so prompt_tokens identify which answer is which."""
    return [
        {"role": "system", "content": "Answer from the documents."},
        {"role": "user", "content": f"Question {i}: " + "what does HNSW do with M and efConstruction? " * (i + 1)},
    ]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def engine(tiny_model: Path) -> Iterator[VLLMGenerator]:
    """The session's one in-process engine, built the way ``make_generator`` builds it."""
    gen = VLLMGenerator.from_settings(Settings(dtype=DTYPE, seed=0, max_model_len=MAX_LEN), str(tiny_model))
    yield gen
    gen.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server_url(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """vLLM's OpenAI-compatible server on a free loopback port, killed at teardown.

    ``vllm serve`` is broken in the vllm-cpu 0.32 build, so the module entry point is started instead.
    --enforce-eager skips torch.compile: the in-process engine already covers the compiled path, and
    this build recompiles on every start (its compile cache fails to reload), ~20 s even for this model.
    The server runs in its own process group so that teardown reaches its engine processes too.
    """
    port = _free_port()
    log_path = tmp_path_factory.mktemp("vllm-server") / "server.log"
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_model),
        "--host", "127.0.0.1", "--port", str(port), "--dtype", DTYPE, "--max-model-len", str(MAX_LEN),
        "--seed", "0", "--enforce-eager",
    ]  # fmt: skip
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ["VLLM_CPU_KVCACHE_SPACE"]}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def tail() -> str:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])

    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM server exited with {proc.returncode} while starting:\n{tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vLLM server not healthy after {SERVER_START_S}s:\n{tail()}")
            time.sleep(2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(10)


@pytest.fixture(scope="session")
def client(server_url: str) -> Iterator[OpenAIGenerator]:
    gen = OpenAIGenerator(server_url, timeout=120)
    yield gen
    gen.close()


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> str:
    db = str(tmp_path_factory.mktemp("vllm-answers") / "sample.db")
    with Index(milvus_uri=db, embedder=embedder) as ix:
        report = ix.ingest(SAMPLE)
        assert report.failed == 0 and report.chunks > 100
    return db


# --------------------------------------------------------------------------- errors before any engine


def test_missing_model_folder_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(AskdocsError, match="does not exist"):
        VLLMGenerator.from_settings(Settings(), str(tmp_path / "no-such-model"))


def test_gguf_is_refused_with_the_way_out() -> None:
    from askdocs.generate.local import packaged_gguf

    with pytest.raises(AskdocsError, match=r"cannot read GGUF files.*--llm-backend local"):
        VLLMGenerator.from_settings(Settings(), str(packaged_gguf()))


def test_gated_model_error_names_hf_token() -> None:
    # The OSError transformers raises for a gated repository without a token (offline here: no hub to ask).
    err = OSError(
        "You are trying to access a gated repo.\nMake sure to have access to it at "
        "https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct.\n401 Client Error."
    )
    msg = str(_load_error("meta-llama/Llama-3.1-8B-Instruct", err))
    assert "HF_TOKEN" in msg and "gated" in msg and "\n" not in msg


def test_window_is_capped_by_the_model(tiny_model: Path) -> None:
    assert model_max_positions(str(tiny_model)) == 4096


# --------------------------------------------------------------------------- in-process engine


def test_engine_window_and_name(engine: VLLMGenerator, tiny_model: Path) -> None:
    assert engine.max_context == MAX_LEN
    assert engine.name == str(tiny_model)


def test_generate_one(engine: VLLMGenerator) -> None:
    conv = conversation(0)
    (gen,) = engine.generate([conv], PARAMS)
    assert gen.text
    assert gen.prompt_tokens == engine.count_tokens(conv)
    assert 0 < gen.completion_tokens <= PARAMS.max_tokens
    assert gen.finish_reason in ("stop", "length")


def test_generate_batch_in_input_order(engine: VLLMGenerator) -> None:
    convs = [conversation(i) for i in (4, 0, 2, 5, 1)]
    gens = engine.generate(convs, PARAMS)
    assert len(gens) == len(convs)
    counts = [engine.count_tokens(c) for c in convs]
    assert len(set(counts)) == len(counts), "distinct lengths identify each answer"
    assert [g.prompt_tokens for g in gens] == counts
    assert all(g.completion_tokens > 0 for g in gens)
    assert engine.generate([], PARAMS) == []


def test_count_tokens_matches_engine_multi_turn(engine: VLLMGenerator) -> None:
    conv = [
        *conversation(1),
        {"role": "assistant", "content": "HNSW is a graph index [1]."},
        {"role": "user", "content": "And IVF_FLAT?"},
    ]
    (gen,) = engine.generate([conv], PARAMS)
    assert gen.prompt_tokens == engine.count_tokens(conv)


def test_stream_yields_pieces_and_result(engine: VLLMGenerator) -> None:
    conv = conversation(3)
    params = SamplingParams(temperature=0.2, max_tokens=16, seed=7)
    stream = engine.stream(conv, params)
    pieces = list(stream)
    assert len(pieces) > 1, "the in-process engine streams token by token"
    assert stream.result is not None
    assert stream.result.text == "".join(pieces).strip()
    assert stream.result.prompt_tokens == engine.count_tokens(conv)
    assert 0 < stream.result.completion_tokens <= 16
    # same seed, same prompt: the stream writes what generate writes
    assert engine.generate([conv], params)[0].text == stream.result.text


def test_stream_closed_early_frees_the_engine(engine: VLLMGenerator) -> None:
    pieces = iter(engine.stream(conversation(2), SamplingParams(max_tokens=64, seed=1)))
    assert next(pieces)
    pieces.close()  # the consumer went away: the request is aborted and the lock released
    assert len(engine.generate([conversation(0), conversation(1)], PARAMS)) == 2


def test_too_long_prompt_is_one_line(engine: VLLMGenerator) -> None:
    long = [{"role": "user", "content": "efConstruction " * 4000}]
    with pytest.raises(AskdocsError, match="raise max_model_len") as e:
        engine.generate([conversation(0), long], PARAMS)
    assert "\n" not in str(e.value)
    with pytest.raises(AskdocsError, match="max_model_len"):
        engine.stream(long, PARAMS)
    # an answer that would run past the window is refused too, not silently cut
    conv = conversation(0)
    with pytest.raises(AskdocsError, match="max_model_len"):
        engine.generate([conv], SamplingParams(max_tokens=MAX_LEN - engine.count_tokens(conv) + 1))


# --------------------------------------------------------------------------- OpenAI-compatible server


def test_server_single(client: OpenAIGenerator, tiny_model: Path) -> None:
    assert client.name == str(tiny_model)
    assert client.max_context == MAX_LEN
    conv = conversation(0)
    (gen,) = client.generate([conv], PARAMS)
    assert gen.text
    assert gen.prompt_tokens == client.count_tokens(conv)
    assert 0 < gen.completion_tokens <= PARAMS.max_tokens


def test_server_and_engine_count_alike(client: OpenAIGenerator, engine: VLLMGenerator) -> None:
    """The server's /tokenize and the in-process template agree, so both backends fit prompts alike."""
    for i in range(3):
        assert client.count_tokens(conversation(i)) == engine.count_tokens(conversation(i))


def test_server_stream(client: OpenAIGenerator) -> None:
    conv = conversation(2)
    stream = client.stream(conv, SamplingParams(temperature=0.2, max_tokens=16, seed=7))
    pieces = list(stream)
    assert len(pieces) > 1
    assert stream.result is not None and stream.result.text == "".join(pieces).strip()
    assert stream.result.prompt_tokens == client.count_tokens(conv)
    assert 0 < stream.result.completion_tokens <= 16


def test_server_batch_in_input_order(client: OpenAIGenerator) -> None:
    convs = [conversation(i) for i in (3, 0, 5, 1, 4, 2)]
    gens = client.generate(convs, PARAMS)
    assert [g.prompt_tokens for g in gens] == [client.count_tokens(c) for c in convs]
    assert all(g.text and g.completion_tokens > 0 for g in gens)


def test_server_too_long_prompt_is_one_line(client: OpenAIGenerator) -> None:
    with pytest.raises(AskdocsError, match="max-model-len") as e:
        client.generate([[{"role": "user", "content": "efConstruction " * 4000}]], PARAMS)
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------------- the CLI end to end


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, sample_db: str) -> str:
    monkeypatch.setenv("ASKDOCS_MILVUS_URI", sample_db)
    monkeypatch.setenv("ASKDOCS_EMBED_DEVICE", "cpu")
    monkeypatch.setenv("ASKDOCS_MAX_TOKENS", "12")
    monkeypatch.setenv("ASKDOCS_DTYPE", DTYPE)
    monkeypatch.setenv("ASKDOCS_ENFORCE_EAGER", "true")  # the CLI's own engine: start without torch.compile
    monkeypatch.setenv("ASKDOCS_REFUSE", "false")  # these tests are about the engine: every question reaches it
    return sample_db


QUESTIONS = [
    {"id": "hnsw", "question": "What do the parameters of HNSW mean?"},
    {"id": "lite", "question": "How do I install Milvus Lite?"},
    {"id": "l2", "question": "Why are L2 distances larger than mine?"},
]


def test_cli_ask_through_the_server(cli_env: str, server_url: str) -> None:
    res = runner.invoke(app, ["ask", QUESTIONS[0]["question"], "--llm-url", server_url, "--json", "-k", "3"])
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)
    assert obj["answer"] and len(obj["contexts"]) == 3
    assert obj["usage"]["prompt_tokens"] > 100 and 0 < obj["usage"]["completion_tokens"] <= 12


def test_cli_stream_through_the_server(cli_env: str, server_url: str) -> None:
    res = runner.invoke(app, ["ask", QUESTIONS[0]["question"], "--llm-url", server_url, "-k", "2"])
    assert res.exit_code == 0, res.output
    answer, _, sources = res.stdout.partition("Sources")
    assert answer.strip() and ".md" in sources


def test_cli_batch_on_the_vllm_engine(cli_env: str, tiny_model: Path, tmp_path: Path) -> None:
    """``--llm-backend vllm``: the CLI starts its own engine (minutes on CPU) and answers the file in one batch."""
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("\n".join(json.dumps(q) for q in QUESTIONS) + "\n")
    out = tmp_path / "answers.jsonl"
    args = ["ask", "--llm-backend", "vllm", "--llm-model", str(tiny_model), "--batch", str(qfile), "--out", str(out)]
    res = runner.invoke(app, [*args, "-k", "3"])
    assert res.exit_code == 0, res.output
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["id"] for g in got] == [q["id"] for q in QUESTIONS]
    assert [g["question"] for g in got] == [q["question"] for q in QUESTIONS]
    for g in got:
        assert g["answer"] and len(g["contexts"]) == 3
        assert g["usage"]["prompt_tokens"] > 100 and 0 < g["usage"]["completion_tokens"] <= 12
    assert "3 answers" in res.stderr
