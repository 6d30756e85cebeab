"""One typed place for every setting.

Settings come, in rising priority, from the defaults below, an optional TOML
file (``./askdocs.toml`` or the file named by ``ASKDOCS_CONFIG``), ``ASKDOCS_*``
environment variables, and finally the CLI flags or keyword arguments that the
library passes in.  pydantic-settings does the layering so that the CLI, the
library and (later) the server all read the same object.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

SearchMode = Literal["dense", "bm25", "hybrid"]
#: The one list of search modes: settings validate against ``SearchMode``, the CLI offers these.
SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)
LLMBackend = Literal["auto", "vllm", "openai", "local", "none"]
ChunkUnit = Literal["chars", "tokens"]
EmbedBackend = Literal["torch", "onnx", "onnx-int8"]


_SERVER_SCHEMES = ("http://", "https://", "tcp://", "unix:", "grpc://")


def _config_file() -> Path:
    return Path(os.environ.get("ASKDOCS_CONFIG", "askdocs.toml"))


def cache_dir() -> Path:
    """Where derived model files live (converted GGUF, ONNX exports): ``ASKDOCS_CACHE`` or ~/.cache/askdocs."""
    base = os.environ.get("ASKDOCS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "askdocs"
    )
    return Path(base)


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

    # --- embedding ---------------------------------------------------------
    embed_model: str | None = Field(
        None,
        description=(
            "sentence-transformers model name or path.  Unset: the model the collection was built with, "
            "else BAAI/bge-large-en-v1.5 on a CUDA GPU and the packaged all-MiniLM-L6-v2 on CPU."
        ),
    )
    embed_device: str | None = Field(None, description="torch device for the embedder; unset picks cuda when present.")
    embed_batch_size: int = Field(64, ge=1, description="Chunks per embedding forward pass.")
    embed_backend: EmbedBackend | None = Field(
        None,
        description=(
            "Unset: the backend the collection was built with; for a new one onnx-int8 with the packaged "
            "MiniLM on CPU, else torch.  torch runs the "
            "sentence-transformers model; onnx runs the same model exported to ONNX Runtime "
            "(exported once into the cache, identical vectors, faster on CPU); onnx-int8 adds dynamic int8 "
            "quantization (fastest on CPU, vectors differ slightly: ingest and query with the same backend)."
        ),
    )
    query_instruction: str | None = Field(
        None,
        description="Text prepended to queries only; unset uses the model's known instruction (bge) or none.",
    )

    # --- chunking ----------------------------------------------------------
    chunk_size: int = Field(512, ge=16, description="Chunk size, in chunk_unit.")
    chunk_overlap: int = Field(51, ge=0, description="Overlap between neighbouring chunks, in chunk_unit.")
    chunk_unit: ChunkUnit = Field("chars", description="Measure chunk_size and chunk_overlap in characters or tokens.")

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
        """Milvus Lite is chosen by a local file URI, as in pymilvus itself."""
        return not self.milvus_uri.startswith(_SERVER_SCHEMES)


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
