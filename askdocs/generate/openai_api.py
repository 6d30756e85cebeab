"""The ``openai`` backend: any OpenAI-compatible chat server, vLLM's first of all.

This is how askdocs scales past one GPU: run ``vllm serve`` (with tensor
parallelism, on as many GPUs as the model needs) and point ``llm_url`` at it.
A batch is sent as concurrent requests, which vLLM's continuous batching
schedules together, so one-by-one clients still get the engine's batching.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from askdocs.errors import AskdocsError, GeneratorError, GeneratorUnavailableError
from askdocs.generate.base import BaseGenerator, Generation, Message, SamplingParams, TokenStream

log = logging.getLogger(__name__)


class OpenAIGenerator(BaseGenerator):
    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 300.0,
        concurrency: int = 32,
    ) -> None:
        import openai

        self._openai = openai
        self.base_url = base_url.rstrip("/")
        key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.client = openai.OpenAI(base_url=self.base_url, api_key=key, timeout=timeout, max_retries=2)
        self.concurrency = concurrency
        self._api_key = key
        self._tokenize_ok: bool | None = None
        models = self._call(lambda: self.client.models.list().data)
        if model is None:
            if not models:
                raise AskdocsError(f"the LLM server at {self.base_url} serves no models")
            model = models[0].id
        self.name = model
        card = next((m for m in models if m.id == model), None)
        if models and card is None:
            served = ", ".join(m.id for m in models)
            raise AskdocsError(f"the LLM server at {self.base_url} does not serve {model!r} (it serves: {served})")
        # vLLM adds max_model_len to its model cards; other servers may not say.
        extra = getattr(card, "model_extra", None) or {}
        self.max_context = extra.get("max_model_len") if card is not None else None

    def _call(self, fn):
        """Run an SDK call, turning its exceptions into one actionable line."""
        o = self._openai
        try:
            return fn()
        except o.APIConnectionError:
            raise GeneratorUnavailableError(
                f"cannot reach the LLM server at {self.base_url}: start it, or check --llm-url / ASKDOCS_LLM_URL"
            ) from None
        except o.AuthenticationError:
            raise GeneratorError(
                f"the LLM server at {self.base_url} refused the API key: set --llm-api-key or ASKDOCS_LLM_API_KEY"
            ) from None
        except o.NotFoundError as e:
            raise GeneratorError(f"the LLM server at {self.base_url} answered 404: {_message(e)}") from None
        except o.BadRequestError as e:
            msg = _message(e)
            hint = ""
            if "context" in msg.lower() or "max_model_len" in msg or "too long" in msg.lower():
                hint = ": lower top_k or max_tokens, or serve the model with a larger --max-model-len"
            raise AskdocsError(f"the LLM server refused the request ({msg}){hint}") from None
        except o.APIStatusError as e:
            raise GeneratorError(f"the LLM server at {self.base_url} failed: {e.status_code} {_message(e)}") from None

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """vLLM's /tokenize applies the served chat template; elsewhere, a conservative estimate."""
        if self._tokenize_ok is not False:
            root = self.base_url.removesuffix("/v1")
            body = json.dumps({"model": self.name, "messages": list(messages), "add_generation_prompt": True})
            req = urllib.request.Request(
                f"{root}/tokenize",
                body.encode(),
                {"Content-Type": "application/json", "Authorization": f"Bearer {self._api_key}"},
            )
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    self._tokenize_ok = True
                    return int(json.load(r)["count"])
            except Exception as e:  # not vLLM, or an older one: estimate from then on
                log.debug("no /tokenize at %s (%s); estimating token counts", root, e)
                self._tokenize_ok = False
        return super().count_tokens(messages)

    def _request(self, messages: Sequence[Message], params: SamplingParams) -> dict[str, object]:
        kw: dict[str, object] = {
            "model": self.name,
            "messages": list(messages),
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
        }
        if params.seed is not None:
            kw["seed"] = params.seed
        if params.stop:
            kw["stop"] = list(params.stop)
        return kw

    def _one(self, messages: Sequence[Message], params: SamplingParams) -> Generation:
        r = self._call(lambda: self.client.chat.completions.create(**self._request(messages, params)))
        choice = r.choices[0]
        usage = r.usage
        return Generation(
            (choice.message.content or "").strip(),
            usage.prompt_tokens if usage else 0,
            usage.completion_tokens if usage else 0,
            choice.finish_reason,
        )

    def generate(self, conversations: Sequence[Sequence[Message]], params: SamplingParams) -> list[Generation]:
        if len(conversations) <= 1:
            return [self._one(c, params) for c in conversations]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(conversations))) as pool:
            return list(pool.map(lambda c: self._one(c, params), conversations))

    def stream(self, messages: Sequence[Message], params: SamplingParams) -> TokenStream:
        def pieces(ts: TokenStream) -> Iterator[str]:
            kw = self._request(messages, params)
            events = self._call(
                lambda: self.client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True})
            )
            parts: list[str] = []
            usage = None
            finish = None
            try:
                for ev in events:
                    if ev.usage:
                        usage = ev.usage
                    for ch in ev.choices:
                        if ch.finish_reason:
                            finish = ch.finish_reason
                        text = ch.delta.content if ch.delta else None
                        if text:
                            if not parts:
                                text = text.lstrip()
                            if text:
                                parts.append(text)
                                yield text
            except self._openai.APIError as e:
                raise GeneratorError(f"the LLM server at {self.base_url} failed mid-answer: {_message(e)}") from None
            ts.result = Generation(
                "".join(parts).strip(),
                usage.prompt_tokens if usage else 0,
                usage.completion_tokens if usage else 0,
                finish,
            )

        return TokenStream(pieces)

    def close(self) -> None:
        self.client.close()


def _message(e: Exception) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        error = body.get("error")
        msg = body.get("message") or (error.get("message") if isinstance(error, dict) else None)
        if msg:
            return str(msg).splitlines()[0]
    return str(e).splitlines()[0]
