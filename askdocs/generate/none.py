"""The ``none`` backend: retrieval only, for users who want the passages and no LLM."""

from __future__ import annotations

from collections.abc import Sequence

from askdocs.generate.base import BaseGenerator, Generation, Message, SamplingParams


class NoGenerator(BaseGenerator):
    """Generates nothing; the answer stage prints the passages themselves."""

    name = "none"

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return 0

    def generate(self, conversations: Sequence[Sequence[Message]], params: SamplingParams) -> list[Generation]:
        return [Generation("") for _ in conversations]
