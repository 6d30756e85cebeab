"""The ``askdocs`` command line, a thin typer layer over ``askdocs.Index``.

Heavy modules (torch, sentence-transformers, pymilvus) are imported inside the
commands, so ``askdocs --help`` answers at once.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from askdocs.config import SEARCH_MODES, Settings  # pydantic only: the heavy modules load in the commands

if TYPE_CHECKING:
    from askdocs.index import Index

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
    for name in ("sentence_transformers", "transformers", "huggingface_hub", "milvus_lite", "trafilatura"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # pymilvus logs each failed call at ERROR (with a traceback) before raising; askdocs explains the same
    # failure in one line, so its log would only repeat it (pymilvus gives its client logger a level of its own).
    for name in ("pymilvus", "pymilvus.milvus_client"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


# --------------------------------------------------------------------------- shared options
#
# Options that several commands take are defined once, in groups; ``@shared(GROUP, ...)`` adds a group's
# options to a command and hands the command one ``Settings`` built from them (and the environment, and
# the settings file), so no command lists them again and none maps them to settings by hand.

CONNECTION: dict[str, Any] = {
    "uri": Annotated[
        Optional[str], typer.Option("--uri", help="Milvus Lite file or server URI [env: ASKDOCS_MILVUS_URI]")
    ],
    "token": Annotated[Optional[str], typer.Option("--token", help="Milvus token [env: ASKDOCS_MILVUS_TOKEN]")],
    "collection": Annotated[
        Optional[str], typer.Option("--collection", "-c", help="Collection [env: ASKDOCS_COLLECTION]")
    ],
}
EMBEDDING: dict[str, Any] = {
    "embed_model": Annotated[
        Optional[str],
        typer.Option(
            "--embed-model",
            help="sentence-transformers model, or 'multilingual' (Chinese and 100+ languages)"
            " [env: ASKDOCS_EMBED_MODEL]",
        ),
    ],
    "embed_backend": Annotated[
        Optional[str],
        typer.Option("--embed-backend", help="torch, torch-bf16, onnx or onnx-int8 [env: ASKDOCS_EMBED_BACKEND]"),
    ],
    "embed_url": Annotated[
        Optional[list[str]],
        typer.Option(
            "--embed-url",
            help="OpenAI-compatible embedding server, e.g. http://127.0.0.1:8000/v1; repeat for several "
            "[env: ASKDOCS_EMBED_URL]",
        ),
    ],
}
_MODES = ", ".join(SEARCH_MODES[:-1]) + " or " + SEARCH_MODES[-1]
SEARCH: dict[str, Any] = {
    "k": Annotated[Optional[int], typer.Option("-k", "--top-k", help="Passages per query [env: ASKDOCS_TOP_K]")],
    "mode": Annotated[Optional[str], typer.Option("--mode", help=f"{_MODES} [env: ASKDOCS_SEARCH_MODE]")],
}
LLM: dict[str, Any] = {
    "llm_backend": Annotated[
        Optional[str],
        typer.Option("--llm-backend", help="auto, vllm, openai, local or none [env: ASKDOCS_LLM_BACKEND]"),
    ],
    "llm_model": Annotated[
        Optional[str], typer.Option("--llm-model", help="LLM to answer with [env: ASKDOCS_LLM_MODEL]")
    ],
    "llm_url": Annotated[
        Optional[str],
        typer.Option(
            "--llm-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 [env: ASKDOCS_LLM_URL]"
        ),
    ],
    "llm_api_key": Annotated[
        Optional[str], typer.Option("--llm-api-key", help="API key for --llm-url [env: ASKDOCS_LLM_API_KEY]")
    ],
    "max_tokens": Annotated[
        Optional[int], typer.Option("--max-tokens", help="Longest answer [env: ASKDOCS_MAX_TOKENS]")
    ],
    "temperature": Annotated[
        Optional[float], typer.Option("--temperature", help="Sampling temperature [env: ASKDOCS_TEMPERATURE]")
    ],
    "seed": Annotated[Optional[int], typer.Option("--seed", help="Sampling seed [env: ASKDOCS_SEED]")],
    "prompt_file": Annotated[
        Optional[Path],
        typer.Option("--prompt-file", help="TOML with `system`/`user` templates [env: ASKDOCS_PROMPT_FILE]"),
    ],
}
CHUNKING: dict[str, Any] = {
    "chunk_size": Annotated[Optional[int], typer.Option(help="Chunk size [env: ASKDOCS_CHUNK_SIZE]")],
    "chunk_overlap": Annotated[Optional[int], typer.Option(help="Chunk overlap [env: ASKDOCS_CHUNK_OVERLAP]")],
    "chunk_unit": Annotated[Optional[str], typer.Option(help="chars or tokens [env: ASKDOCS_CHUNK_UNIT]")],
    "batch_size": Annotated[Optional[int], typer.Option(help="Embedding batch size [env: ASKDOCS_EMBED_BATCH_SIZE]")],
}
RERANK: dict[str, Any] = {
    "rerank": Annotated[
        Optional[str],
        typer.Option("--rerank", help="CrossEncoder that rescores the top hits [env: ASKDOCS_RERANK_MODEL]"),
    ],
}
RAY: dict[str, Any] = {
    "ray_address": Annotated[
        Optional[str],
        typer.Option(
            "--ray-address",
            help="Join this Ray cluster: auto or HOST:6379 (implies --ray) [env: ASKDOCS_RAY_ADDRESS]",
        ),
    ],
    "ray_actors": Annotated[
        Optional[int], typer.Option("--ray-actors", help="Embedding actors [env: ASKDOCS_RAY_ACTORS]")
    ],
}
SERVE: dict[str, Any] = {
    "host": Annotated[Optional[str], typer.Option("--host", help="Interface [env: ASKDOCS_HOST]")],
    "port": Annotated[Optional[int], typer.Option("--port", help="TCP port [env: ASKDOCS_PORT]")],
    "mcp": Annotated[
        Optional[bool],
        typer.Option("--mcp/--no-mcp", help="MCP tools over streamable HTTP at /mcp (default on) [env: ASKDOCS_MCP]"),
    ],
    "watch": Annotated[
        Optional[list[Path]],
        typer.Option(
            "--watch",
            help="Folder the server keeps in sync as files change (repeatable) [env: ASKDOCS_WATCH, a JSON list]",
        ),
    ],
}
#: CLI option names that differ from the setting they set
_SETTING = {
    "uri": "milvus_uri",
    "token": "milvus_token",
    "k": "top_k",
    "mode": "search_mode",
    "batch_size": "embed_batch_size",
    "rerank": "rerank_model",
}


def check_mode(mode: str | None, option: str = "--mode") -> None:
    if mode is not None and mode.lower() not in SEARCH_MODES:
        raise _fail(f"{option} must be {_MODES}, not {mode!r}")


def build_settings(**options: Any) -> Settings:
    """Settings from the CLI's options (unset ones left to the environment and the settings file)."""
    from pydantic import ValidationError

    from askdocs.config import describe_invalid, load_settings
    from askdocs.errors import AskdocsError

    if options.get("mode"):
        options["mode"] = options["mode"].lower()
    check_mode(options.get("mode"))
    values = {_SETTING.get(k, k): (v or None if isinstance(v, list | tuple) else v) for k, v in options.items()}
    try:
        return load_settings(**values)
    except ValidationError as exc:  # bad values from the options, the environment or the settings file
        raise _fail(f"invalid settings: {describe_invalid(exc)}") from None
    except AskdocsError as exc:  # the settings file: its syntax or an unknown key
        raise _fail(str(exc)) from None


def _with_default(name: str, ann: Any) -> Any:
    """The option with the setting's default in its help (the option's own default is None: "unset").

    The defaults live in ``Settings``, so ``--help`` reads them there rather than repeating them here.
    """
    import copy

    from rich.markup import escape

    if not hasattr(ann, "__metadata__"):
        return ann
    info = copy.copy(ann.__metadata__[0])
    field = Settings.model_fields.get(_SETTING.get(name, name))
    default = None if field is None or field.default_factory is not None else field.default
    if default not in (None, [], ()) and type(default).__name__ != "PydanticUndefinedType":
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        info.help = f"{info.help or ''} [default: {shown}]".strip()
    info.help = escape(info.help or "")  # "[env: ...]" and "[default: ...]" are text, not rich markup
    return Annotated[(ann.__origin__, info)]  # type: ignore[misc]


def shared(*groups: dict[str, Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the groups' options to a command, which receives them as one ``settings: Settings`` argument."""
    names = [name for g in groups for name in g]

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != "settings"]
        extra = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=_with_default(name, ann))
            for g in groups
            for name, ann in g.items()
        ]

        @functools.wraps(fn)
        def command(*args: Any, **kwargs: Any) -> Any:
            settings = build_settings(**{n: kwargs.pop(n) for n in names})
            return fn(*args, settings=settings, **kwargs)

        params = own + extra
        command.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate


def _index(settings: Settings) -> Index:
    from askdocs.index import Index

    return Index(settings)


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(1)


@contextmanager
def errors() -> Iterator[None]:
    """Inside it, askdocs errors become one clear line and exit 1 (tracebacks with --debug); Ctrl-C exits 130."""
    from askdocs.errors import AskdocsError

    try:
        yield
    except AskdocsError as exc:
        if _state["debug"]:
            raise
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out.print(f"askdocs {version('askdocs')}", highlight=False)
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    _state["debug"] = debug
    _quiet_libraries()


# --------------------------------------------------------------------------- ingest


class _RichProgress:
    """What ingest is doing, on a terminal: loading the embedding model, files read, chunks embedded (a bar
    of its own, whose total grows as files are chunked), the final flush.  Nothing when stderr is not one.

    A stage change redraws at once: the display otherwise refreshes on a timer, and a flush or a model
    load that ends between two ticks would never be seen to start."""

    def __init__(self, enabled: bool, loading: str = "Loading embedding model …") -> None:
        self.enabled = enabled
        self.loading = loading
        self._progress: Any = None
        self._files: Any = None
        self._chunks: Any = None
        self._t0 = self._t_embed = time.perf_counter()
        self.queued = 0
        self.embedded = 0

    def __enter__(self) -> _RichProgress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[unit]}"),
                TextColumn("[dim]{task.fields[rate]}"),
                TimeElapsedColumn(),
                console=err,
                transient=True,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    @staticmethod
    def _rate(done: float, since: float) -> str:
        return f"{done / max(time.perf_counter() - since, 1e-6):.1f}/s"

    def start(self, total_files: int) -> None:
        self._t0 = time.perf_counter()
        if self._progress is not None:
            self._files = self._progress.add_task("reading", total=total_files, unit="files", rate="")
            self._chunks = self._progress.add_task("embedding", total=None, unit="chunks", rate="", visible=False)

    def file_done(self, source: str) -> None:
        if self._files is not None:
            done = self._progress.tasks[self._files].completed + 1
            self._progress.update(self._files, completed=done, rate=self._rate(done, self._t0))

    def stage(self, name: str) -> None:
        if self._chunks is None:
            return
        if name == "model":
            self._progress.update(self._chunks, description=self.loading, total=None, visible=True)
        elif name == "embed":
            self._t_embed = time.perf_counter()
            self._progress.update(self._chunks, description="embedding", total=self.queued, visible=True)
        elif name == "flush":
            self._progress.update(self._chunks, description="Flushing …", visible=True)
        elif name == "queries":
            self._progress.update(self._chunks, description="Preparing question embedding …", visible=True)
        self._progress.refresh()

    def chunks_queued(self, n: int) -> None:
        self.queued += n
        if self._chunks is not None and self._progress.tasks[self._chunks].total is not None:
            self._progress.update(self._chunks, total=self.queued)

    def chunks_embedded(self, n: int) -> None:
        self.embedded += n
        if self._chunks is not None:
            rate = self._rate(self.embedded, self._t_embed)  # from the end of the model load
            self._progress.update(self._chunks, completed=self.embedded, rate=rate)

    def chunks_written(self, n: int) -> None:
        """Counted by the report; the bar shows chunks as they are embedded, the slow part."""

    def failed(self, path: str, reason: str) -> None:
        if self.enabled:
            err.print(f"[yellow]skipped[/] {_shown(path)}: {_shown(reason)}", highlight=False)


def _shown(text: str) -> str:
    """A path or reason safe to print on one line: control characters (a newline in a file name)
    and undecodable bytes escaped as in a Python string, rich markup ("[bold]") escaped."""
    from rich.markup import escape

    return escape(
        "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode() for c in text)
    )


@app.command()
@shared(CHUNKING, CONNECTION, EMBEDDING, RAY)
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
    ray: Annotated[
        bool,
        typer.Option("--ray", help="Read, chunk and embed on Ray Data (a local Ray instance unless --ray-address)."),
    ] = False,
    *,
    settings: Settings,
) -> None:
    """Ingest documents (Markdown, HTML, text, reST, PDF, DOCX, PPTX, XLSX, CSV, EPUB); unchanged files are skipped."""
    if ray and settings.ray_address is None:
        settings = settings.model_copy(update={"ray_address": "local"})
    if watch:  # askdocs.watch: sync now and after every burst of changes
        from askdocs.watch import watch_cli

        with _index(settings) as index, errors():
            return watch_cli(index, paths, as_json=as_json, quiet=quiet, echo=err.print)
    with _index(settings) as index, errors():
        enabled = not quiet and not as_json and err.is_terminal
        loading = ""
        if enabled:
            loading = (
                f"Connecting to the embedding server {settings.embed_url} …"
                if settings.embed_url
                else f"Loading embedding model {index.model_name} …"
            )
        with _RichProgress(enabled, loading) as progress:
            report = index.ingest(*paths, prune=prune, progress=progress)
    if as_json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        if not quiet and not err.is_terminal:
            for path, reason in report.failures:
                err.print(f"skipped {_shown(path)}: {_shown(reason)}", highlight=False)
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


FilterOpt = Annotated[
    str, typer.Option("--filter", help="Milvus filter expression over the chunks, e.g. 'source like \"faq/%\"'")
]


@app.command()
@shared(SEARCH, CONNECTION, EMBEDDING)
def search(
    query: Annotated[Optional[list[str]], typer.Argument(help="Query text (several words are one query).")] = None,
    filter: FilterOpt = "",
    queries: Annotated[
        Optional[Path], typer.Option("--queries", help="File of queries: lines, or JSON Lines with 'question'.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per query, per line.")] = False,
    *,
    settings: Settings,
) -> None:
    """Search the index and show the top passages with their sources."""
    from askdocs.retrieve import SearchOptions

    texts = [" ".join(query)] if query else []
    if queries is not None:
        texts += _read_queries(queries)
    if not texts:
        raise _fail("give a query, or --queries FILE")
    with _index(settings) as index, errors():
        searched = [index.search_query(t) for t in texts]  # a Chinese question over English docs: its glosses
        results = index.search_many(searched, SearchOptions(filter=filter))
    for text, as_searched, hits in zip(texts, searched, results, strict=True):
        also = {"searched_as": as_searched} if as_searched != text else {}
        if as_json:
            print(json.dumps({"query": text, **also, "results": [h.to_dict() for h in hits]}, ensure_ascii=False))
            continue
        title = f"[bold]{escape(text)}[/]" + (f"\n[dim]searched as: {escape(as_searched)}[/]" if also else "")
        table = Table(title=title, title_justify="left", show_lines=True, expand=True)
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


def _answerer(index: Any):
    """Load the generator once (with a spinner on a terminal): models are the slow part of starting."""
    from askdocs.answer import Answerer
    from askdocs.generate import make_generator, resolve_backend

    s = index.settings
    backend = resolve_backend(s)
    defaults = {"local": "SmolLM2-135M-Instruct, packaged", "vllm": "meta-llama/Llama-3.1-8B-Instruct"}
    label = s.llm_url if backend == "openai" else (s.llm_model or defaults.get(backend, ""))
    with errors():
        if err.is_terminal and backend != "none":
            with err.status(f"loading {backend} LLM ({label})…"):
                generator = make_generator(s)
        else:
            generator = make_generator(s)
        return Answerer(index, generator)


def _print_sources(answer: Any) -> None:
    cited = {c.n for c in answer.citations}
    if not answer.contexts:
        out.print("[dim]no passages found[/]")
        return
    out.print()
    out.print("[bold]Sources[/]" + ("" if cited or not answer.answer else " [dim](none cited)[/]"))
    if getattr(answer, "query", "") and answer.query != answer.question:  # a rewritten follow-up, a translation
        out.print(f"[dim]searched as: {escape(answer.query)}[/]", highlight=False)
    for c in answer.contexts:
        mark = "[green]*[/]" if c.n in cited else " "
        where = f"[cyan]{c.source}[/]" + (f" [dim]› {c.section}[/]" if c.section else "")
        out.print(f"{mark}[{c.n}] {where}  [dim]{c.score:.3f}[/]", highlight=False)


def _print_passages(answer: Any) -> None:
    """The ``none`` backend's answer: the passages themselves, best first."""
    for c in answer.contexts:
        where = f"[bold][{c.n}][/] [cyan]{c.source}[/]" + (f" [dim]› {c.section}[/]" if c.section else "")
        out.print(where + f"  [dim]{c.score:.3f}[/]", highlight=False)
        out.print(" ".join(c.text.split()), highlight=False)
        out.print()


def _stream_one(answerer: Any, question: str, *, history: Any = (), **kw: Any):
    with errors():
        stream = answerer.stream(question, history=history, **kw)
        if answerer.generator.name == "none":
            answer = stream.result()
            _print_passages(answer)
            return answer
        for piece in stream:
            out.print(piece, end="", highlight=False, markup=False)
            out.file.flush()
    out.print()
    answer = stream.answer
    _print_unsupported(answer)
    _print_sources(answer)
    if answerer.generator.name == "extractive" and not answer.refused:
        err.print(
            "[dim]Quoted from the documents (extractive backend). For generated answers: --llm-url to a vLLM or "
            "Ollama server (http://host:8000/v1), or a GPU with vllm installed.[/]",
            highlight=False,
        )
    return answer


def _print_unsupported(answer: Any) -> None:
    """Sentences whose [n] does not back them (askdocs.support), dimmed and marked, after the streamed answer."""
    bad = [c for c in answer.sentences if not c.supported]
    if not bad:
        return
    out.print()
    out.print(f"[yellow]✗ {len(bad)} of {len(answer.sentences)} sentences not supported by the chunk they cite:[/]")
    for c in bad:
        out.print(f"[dim]  ✗ {escape(' '.join(c.text.split()))}  ({escape(c.reason)})[/]", highlight=False)


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
@shared(SEARCH, LLM, CONNECTION, EMBEDDING)
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
    filter: FilterOpt = "",
    *,
    settings: Settings,
) -> None:
    """Answer a question from the indexed documents, citing them as \\[n]."""
    from askdocs.retrieve import SearchOptions

    text = " ".join(question) if question else ""
    if not text and batch is None:
        raise _fail("give a question, or --batch FILE")
    if text and batch is not None:
        raise _fail("give either a question or --batch FILE, not both")
    records = _read_batch(batch) if batch is not None else []
    if batch is not None and not records:
        raise _fail(f"{batch} holds no questions")
    search = SearchOptions(filter=filter)
    with _index(settings) as index, _answering(index) as answerer:
        if batch is not None:
            _ask_batch(answerer, records, out_file, search)
        elif as_json:
            with errors():
                answer = answerer.stream(text, search=search).result()
            print(json.dumps(answer.to_dict(), ensure_ascii=False))
        else:
            _stream_one(answerer, text, search=search)


@contextmanager
def _answering(index: Index) -> Iterator[Any]:
    """An ``Answerer`` over an existing collection, its generator closed on the way out."""
    with errors():
        index.require_collection()
        if not index.status().chunks:  # every document deleted: no passages to answer from, with or without an LLM
            raise _fail(
                f"collection {index.settings.collection!r} is empty: there is nothing to answer from "
                "(run `askdocs ingest PATH...` first)"
            )
    answerer = _answerer(index)
    try:
        yield answerer
    finally:
        answerer.generator.close()


def _ask_batch(answerer: Any, records: list[dict[str, Any]], out_file: Path | None, search: Any) -> None:
    questions = [r["question"] for r in records]
    t0 = time.perf_counter()
    with errors():
        if err.is_terminal:
            with err.status(f"answering {len(questions)} questions in one batch…"):
                answers = answerer.ask_many(questions, search=search)
        else:
            answers = answerer.ask_many(questions, search=search)
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


def _line_editing() -> Callable[[], None] | None:
    """Line editing and a persistent history for ``chat`` on a terminal: the standard library's readline.

    ``input()`` edits lines (arrows, Ctrl-A/E, Ctrl-R search) once readline is imported; the history
    is kept in the askdocs cache folder across sessions.  No extra dependency: readline is in every
    CPython on Linux and macOS (absent on Windows, where chat keeps plain input).
    """
    try:
        import readline
    except ImportError:
        return None
    from askdocs.config import cache_dir

    path = cache_dir() / "chat_history"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            readline.read_history_file(path)
    except OSError:
        return None
    readline.set_history_length(1000)

    def save() -> None:
        with suppress(OSError):
            readline.write_history_file(path)

    return save


@app.command()
@shared(SEARCH, LLM, CONNECTION, EMBEDDING)
def chat(*, settings: Settings) -> None:
    """Ask many questions with one loaded model; follow-ups ("and what about IVF?") are understood."""
    with _index(settings) as index, _answering(index) as answerer:
        history: list[dict[str, str]] = []
        err.print(f"[dim]{answerer.generator.name} over {index.settings.collection}; empty line or Ctrl-D ends[/]")
        save_history = _line_editing() if out.is_terminal else None
        while True:
            try:
                # \001/\002 tell readline the colour codes take no room, so editing redraws the line right
                question = input("\001\033[1;32m\002? \001\033[0m\002" if save_history else "").strip()
            except EOFError:
                break
            finally:
                if save_history:
                    save_history()
            if not question or question in ("exit", "quit", "/exit", "/quit"):
                break
            answer = _stream_one(answerer, question, history=history)
            if answer.query != question:
                err.print(f"[dim](searched for: {answer.query})[/]", highlight=False)
            history += [{"role": "user", "content": question}, {"role": "assistant", "content": answer.answer}]
            out.print()


# --------------------------------------------------------------------------- serve


@app.command()
@shared(SERVE, LLM, CONNECTION, EMBEDDING)
def serve(*, settings: Settings) -> None:
    """Serve the OpenAI-compatible API (/v1), the REST API (/api) and the web page (/)."""
    import uvicorn

    from askdocs.server import create_app
    from askdocs.server.app import uvicorn_config

    missing = [str(f) for f in settings.watch if not f.is_dir()]
    if missing:
        raise _fail(f"--watch needs existing folders: {', '.join(missing)} not found")
    logging.getLogger("askdocs").setLevel(logging.INFO)  # the server's request and ingest log
    app_ = create_app(settings)
    config = uvicorn_config(app_, settings)
    server = uvicorn.Server(config)
    original_startup = server.startup

    async def startup(sockets=None) -> None:
        await original_startup(sockets)
        svc = app_.state.service
        if svc is None:  # the app failed to start; uvicorn has said why
            return
        st = svc.index.status()
        url = f"http://{settings.host}:{settings.port}"
        mcp = f", MCP {url}/mcp" if settings.mcp else ""
        err.print(f"[bold]askdocs[/] serving {url}  (web page /, OpenAI API {url}/v1{mcp}, docs {url}/docs)")
        err.print(
            f"  collection [cyan]{settings.collection}[/] at {settings.milvus_uri}: "
            f"{st.documents} documents, {st.chunks} chunks; embeddings {st.model or svc.embedder.model_name}",
            highlight=False,
        )
        err.print(f"  LLM: {svc.backend} {svc.generator.name}; API key {'required' if settings.api_key else 'off'}")
        if settings.watch:
            err.print(f"  keeping {', '.join(map(str, settings.watch))} in sync (ingest --prune on each change)")

    server.startup = startup  # type: ignore[method-assign]
    server.run()  # uvicorn handles Ctrl-C itself


# --------------------------------------------------------------------------- eval


@app.command("eval")
@shared({"mode": SEARCH["mode"]}, RERANK, LLM, CONNECTION, EMBEDDING)
def eval_(
    questions: Annotated[Path, typer.Argument(help="JSON Lines questions (id, question, gold_sources, ...).")],
    compare: Annotated[
        Optional[str], typer.Option("--compare", help="Comma-separated modes to compare, e.g. dense,bm25,hybrid")
    ] = None,
    answers: Annotated[bool, typer.Option("--answers", help="Also generate answers and score them.")] = False,
    batch: Annotated[bool, typer.Option("--batch", help="With --answers: one batched generator call.")] = False,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write a self-contained HTML report.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    *,
    settings: Settings,
) -> None:
    """Score retrieval (hit@k, MRR, nDCG by source) and, with --answers, the answers, on a question set."""
    from datetime import UTC, datetime

    from askdocs import evaluate as ev
    from askdocs.generate import resolve_backend

    try:
        qs = ev.load_questions(questions)
    except (OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    modes = [m.strip().lower() for m in compare.split(",") if m.strip()] if compare else []
    for m in modes:
        check_mode(m, "modes")
    with _index(settings) as index, errors():
        index.require_collection()
        missing = ev.gold_not_indexed(qs, {d.source for d in index.documents()})
        gold = {g for q in qs for g in q.get("gold_sources", [])}
        if missing:  # such questions score 0 whatever the retriever does
            shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
            err.print(
                f"[yellow]warning:[/] {len(missing)} of {len(gold)} gold sources are not indexed ({shown}); "
                "questions citing them cannot score",
                highlight=False,
            )
        backend = resolve_backend(settings)
        if answers and backend == "none":
            err.print(
                "[yellow]warning:[/] --answers with --llm-backend none: there are no answers to score "
                "(every answer is empty); choose an LLM backend",
                highlight=False,
            )
        retrieval = ev.evaluate_retrieval(index, qs, modes or [settings.search_mode])
        result = ev.EvalResult(str(questions), len(qs), retrieval)
        st = index.status()
        result.meta.update(
            collection=settings.collection,
            uri=settings.milvus_uri,
            embed_model=st.model,
            mode=", ".join(modes or [settings.search_mode]),
            k=10,
            llm=backend if answers else None,
            date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            gold_not_indexed=missing,
        )
        if answers:
            got = ev.generate_answers(index, qs, settings.search_mode, batch)
            result.answers = ev.answer_metrics(qs, got)
            result.answer_mode = settings.search_mode
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
@shared(CONNECTION)
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    *,
    settings: Settings,
) -> None:
    """Show the collection: documents, chunks, embedding model, size."""
    with _index(settings) as index, errors():
        st = index.status()
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
        table.add_row("search", f"dense + BM25 ({st.analyzer} analyzer)" if st.bm25 else "dense only")
        from askdocs.chunk import describe_fingerprint

        table.add_row("chunking", describe_fingerprint(st.chunking) if st.chunking else "-")
    if st.other_collections:
        table.add_row("other collections", ", ".join(st.other_collections))
    out.print(table)
    if st.warning:
        err.print(f"[yellow]warning:[/] {st.warning}")


@app.command()
@shared(CONNECTION)
def documents(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per document, per line.")] = False,
    *,
    settings: Settings,
) -> None:
    """List the indexed documents (whole source paths: the names `delete` takes)."""
    with _index(settings) as index, errors():
        index.require_collection()
        docs = index.documents()
    if as_json:
        for d in docs:
            print(json.dumps(d.__dict__, ensure_ascii=False))
        return
    table = Table("source", "title", "chunks")
    # never cut or folded: the whole path is the name `delete` takes, so the title column gives way
    longest = max((len(d.source) for d in docs), default=6)
    table.columns[0].no_wrap, table.columns[0].overflow, table.columns[0].min_width = True, "ignore", longest
    for d in docs:
        table.add_row(d.source, d.title, str(d.chunks) + ("" if d.complete else " [yellow](incomplete)[/]"))
    out.print(table)


@app.command()
@shared(CONNECTION)
def delete(
    sources: Annotated[list[str], typer.Argument(help="Document source paths, as `askdocs documents` lists them.")],
    *,
    settings: Settings,
) -> None:
    """Remove documents from the index."""
    missing = 0
    with _index(settings) as index, errors():
        for source in sources:
            n = index.delete(source)
            if n:
                err.print(f"deleted {source} ({n} chunks)", highlight=False)
            else:
                err.print(f"[yellow]not in the index:[/] {source}", highlight=False)
                missing += 1
    if missing:
        raise typer.Exit(1)


@app.command()
@shared(CONNECTION)
def reset(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    *,
    settings: Settings,
) -> None:
    """Drop the collection, e.g. to re-index with another embedding model."""
    name = settings.collection
    if not yes and not typer.confirm(f"Drop collection {name!r} at {settings.milvus_uri}?"):
        raise typer.Exit(1)
    with _index(settings) as index, errors():
        dropped = index.reset()
    err.print(f"dropped {name}" if dropped else f"{name} did not exist")


@app.command("mcp")
@shared(SEARCH, LLM, CONNECTION, EMBEDDING)
def mcp_command(*, settings: Settings) -> None:
    """Serve search, ask and list_documents as MCP tools over stdio, for agents and IDEs."""
    from askdocs.mcp_server import run_stdio

    with errors():
        run_stdio(settings)


def run() -> None:  # console-script entry point
    try:
        app()
    except BrokenPipeError:  # e.g. `askdocs search ... | head`
        sys.stderr.close()


if __name__ == "__main__":
    run()
