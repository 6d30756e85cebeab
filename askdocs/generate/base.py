"""The one interface every generator backend implements.

Backends differ in where the model runs (in this process through vLLM or
transformers, or behind an OpenAI-compatible server), but the pipeline needs
only four things from them: apply the model's chat template and count the
tokens (to fit the prompt into the context window), generate many answers in
one call (so that an engine can batch them), and stream one answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

Message = dict[str, str]
"""A chat message: ``{"role": "system" | "user" | "assistant", "content": str}``."""


@dataclass(frozen=True)
class SamplingParams:
    """Sampling knobs shared by every backend (the reference's: temperature 0.2, top_p 0.95)."""

    temperature: float = 0.2
    top_p: float = 0.95
    max_tokens: int = 512
    seed: int | None = None
    stop: tuple[str, ...] = ()  # the answer ends before the first of these (OpenAI's ``stop``)


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first stop string, and whether one was found.

    Engines that stop on strings (transformers' ``stop_strings``) keep the matched string in their
    output; OpenAI's ``stop`` leaves it out, so askdocs cuts it off the same way for every backend.
    """
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


class StopStream:
    """Cuts a stream of pieces at the first stop string, holding back only what could still begin one."""

    def __init__(self, stop: Sequence[str]) -> None:
        self.stop = [s for s in stop if s]
        self.hold = max((len(s) for s in self.stop), default=1) - 1
        self.buffer = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """The part of ``piece`` (with what was held back) that is safe to show now."""
        if self.stopped:
            return ""
        if not self.stop:
            return piece
        self.buffer += piece
        text, self.stopped = cut_at_stop(self.buffer, self.stop)
        if self.stopped:
            self.buffer = ""
            return text
        safe = len(self.buffer) - self.hold
        out, self.buffer = (self.buffer[:safe], self.buffer[safe:]) if safe > 0 else ("", self.buffer)
        return out

    def flush(self) -> str:
        out, self.buffer = ("" if self.stopped else self.buffer), ""
        return out


@dataclass
class Generation:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None


class TokenStream:
    """Iterate to receive text pieces as the model writes them; ``result`` holds the whole
    ``Generation`` (with token usage) once the iteration has finished."""

    def __init__(self, pieces: Callable[[TokenStream], Iterator[str]]) -> None:
        self.result: Generation | None = None
        # Set when the reader has gone (a client disconnected, a timeout, shutdown): a backend that
        # can stop early checks it, so nobody's CPU goes to an answer no one will read.
        self.cancelled = threading.Event()
        self._it = pieces(self)

    def cancel(self) -> None:
        self.cancelled.set()

    def __iter__(self) -> Iterator[str]:
        return self._it

    def text(self) -> str:
        """Drain the stream and return the whole answer."""
        for _ in self:
            pass
        assert self.result is not None
        return self.result.text


@runtime_checkable
class Generator(Protocol):
    """What the answer stage needs from an LLM backend."""

    name: str
    """The model, as shown to users and returned by the API."""

    max_context: int | None
    """Context window in tokens (prompt + answer), when the backend knows it."""

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Tokens of the chat-templated prompt (with the generation prompt)."""
        ...

    def generate(self, conversations: Sequence[Sequence[Message]], params: SamplingParams) -> list[Generation]:
        """Answer every conversation; one call, so the backend can batch them."""
        ...

    def stream(self, messages: Sequence[Message], params: SamplingParams) -> TokenStream:
        """Answer one conversation, piece by piece."""
        ...

    def close(self) -> None: ...


class BaseGenerator:
    """Defaults for backends that cannot stream or count tokens themselves."""

    name: str = "unknown"
    max_context: int | None = None

    def count_tokens(self, messages: Sequence[Message]) -> int:
        # A conservative estimate (~3 characters per token plus per-message overhead), used only where
        # the backend offers no tokenizer; real backends override it.
        return sum(len(m["content"]) // 3 + 8 for m in messages) + 8

    def generate(self, conversations: Sequence[Sequence[Message]], params: SamplingParams) -> list[Generation]:
        raise NotImplementedError

    def stream(self, messages: Sequence[Message], params: SamplingParams) -> TokenStream:
        def pieces(ts: TokenStream) -> Iterator[str]:
            ts.result = self.generate([messages], params)[0]
            yield ts.result.text

        return TokenStream(pieces)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
