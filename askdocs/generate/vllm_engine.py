"""The ``vllm`` backend: vLLM's engine inside this process (the reference's way of generating).

One ``LLM`` is built per generator and kept: engine start (weights, KV cache,
compilation) costs seconds on a GPU and one to three minutes on vLLM-CPU, while
each answer afterwards costs only its tokens.  ``generate`` hands every
conversation to one ``llm.chat`` call, so vLLM's scheduler batches them: that
is where vLLM's throughput comes from (see benchmarks/results/vllm_cpu.md).

vllm is imported inside the constructor only, so ``import askdocs`` and every
other backend work where vllm is not installed.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from askdocs.errors import AskdocsError
from askdocs.generate.base import BaseGenerator, Generation, Message, SamplingParams, TokenStream

if TYPE_CHECKING:
    from askdocs.config import Settings

log = logging.getLogger(__name__)

_GATED_HINTS = ("gated", "401", "403", "unauthorized", "access to model", "restricted", "authenticat")


class VLLMGenerator(BaseGenerator):
    """A vLLM ``LLM`` engine behind the askdocs generator interface.

    Streaming: the offline ``LLM`` class cannot stream (its ``_add_request`` forces
    ``RequestOutputKind.FINAL_ONLY``; ``llm.chat`` returns only finished outputs).
    The engine underneath can: ``stream`` adds one request to ``llm.llm_engine`` with
    ``RequestOutputKind.DELTA`` and drives ``llm_engine.step()`` itself, yielding each
    step's new text, which is how vLLM's own ``LLM`` loop and its engine examples use
    that public API.  Falling back to the whole answer in one piece would leave a CLI
    user staring at nothing for the length of the answer, so real streaming is worth
    the few lines.

    The engine is not thread-safe and ``llm.chat`` steps the engine until *every*
    request in it has finished, so one lock serialises ``generate`` and ``stream``:
    a stream holds it until its answer ends (or the iterator is closed), and a
    concurrent ``generate`` waits rather than swallowing the stream's outputs.
    """

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "auto",
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.9,
        max_num_batched_tokens: int | None = None,
        max_num_seqs: int | None = None,
        enforce_eager: bool = False,
        seed: int | None = None,
        tensor_parallel_size: int = 1,
        **engine_kwargs: Any,
    ) -> None:
        """Start the engine; ``engine_kwargs`` go to ``vllm.LLM`` unchanged (any ``EngineArgs`` field)."""
        vllm = _import_vllm()

        self.name = model
        kwargs: dict[str, Any] = {
            "dtype": dtype,
            "gpu_memory_utilization": gpu_memory_utilization,
            "enforce_eager": enforce_eager,
            "tensor_parallel_size": tensor_parallel_size,
            **engine_kwargs,
        }
        optional = {
            "max_model_len": max_model_len,
            "max_num_batched_tokens": max_num_batched_tokens,
            "max_num_seqs": max_num_seqs,
            "seed": seed,
        }
        kwargs.update({k: v for k, v in optional.items() if v is not None})
        try:
            self._llm = vllm.LLM(model, **kwargs)
        except Exception as e:  # vLLM raises OSError, ValueError, RuntimeError... all mean "did not start"
            raise _load_error(model, e) from e
        self._vllm = vllm
        self.max_context: int | None = int(self._llm.model_config.max_model_len)
        self.tokenizer = self._llm.get_tokenizer()
        if not getattr(self.tokenizer, "chat_template", True):
            self.close()
            raise AskdocsError(f"LLM {model!r} has no chat template; use an instruct/chat model")
        self._lock = threading.Lock()
        self._stream_ids = itertools.count()

    @classmethod
    def from_settings(cls, settings: Settings, model: str) -> VLLMGenerator:
        """The engine that ``settings`` describes; the window fits the retrieval budget and the model."""
        from askdocs.generate import default_max_model_len

        _import_vllm()  # before reading the model: "install vllm" beats a minute of hub retries
        native = model_max_positions(model)
        wanted = settings.max_model_len or default_max_model_len(settings)
        if native is not None and wanted > native:
            if settings.max_model_len is not None:
                log.warning("max_model_len %d is above %s's %d positions: using %d", wanted, model, native, native)
            wanted = native
        return cls(
            model,
            dtype=settings.dtype,
            max_model_len=wanted,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            max_num_batched_tokens=settings.max_num_batched_tokens,
            max_num_seqs=settings.max_num_seqs,
            enforce_eager=settings.enforce_eager,
            seed=settings.seed,
            tensor_parallel_size=settings.tensor_parallel_size,
        )

    # ------------------------------------------------------------------ tokens

    def _prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        """Template to text, then encode without special tokens: what vLLM's chat renderer does,
        so the count is the engine's own (the chat template already writes BOS)."""
        text = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return len(self._prompt_ids(messages))

    def _check_fits(self, n_prompt: int, params: SamplingParams) -> None:
        """vLLM would refuse a prompt over the window but silently cut an answer that runs past it;
        both mean the retrieval budget is wrong, so both are refused here with the fix."""
        if self.max_context and n_prompt + params.max_tokens > self.max_context:
            raise AskdocsError(
                f"prompt of {n_prompt} tokens + {params.max_tokens} answer tokens exceeds max_model_len "
                f"{self.max_context} of {self.name}: raise max_model_len (ASKDOCS_MAX_MODEL_LEN) or lower top_k "
                f"or max_tokens"
            )

    def _sampling(self, params: SamplingParams, **extra: Any) -> Any:
        return self._vllm.SamplingParams(
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            seed=params.seed,
            stop=list(params.stop) or None,
            **extra,
        )

    # ------------------------------------------------------------------ generation

    def generate(self, conversations: Sequence[Sequence[Message]], params: SamplingParams) -> list[Generation]:
        if not conversations:
            return []
        for conv in conversations:
            self._check_fits(self.count_tokens(conv), params)
        with self._lock:
            try:
                outputs = self._llm.chat([list(c) for c in conversations], self._sampling(params), use_tqdm=False)
            except ValueError as e:  # VLLMValidationError: the prompt does not fit after all
                raise AskdocsError(
                    f"vLLM refused the prompt ({str(e).splitlines()[0]}): raise max_model_len or lower top_k"
                ) from None
        gens = []
        for out in outputs:  # llm.chat returns outputs in input order
            done = out.outputs[0]
            gens.append(
                Generation(
                    done.text.strip(),
                    len(out.prompt_token_ids or ()),
                    len(done.token_ids),
                    done.finish_reason,
                )
            )
        return gens

    def stream(self, messages: Sequence[Message], params: SamplingParams) -> TokenStream:
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        ids = self._prompt_ids(messages)
        self._check_fits(len(ids), params)
        engine = self._llm.llm_engine

        def pieces(ts: TokenStream) -> Iterator[str]:
            sp = self._sampling(params, output_kind=RequestOutputKind.DELTA)
            parts: list[str] = []
            n_out = 0
            finish: str | None = None
            with self._lock:
                rid = f"askdocs-stream-{next(self._stream_ids)}"
                engine.add_request(rid, TokensPrompt(prompt_token_ids=ids), sp)
                try:
                    while finish is None and engine.has_unfinished_requests():
                        for out in engine.step():
                            if out.request_id != rid:
                                continue
                            delta = out.outputs[0]
                            n_out += len(delta.token_ids)
                            text = delta.text.lstrip() if not parts else delta.text
                            if out.finished:
                                finish = delta.finish_reason or "stop"
                            if text:
                                parts.append(text)
                                yield text
                finally:
                    if finish is None:  # the consumer stopped early: free the sequence's KV cache
                        engine.abort_request([rid])
            ts.result = Generation("".join(parts).strip(), len(ids), n_out, finish)

        return TokenStream(pieces)

    def close(self) -> None:
        """Stop the engine's worker processes now rather than at interpreter exit."""
        llm = getattr(self, "_llm", None)
        if llm is None:
            return
        self._llm = None  # type: ignore[assignment]
        core = getattr(llm.llm_engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            try:
                core.shutdown()
            except Exception as e:  # already gone: nothing left to free
                log.debug("vLLM engine shutdown: %s", e)


def model_max_positions(model: str) -> int | None:
    """The model's own context limit (max_position_embeddings), read from its config.

    A model that cannot be read here cannot be loaded by vLLM either, so this is
    also where a missing or gated model is reported, before an engine starts.
    """
    if model.startswith((".", "/", "~")) and not Path(model).expanduser().exists():
        raise AskdocsError(f"LLM folder {model} does not exist: pass a model folder or a Hugging Face model name")
    if model.endswith(".gguf"):
        raise _load_error(model, ValueError("a GGUF file, not a model folder"))
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(model)
    except Exception as e:
        raise _load_error(model, e) from e
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    n = getattr(text, "max_position_embeddings", None)
    return int(n) if n else None


def _import_vllm() -> Any:
    """vllm, on a device it can run on.

    Without a GPU vLLM runs only as a CPU build (vllm-cpu); a CUDA build there
    would pick no platform and fail deep in engine start-up, so say it first.
    """
    try:
        import vllm
    except ImportError:
        raise AskdocsError(
            "the vllm backend needs vLLM: install vllm (on a CUDA GPU) or vllm-cpu, or use --llm-backend local"
        ) from None
    try:
        from vllm.platforms import current_platform
    except Exception as e:  # a broken install says so itself
        raise AskdocsError(f"vLLM is installed but does not import ({e}): reinstall it") from None
    if not getattr(current_platform, "device_type", ""):
        raise AskdocsError(
            "vLLM found no GPU and is not a CPU build: run on a GPU, install vllm-cpu, or use --llm-backend local"
        )
    return vllm


def _load_error(model: str, e: BaseException) -> AskdocsError:
    chain = []
    cur: BaseException | None = e
    while cur is not None and len(chain) < 8:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    first = next((str(x).strip().splitlines()[0] for x in chain if str(x).strip()), type(e).__name__)
    text = " ".join(f"{type(x).__name__} {x}" for x in chain).lower()
    is_path = Path(model).expanduser().exists() or model.startswith((".", "/", "~"))
    if model.endswith(".gguf"):
        # vLLM 0.32 has no GGUF loader left (measured: benchmarks/results/vllm_cpu.md).
        hint = (
            "this vLLM cannot read GGUF files: pass a transformers model folder "
            "(the local backend caches the packaged SmolLM2 as one) or use --llm-backend local"
        )
    elif is_path:
        hint = "check that the folder holds config.json, the weights and the tokenizer"
    elif any(h in text for h in _GATED_HINTS):
        hint = "the model is gated: accept its licence on the Hugging Face Hub and set HF_TOKEN"
    else:
        hint = (
            "check the name; if the model is gated, set HF_TOKEN; offline, pass a local folder "
            "or use --llm-backend local"
        )
    return AskdocsError(f"cannot load LLM {model!r} ({first}): {hint}")
