"""The ``askdocs`` command line, a thin typer layer over ``askdocs.Index``.

Heavy modules (torch, sentence-transformers, pymilvus) are imported inside the
commands, so ``askdocs --help`` answers at once.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="askdocs",
    help="Answers from your own documents, with sources. Ingest folders into Milvus, then search, ask or serve them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

_state: dict[str, Any] = {"debug": False}


def _quiet_libraries() -> None:
    """Progress bars and chatter from the libraries underneath are not ours to show."""
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # the in-process engine's start-up log
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    for name in ("sentence_transformers", "transformers", "huggingface_hub", "pymilvus", "milvus_lite", "trafilatura"):
        logging.getLogger(name).setLevel(logging.ERROR)


UriOpt = Annotated[
    Optional[str], typer.Option("--uri", help="Milvus Lite file or server URI [env: ASKDOCS_MILVUS_URI]")
]
TokenOpt = Annotated[Optional[str], typer.Option("--token", help="Milvus token [env: ASKDOCS_MILVUS_TOKEN]")]
CollOpt = Annotated[Optional[str], typer.Option("--collection", "-c", help="Collection [env: ASKDOCS_COLLECTION]")]
ModelOpt = Annotated[
    Optional[str], typer.Option("--embed-model", help="sentence-transformers model [env: ASKDOCS_EMBED_MODEL]")
]

BackendEmbedOpt = Annotated[
    Optional[str],
    typer.Option("--embed-backend", help="torch, onnx or onnx-int8 [env: ASKDOCS_EMBED_BACKEND]"),
]


def _index(uri: str | None, token: str | None, collection: str | None, **more: Any):
    from askdocs.config import load_settings
    from askdocs.index import Index

    try:
        settings = load_settings(milvus_uri=uri, milvus_token=token, collection=collection, **more)
    except Exception as exc:  # pydantic.ValidationError: bad setting values
        raise _fail(f"invalid settings: {exc}") from None
    return Index(settings)


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(1)


def _run(fn, *args: Any, **kwargs: Any) -> Any:
    """Turn askdocs errors into one clear line and exit 1; keep tracebacks for --debug."""
    from askdocs.errors import AskdocsError

    try:
        return fn(*args, **kwargs)
    except AskdocsError as exc:
        if _state["debug"]:
            raise
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    _state["debug"] = debug
    _quiet_libraries()


# --------------------------------------------------------------------------- ingest


class _RichProgress:
    """Files and chunks per second on a terminal; nothing when stderr is not one."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress = None
        self._files = None
        self._t0 = time.perf_counter()
        self.chunks = 0

    def __enter__(self) -> _RichProgress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]ingest"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("files"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                console=err,
                transient=True,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def _rate(self) -> str:
        dt = max(time.perf_counter() - self._t0, 1e-6)
        done = self._progress.tasks[0].completed if self._progress and self._progress.tasks else 0
        return f"{done / dt:.1f} files/s, {self.chunks} chunks ({self.chunks / dt:.0f}/s)"

    def start(self, total_files: int) -> None:
        self._t0 = time.perf_counter()
        if self._progress is not None:
            self._files = self._progress.add_task("ingest", total=total_files, rate="")

    def file_done(self, source: str) -> None:
        if self._progress is not None and self._files is not None:
            self._progress.update(self._files, advance=1, rate=self._rate())

    def chunks_written(self, n: int) -> None:
        self.chunks += n
        if self._progress is not None and self._files is not None:
            self._progress.update(self._files, rate=self._rate())

    def failed(self, path: str, reason: str) -> None:
        if self.enabled:
            err.print(f"[yellow]skipped[/] {path}: {reason}", highlight=False)


@app.command()
def ingest(
    paths: Annotated[list[str], typer.Argument(help="Folders (recursive), files or globs.")],
    prune: Annotated[
        bool, typer.Option("--prune", help="Remove documents whose files are gone from these folders.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="Keep syncing (with --prune) as files change, until Ctrl-C.")
    ] = False,
    chunk_size: Annotated[Optional[int], typer.Option(help="Chunk size [env: ASKDOCS_CHUNK_SIZE]")] = None,
    chunk_overlap: Annotated[Optional[int], typer.Option(help="Chunk overlap [env: ASKDOCS_CHUNK_OVERLAP]")] = None,
    chunk_unit: Annotated[Optional[str], typer.Option(help="chars or tokens [env: ASKDOCS_CHUNK_UNIT]")] = None,
    batch_size: Annotated[
        Optional[int], typer.Option(help="Embedding batch size [env: ASKDOCS_EMBED_BATCH_SIZE]")
    ] = None,
    uri: UriOpt = None,
    token: TokenOpt = None,
    collection: CollOpt = None,
    embed_model: ModelOpt = None,
    embed_backend: BackendEmbedOpt = None,
) -> None:
    """Ingest documents (Markdown, HTML, text, reST, PDF); unchanged files are skipped."""
    index = _index(
        uri,
        token,
        collection,
        embed_model=embed_model,
        embed_backend=embed_backend,
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        chunk_unit=chunk_unit,
        embed_batch_size=batch_size,
    )
    if watch:  # askdocs.watch: sync now and after every burst of changes
        from askdocs.watch import watch_cli

        with index:
            return _run(watch_cli, index, paths, as_json=as_json, quiet=quiet, echo=err.print)
    with index, _RichProgress(enabled=not quiet and not as_json and err.is_terminal) as progress:
        report = _run(index.ingest, *paths, prune=prune, progress=progress)
    if as_json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        if not quiet and not err.is_terminal:
            for path, reason in report.failures:
                err.print(f"skipped {path}: {reason}", highlight=False)
        if not quiet:
            err.print(report.summary(), highlight=False)
    if report.explicit_failures:  # a file the user named on its own must not fail in silence
        raise _fail(f"not ingested: {', '.join(report.explicit_failures)} (see the reasons above)")
    if report.failed and not (report.added or report.updated or report.unchanged):
        raise typer.Exit(1)


# --------------------------------------------------------------------------- search


def _read_queries(path: Path) -> list[str]:
    """One query per line, or JSON Lines with a 'question' field (the --batch format)."""
    return [r["question"] for r in _read_batch(path)]


@app.command()
def search(
    query: Annotated[Optional[list[str]], typer.Argument(help="Query text (several words are one query).")] = None,
    k: Annotated[Optional[int], typer.Option("-k", "--top-k", help="Results per query [env: ASKDOCS_TOP_K]")] = None,
    mode: Annotated[
        Optional[str], typer.Option("--mode", help="dense, bm25 or hybrid [env: ASKDOCS_SEARCH_MODE]")
    ] = None,
    filter: Annotated[
        str, typer.Option("--filter", help="Milvus filter expression, e.g. 'source like \"faq/%\"'")
    ] = "",
    queries: Annotated[
        Optional[Path], typer.Option("--queries", help="File of queries: lines, or JSON Lines with 'question'.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per query, per line.")] = False,
    uri: UriOpt = None,
    token: TokenOpt = None,
    collection: CollOpt = None,
    embed_model: ModelOpt = None,
) -> None:
    """Search the index and show the top passages with their sources."""
    texts = [" ".join(query)] if query else []
    if queries is not None:
        texts += _read_queries(queries)
    if not texts:
        raise _fail("give a query, or --queries FILE")
    if mode is not None and mode not in ("dense", "bm25", "hybrid"):
        raise _fail(f"--mode must be dense, bm25 or hybrid, not {mode!r}")
    index = _index(uri, token, collection, embed_model=embed_model, top_k=k, search_mode=mode)
    with index:
        results = _run(index.search_many, texts, filter=filter)
    for text, hits in zip(texts, results, strict=True):
        if as_json:
            print(json.dumps({"query": text, "results": [h.to_dict() for h in hits]}, ensure_ascii=False))
            continue
        table = Table(title=f"[bold]{text}[/]", title_justify="left", show_lines=True, expand=True)
        table.add_column("#", justify="right", no_wrap=True)
        table.add_column("score", justify="right", no_wrap=True)
        table.add_column("source / section", ratio=1, overflow="fold")
        table.add_column("snippet", ratio=2)
        for rank, h in enumerate(hits, 1):
            snippet = " ".join(h.text.split())
            snippet = snippet[:240] + ("…" if len(snippet) > 240 else "")
            where = f"[cyan]{h.source}[/]" + (f"\n[dim]{h.section}[/]" if h.section else "")
            table.add_row(str(rank), f"{h.score:.3f}", where, snippet)
        if not hits:
            out.print(f"[bold]{text}[/]: no results")
        else:
            out.print(table)


# --------------------------------------------------------------------------- ask, chat

BackendOpt = Annotated[
    Optional[str],
    typer.Option("--llm-backend", help="auto, vllm, openai, local or none [env: ASKDOCS_LLM_BACKEND]"),
]
LLMModelOpt = Annotated[Optional[str], typer.Option("--llm-model", help="LLM to answer with [env: ASKDOCS_LLM_MODEL]")]
LLMUrlOpt = Annotated[
    Optional[str],
    typer.Option("--llm-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 [env: ASKDOCS_LLM_URL]"),
]
LLMKeyOpt = Annotated[
    Optional[str], typer.Option("--llm-api-key", help="API key for --llm-url [env: ASKDOCS_LLM_API_KEY]")
]
MaxTokOpt = Annotated[Optional[int], typer.Option("--max-tokens", help="Longest answer [env: ASKDOCS_MAX_TOKENS]")]
TempOpt = Annotated[
    Optional[float], typer.Option("--temperature", help="Sampling temperature [env: ASKDOCS_TEMPERATURE]")
]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Sampling seed [env: ASKDOCS_SEED]")]
PromptOpt = Annotated[
    Optional[Path], typer.Option("--prompt-file", help="TOML with `system`/`user` templates [env: ASKDOCS_PROMPT_FILE]")
]
KOpt = Annotated[Optional[int], typer.Option("-k", "--top-k", help="Passages per question [env: ASKDOCS_TOP_K]")]
ModeOpt = Annotated[Optional[str], typer.Option("--mode", help="dense, bm25 or hybrid [env: ASKDOCS_SEARCH_MODE]")]


def _answerer(index: Any):
    """Load the generator once (with a spinner on a terminal): models are the slow part of starting."""
    from askdocs.answer import Answerer
    from askdocs.generate import make_generator, resolve_backend

    s = index.settings
    backend = resolve_backend(s)
    defaults = {"local": "SmolLM2-135M-Instruct, packaged", "vllm": "meta-llama/Llama-3.1-8B-Instruct"}
    label = s.llm_url if backend == "openai" else (s.llm_model or defaults.get(backend, ""))
    if err.is_terminal and backend != "none":
        with err.status(f"loading {backend} LLM ({label})…"):
            generator = _run(make_generator, s)
    else:
        generator = _run(make_generator, s)
    return _run(Answerer, index, generator)


def _print_sources(answer: Any) -> None:
    cited = {c.n for c in answer.citations}
    if not answer.contexts:
        out.print("[dim]no passages found[/]")
        return
    out.print()
    out.print("[bold]Sources[/]" + ("" if cited or not answer.answer else " [dim](none cited)[/]"))
    for c in answer.contexts:
        mark = "[green]*[/]" if c.n in cited else " "
        where = f"[cyan]{c.source}[/]" + (f" [dim]› {c.section}[/]" if c.section else "")
        out.print(f"{mark}[{c.n}] {where}  [dim]{c.score:.3f}[/]", highlight=False)


def _print_passages(answer: Any) -> None:
    """The ``none`` backend's answer: the passages themselves, best first."""
    for c in reversed(answer.contexts):
        where = f"[bold][{c.n}][/] [cyan]{c.source}[/]" + (f" [dim]› {c.section}[/]" if c.section else "")
        out.print(where + f"  [dim]{c.score:.3f}[/]", highlight=False)
        out.print(" ".join(c.text.split()), highlight=False)
        out.print()


def _stream_one(answerer: Any, question: str, *, history: Any = (), **kw: Any):
    stream = _run(answerer.stream, question, history=history, **kw)
    if answerer.generator.name == "none":
        answer = stream.result()
        _print_passages(answer)
        return answer
    pieces = iter(stream)
    while True:
        try:
            piece = _run(next, pieces, None)
        except typer.Exit:
            raise
        if piece is None:
            break
        out.print(piece, end="", highlight=False, markup=False)
        out.file.flush()
    out.print()
    answer = stream.answer
    _print_sources(answer)
    return answer


def _read_batch(path: Path) -> list[dict[str, Any]]:
    """JSON Lines with a 'question' field (other fields kept, e.g. 'id'), or one question per line."""
    records = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror}") from None
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _fail(f"{path}:{n}: invalid JSON: {exc.msg}") from None
            if not isinstance(rec.get("question"), str):
                raise _fail(f"{path}:{n}: JSON line has no 'question' string")
            records.append(rec)
        else:
            records.append({"question": line})
    return records


@app.command()
def ask(
    question: Annotated[
        Optional[list[str]], typer.Argument(help="The question (several words are one question).")
    ] = None,
    batch: Annotated[
        Optional[Path], typer.Option("--batch", help="Answer every question in a file (JSON Lines or plain lines).")
    ] = None,
    out_file: Annotated[
        Optional[Path], typer.Option("--out", help="With --batch: write JSON Lines here instead of stdout.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as one JSON object.")] = False,
    k: KOpt = None,
    mode: ModeOpt = None,
    filter: Annotated[str, typer.Option("--filter", help="Milvus filter expression over the chunks")] = "",
    llm_backend: BackendOpt = None,
    llm_model: LLMModelOpt = None,
    llm_url: LLMUrlOpt = None,
    llm_api_key: LLMKeyOpt = None,
    max_tokens: MaxTokOpt = None,
    temperature: TempOpt = None,
    seed: SeedOpt = None,
    prompt_file: PromptOpt = None,
    uri: UriOpt = None,
    token: TokenOpt = None,
    collection: CollOpt = None,
    embed_model: ModelOpt = None,
) -> None:
    """Answer a question from the indexed documents, citing them as \\[n]."""
    text = " ".join(question) if question else ""
    if not text and batch is None:
        raise _fail("give a question, or --batch FILE")
    if text and batch is not None:
        raise _fail("give either a question or --batch FILE, not both")
    if mode is not None and mode not in ("dense", "bm25", "hybrid"):
        raise _fail(f"--mode must be dense, bm25 or hybrid, not {mode!r}")
    records = _read_batch(batch) if batch is not None else []
    if batch is not None and not records:
        raise _fail(f"{batch} holds no questions")
    index = _index(
        uri, token, collection, embed_model=embed_model, top_k=k, search_mode=mode, llm_backend=llm_backend,
        llm_model=llm_model, llm_url=llm_url, llm_api_key=llm_api_key, max_tokens=max_tokens,
        temperature=temperature, seed=seed, prompt_file=prompt_file,
    )  # fmt: skip
    with index:
        _run(index._require_collection)
        answerer = _answerer(index)
        try:
            if batch is not None:
                _ask_batch(answerer, records, out_file, filter)
            elif as_json:
                answer = _run(lambda: answerer.stream(text, filter=filter).result())
                print(json.dumps(answer.to_dict(), ensure_ascii=False))
            else:
                _stream_one(answerer, text, filter=filter)
        finally:
            answerer.generator.close()


def _ask_batch(answerer: Any, records: list[dict[str, Any]], out_file: Path | None, filter: str) -> None:
    questions = [r["question"] for r in records]
    t0 = time.perf_counter()
    if err.is_terminal:
        with err.status(f"answering {len(questions)} questions in one batch…"):
            answers = _run(answerer.ask_many, questions, filter=filter)
    else:
        answers = _run(answerer.ask_many, questions, filter=filter)
    wall = time.perf_counter() - t0
    lines = []
    for rec, answer in zip(records, answers, strict=True):
        row = {k: v for k, v in rec.items() if k not in ("question",)}
        lines.append(json.dumps({**row, **answer.to_dict()}, ensure_ascii=False))
    if out_file is not None:
        try:
            out_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        except OSError as exc:
            raise _fail(f"cannot write {out_file}: {exc.strerror}") from None
    else:
        for line in lines:
            print(line)
    toks = sum(a.usage.get("completion_tokens", 0) for a in answers)
    where = f" -> {out_file}" if out_file else ""
    err.print(
        f"{len(answers)} answers in {wall:.1f}s ({toks} tokens, {toks / max(wall, 1e-9):.1f} tokens/s){where}",
        highlight=False,
    )


@app.command()
def chat(
    k: KOpt = None,
    mode: ModeOpt = None,
    llm_backend: BackendOpt = None,
    llm_model: LLMModelOpt = None,
    llm_url: LLMUrlOpt = None,
    llm_api_key: LLMKeyOpt = None,
    max_tokens: MaxTokOpt = None,
    temperature: TempOpt = None,
    seed: SeedOpt = None,
    prompt_file: PromptOpt = None,
    uri: UriOpt = None,
    token: TokenOpt = None,
    collection: CollOpt = None,
    embed_model: ModelOpt = None,
) -> None:
    """Ask many questions with one loaded model; follow-ups ("and what about IVF?") are understood."""
    index = _index(
        uri, token, collection, embed_model=embed_model, top_k=k, search_mode=mode, llm_backend=llm_backend,
        llm_model=llm_model, llm_url=llm_url, llm_api_key=llm_api_key, max_tokens=max_tokens,
        temperature=temperature, seed=seed, prompt_file=prompt_file,
    )  # fmt: skip
    with index:
        _run(index._require_collection)
        answerer = _answerer(index)
        history: list[dict[str, str]] = []
        err.print(f"[dim]{answerer.generator.name} over {index.settings.collection}; empty line or Ctrl-D ends[/]")
        try:
            while True:
                try:
                    question = out.input("[bold green]? [/]").strip() if out.is_terminal else input().strip()
                except EOFError:
                    break
                if not question or question in ("exit", "quit", "/exit", "/quit"):
                    break
                answer = _stream_one(answerer, question, history=history)
                if answer.query != question:
                    err.print(f"[dim](searched for: {answer.query})[/]", highlight=False)
                history += [{"role": "user", "content": question}, {"role": "assistant", "content": answer.answer}]
                out.print()
        finally:
            answerer.generator.close()


# --------------------------------------------------------------------------- serve


@app.command()
def serve(
    host: Annotated[Optional[str], typer.Option("--host", help="Interface [env: ASKDOCS_HOST]")] = None,
    port: Annotated[Optional[int], typer.Option("--port", help="TCP port [env: ASKDOCS_PORT]")] = None,
    llm_backend: BackendOpt = None,
    llm_model: LLMModelOpt = None,
    llm_url: LLMUrlOpt = None,
    llm_api_key: LLMKeyOpt = None,
    max_tokens: MaxTokOpt = None,
    uri: UriOpt = None,
    token: TokenOpt = None,
    collection: CollOpt = None,
    embed_model: ModelOpt = None,
) -> None:
    """Serve the OpenAI-compatible API (/v1), the REST API (/api) and the web page (/)."""
    from askdocs.config import load_settings

    try:
        settings = load_settings(
            host=host, port=port, llm_backend=llm_backend, llm_model=llm_model, llm_url=llm_url,
            llm_api_key=llm_api_key, max_tokens=max_tokens, milvus_uri=uri, milvus_token=token,
            collection=collection, embed_model=embed_model,
        )  # fmt: skip
    except Exception as exc:
        raise _fail(f"invalid settings: {exc}") from None
    import uvicorn

    from askdocs.server import create_app

    app_ = create_app(settings)
    config = uvicorn.Config(app_, host=settings.host, port=settings.port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    original_startup = server.startup

    async def startup(sockets=None) -> None:
        await original_startup(sockets)
        svc = app_.state.service()
        if svc is None:  # the app failed to start; uvicorn has said why
            return
        st = svc.index.status()
        url = f"http://{settings.host}:{settings.port}"
        err.print(f"[bold]askdocs[/] serving {url}  (web page /, OpenAI API {url}/v1, docs {url}/docs)")
        err.print(
            f"  collection [cyan]{settings.collection}[/] at {settings.milvus_uri}: "
            f"{st.documents} documents, {st.chunks} chunks; embeddings {st.model or svc.embedder.model_name}",
            highlight=False,
        )
        err.print(f"  LLM: {svc.backend} {svc.generator.name}; API key {'required' if settings.api_key else 'off'}")

    server.startup = startup  # type: ignore[method-assign]
    server.run()  # uvicorn handles Ctrl-C itself


# --------------------------------------------------------------------------- eval


@app.command("eval")
def eval_(
    questions: Annotated[Path, typer.Argument(help="JSON Lines questions (id, question, gold_sources, ...).")],
    mode: ModeOpt = None,
    compare: Annotated[
        Optional[str], typer.Option("--compare", help="Comma-separated modes to compare, e.g. dense,bm25,hybrid")
    ] = None,
    answers: Annotated[bool, typer.Option("--answers", help="Also generate answers and score them.")] = False,
    batch: Annotated[bool, typer.Option("--batch", help="With --answers: one batched generator call.")] = False,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write a self-contained HTML report.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    uri: UriOpt = None,
    token: TokenOpt = None,
    collection: CollOpt = None,
    embed_model: ModelOpt = None,
    embed_backend: BackendEmbedOpt = None,
    rerank: Annotated[
        Optional[str],
        typer.Option("--rerank", help="CrossEncoder that rescores the top hits [env: ASKDOCS_RERANK_MODEL]"),
    ] = None,
    llm_backend: BackendOpt = None,
    llm_model: LLMModelOpt = None,
    llm_url: LLMUrlOpt = None,
    max_tokens: MaxTokOpt = None,
    seed: SeedOpt = None,
) -> None:
    """Score retrieval (hit@k, MRR, nDCG by source) and, with --answers, the answers, on a question set."""
    from askdocs import evaluate as ev

    try:
        qs = ev.load_questions(questions)
    except (OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    modes = [m.strip() for m in compare.split(",") if m.strip()] if compare else []
    for m in [*modes, *([mode] if mode else [])]:
        if m not in ("dense", "bm25", "hybrid"):
            raise _fail(f"modes must be dense, bm25 or hybrid, not {m!r}")
    index = _index(
        uri,
        token,
        collection,
        embed_model=embed_model,
        embed_backend=embed_backend,
        rerank_model=rerank,
        search_mode=mode,
        llm_backend=llm_backend,
        llm_model=llm_model,
        llm_url=llm_url,
        max_tokens=max_tokens,
        seed=seed,
    )
    with index:
        modes = modes or [index.settings.search_mode]
        retrieval = _run(ev.evaluate_retrieval, index, qs, modes)
        result = ev.EvalResult(str(questions), len(qs), retrieval)
        if answers:
            amode = mode or index.settings.search_mode
            got = _run(ev.generate_answers, index, qs, amode, batch)
            result.answers = ev.answer_metrics(qs, got)
            result.answer_mode = amode
    if report is not None:
        ev.write_html(result, report)
    if as_json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
        return
    table = Table(title=f"retrieval: {questions} (answerable, k=10, dedupe by source)", title_justify="left")
    for col in ["mode", "lang", "n", "hit@1", "hit@3", "hit@5", "hit@10", "MRR@10", "nDCG@10"]:
        table.add_column(col, justify="left" if col in ("mode", "lang") else "right")
    for row in ev.retrieval_table_rows(result):
        table.add_row(*row)
    out.print(table)
    if result.answers is not None:
        at = Table(title=f"answers ({result.answer_mode})", title_justify="left")
        at.add_column("metric")
        at.add_column("value", justify="right")
        for row in ev.answer_table_rows(result.answers):
            at.add_row(*row)
        out.print(at)
    if report is not None:
        err.print(f"report written to {report}")


# --------------------------------------------------------------------------- status, documents, delete, reset


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    uri: UriOpt = None,
    token: TokenOpt = None,
    collection: CollOpt = None,
) -> None:
    """Show the collection: documents, chunks, embedding model, size."""
    with _index(uri, token, collection) as index:
        st = _run(index.status)
    if as_json:
        print(json.dumps(st.to_dict(), ensure_ascii=False))
        return
    table = Table(show_header=False, box=None)
    table.add_row("milvus", st.uri + (f" ({_size(st.size_bytes)})" if st.size_bytes is not None else ""))
    table.add_row(
        "collection", st.collection + ("" if st.exists else " [yellow](not created yet: run askdocs ingest)[/]")
    )
    if st.exists:
        table.add_row("documents", str(st.documents))
        table.add_row("chunks", str(st.chunks))
        table.add_row("embedding", f"{st.model} ({st.dim} dims)")
        table.add_row("search", "dense + BM25 (hybrid)" if st.bm25 else "dense only")
        table.add_row("chunking", st.chunking or "-")
    if st.other_collections:
        table.add_row("other collections", ", ".join(st.other_collections))
    out.print(table)


@app.command()
def documents(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per document, per line.")] = False,
    uri: UriOpt = None,
    token: TokenOpt = None,
    collection: CollOpt = None,
) -> None:
    """List the indexed documents."""
    with _index(uri, token, collection) as index:
        docs = _run(index.documents)
    if as_json:
        for d in docs:
            print(json.dumps(d.__dict__, ensure_ascii=False))
        return
    table = Table("source", "title", "chunks")
    for d in docs:
        table.add_row(d.source, d.title, str(d.chunks) + ("" if d.complete else " [yellow](incomplete)[/]"))
    out.print(table)


@app.command()
def delete(
    sources: Annotated[list[str], typer.Argument(help="Document source paths, as `askdocs documents` lists them.")],
    uri: UriOpt = None,
    token: TokenOpt = None,
    collection: CollOpt = None,
) -> None:
    """Remove documents from the index."""
    missing = 0
    with _index(uri, token, collection) as index:
        for source in sources:
            n = _run(index.delete, source)
            if n:
                err.print(f"deleted {source} ({n} chunks)", highlight=False)
            else:
                err.print(f"[yellow]not in the index:[/] {source}", highlight=False)
                missing += 1
    if missing:
        raise typer.Exit(1)


@app.command()
def reset(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    uri: UriOpt = None,
    token: TokenOpt = None,
    collection: CollOpt = None,
) -> None:
    """Drop the collection, e.g. to re-index with another embedding model."""
    with _index(uri, token, collection) as index:
        name = index.settings.collection
        if not yes and not typer.confirm(f"Drop collection {name!r} at {index.settings.milvus_uri}?"):
            raise typer.Exit(1)
        dropped = _run(index.reset)
    err.print(f"dropped {name}" if dropped else f"{name} did not exist")


@app.command("mcp")
def mcp_command(
    k: KOpt = None,
    mode: ModeOpt = None,
    llm_backend: BackendOpt = None,
    llm_model: LLMModelOpt = None,
    llm_url: LLMUrlOpt = None,
    llm_api_key: LLMKeyOpt = None,
    uri: UriOpt = None,
    token: TokenOpt = None,
    collection: CollOpt = None,
    embed_model: ModelOpt = None,
) -> None:
    """Serve search, ask and list_documents as MCP tools over stdio, for agents and IDEs."""
    from askdocs.config import load_settings
    from askdocs.mcp_server import run_stdio

    try:
        settings = load_settings(
            milvus_uri=uri, milvus_token=token, collection=collection, embed_model=embed_model, top_k=k,
            search_mode=mode, llm_backend=llm_backend, llm_model=llm_model, llm_url=llm_url, llm_api_key=llm_api_key,
        )  # fmt: skip
    except Exception as exc:  # pydantic.ValidationError: bad setting values
        raise _fail(f"invalid settings: {exc}") from None
    _run(run_stdio, settings)


def run() -> None:  # console-script entry point
    try:
        app()
    except BrokenPipeError:  # e.g. `askdocs search ... | head`
        sys.stderr.close()


if __name__ == "__main__":
    run()
