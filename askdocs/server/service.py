"""The serving layer: one ``Service`` shares the loaded models across requests; a micro-batcher; ingest jobs.

One ``Service`` loads the embedder and the generator once and shares them
across requests.  Retrieval is short and runs under a lock per collection
(Milvus Lite's client is not documented as thread-safe).  Generation is the
long part and is never serialized behind a lock when the engine can batch:

* ``openai`` backend (a vLLM server behind ``--llm-url``): requests go out
  concurrently and the server's continuous batching schedules them together;
* in-process backends (``vllm``, ``local``): a micro-batcher gathers the
  requests that arrive while the engine is busy and hands them to the engine
  in one ``generate`` call, so 50 concurrent users cost about one batch.

Streaming on the ``local`` backend streams token by token (transformers'
streamer); vLLM's offline engine has no token stream, so in-process vLLM
streams each answer as one piece.  For token streaming with vLLM, serve the
model with vLLM's own server and point ``--llm-url`` at it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fastapi import HTTPException, Request
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from askdocs.answer import Answer, Answerer, Prepared
from askdocs.config import Settings
from askdocs.embed import Embedder
from askdocs.errors import AskdocsError, CollectionNotFoundError
from askdocs.generate import Generator, SamplingParams, make_generator, resolve_backend
from askdocs.generate.base import Generation, Message, TokenStream
from askdocs.generate.none import NoGenerator
from askdocs.index import Index
from askdocs.retrieve import SearchOptions
from askdocs.server.guards import public_report
from askdocs.store import Hit

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- generation pool

_Item = tuple[Sequence[Message], SamplingParams, Future[Generation], threading.Event]


class MicroBatcher:
    """Hands concurrent requests to an in-process engine together, in one ``generate`` call.

    Requests that arrive while a batch is running wait for the next one, so the batch size follows
    the load with no tuning; requests with different sampling parameters go in separate calls.  A
    request's ``cancelled`` event stops its own row (when the engine takes ``cancelled``, as the
    ``local`` one does), and the rest of the batch runs on.
    """

    def __init__(self, generator: Generator, max_batch: int = 64, gather_s: float = 0.01) -> None:
        self.generator = generator
        self.max_batch = max_batch
        self.gather_s = gather_s
        self._cancellable = "cancelled" in inspect.signature(generator.generate).parameters
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="askdocs-batcher", daemon=True)
        self._thread.start()
        self.batches: list[int] = []  # sizes, for /metrics and tests

    def submit(
        self, messages: Sequence[Message], params: SamplingParams, cancelled: threading.Event | None = None
    ) -> Future[Generation]:
        fut: Future[Generation] = Future()
        self._queue.put((messages, params, fut, cancelled or threading.Event()))
        return fut

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            deadline = time.monotonic() + self.gather_s
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            groups: dict[SamplingParams, list[tuple[Sequence[Message], Future[Generation], threading.Event]]] = {}
            for messages, params, fut, cancelled in batch:
                if fut.set_running_or_notify_cancel():  # a waiter that has gone (cancelled) costs nothing
                    groups.setdefault(params, []).append((messages, fut, cancelled))
            for params, items in groups.items():
                self.batches.append(len(items))
                stop = {"cancelled": [c for _, _, c in items]} if self._cancellable else {}
                try:
                    gens = self.generator.generate([m for m, _, _ in items], params, **stop)
                except BaseException as e:  # every waiter learns of the failure
                    for _, fut, _ in items:
                        fut.set_exception(e)
                    continue
                for (_, fut, _), gen in zip(items, gens, strict=True):
                    fut.set_result(gen)

    def close(self) -> None:
        self._queue.put(None)


# --------------------------------------------------------------------------- ingest jobs


@dataclass
class Job:
    id: str
    state: Literal["queued", "running", "done", "failed"] = "queued"
    files_total: int = 0
    files_done: int = 0
    stage_now: str = ""
    """``model``, ``embed``, ``flush`` or ``queries``: what the ingest does beyond reading files
    (``askdocs.ingest.Stage``)."""
    chunks_total: int = 0
    """Chunks to embed so far: it grows as files are read."""
    embedded: int = 0
    chunks: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)  # uploads refused before ingest
    report: dict[str, Any] | None = None
    error: str | None = None

    # ProgressSink: the ingest reports here, the API reads it back
    def start(self, total_files: int) -> None:
        self.files_total = total_files

    def file_done(self, source: str) -> None:
        self.files_done += 1

    def stage(self, name: str) -> None:
        self.stage_now = name

    def chunks_queued(self, n: int) -> None:
        self.chunks_total += n

    def chunks_embedded(self, n: int) -> None:
        self.embedded += n

    def chunks_written(self, n: int) -> None:
        self.chunks += n

    def failed(self, path: str, reason: str) -> None:
        self.failures.append({"path": Path(path).name, "reason": reason})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "state": self.state,
            "files_total": self.files_total,
            "files_done": self.files_done,
            "stage": self.stage_now,
            "chunks_total": self.chunks_total,
            "chunks_embedded": self.embedded,
            "chunks": self.chunks,
            "failures": self.failures,
            "rejected": self.rejected,
        }
        if self.report is not None:
            out["report"] = self.report
        if self.error is not None:
            out["error"] = self.error
        return out


# --------------------------------------------------------------------------- the service


class Metrics:
    """The Prometheus series the server exports at ``/metrics``, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "askdocs_requests", "HTTP requests", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram("askdocs_request_seconds", "HTTP request latency", ["route"], registry=self.registry)
        self.stages = Histogram(
            "askdocs_stage_seconds",
            "Time per pipeline stage",
            ["stage"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        self.tokens = Counter("askdocs_tokens", "LLM tokens", ["kind"], registry=self.registry)


class Slot:
    """One admitted answer; ``release`` is idempotent, so every way a request ends may call it."""

    def __init__(self, service: Service) -> None:
        self._service, self._released = service, False

    def release(self) -> None:
        if not self._released:
            self._released = True
            with self._service._admit_lock:
                self._service.in_flight -= 1


class Service:
    """What the server holds: one embedder, one generator, an index per collection, jobs, metrics."""

    def __init__(self, settings: Settings, generator: Generator | None = None, embedder: Embedder | None = None):
        self.settings = settings
        self.index = Index(settings, embedder=embedder).warm_up()  # loaded now, not on the first question
        self.embedder: Embedder = self.index.embedder()
        self.backend = "custom" if generator is not None else resolve_backend(settings)
        self.generator = generator if generator is not None else make_generator(settings)
        self.answerers: dict[str, Answerer] = {settings.collection: Answerer(self.index, self.generator)}
        self.locks: dict[str, threading.Lock] = {settings.collection: threading.Lock()}
        in_process = self.backend in ("vllm", "local", "custom") and not isinstance(self.generator, NoGenerator)
        # vLLM's scheduler gains throughput from wide batches.  transformers on a CPU does not (measured:
        # 16 answers took 67 s one by one, 63 s in batches of 8, 70 s as one batch of 16), so there a
        # narrow batch only keeps the first answers from waiting for the last.
        width = 256 if self.backend == "vllm" else 4
        self.batcher = MicroBatcher(self.generator, max_batch=width) if in_process else None
        self.stream_tokens = self.backend != "vllm" and not isinstance(self.generator, NoGenerator)
        self.jobs: dict[str, Job] = {}
        self.ingest_lock = threading.Lock()  # one writer: Milvus Lite has a single writer anyway
        self.metrics = Metrics()
        self._stop = threading.Event()  # ends the --watch thread
        self._watcher: threading.Thread | None = None
        # Backpressure: at most max_pending_answers answers queued or generating; the rest are told to
        # retry (with 20 clients and no bound, 15 waited over 420 s on the CPU model).
        self.in_flight = 0
        self._admit_lock = threading.Lock()
        self.streams: set[TokenStream] = set()  # running token streams, cancelled on shutdown

    def admit(self) -> Slot:
        """A slot for one answer, or 503 with ``Retry-After`` when ``max_pending_answers`` are in flight."""
        with self._admit_lock:
            if self.in_flight >= self.settings.max_pending_answers:
                msg = f"busy: {self.in_flight} answers in progress (max_pending_answers); retry shortly"
                raise HTTPException(503, msg, headers={"Retry-After": "5"})
            self.in_flight += 1
        return Slot(self)

    # collections -------------------------------------------------------------

    def collections(self) -> list[str]:
        names = [self.settings.collection]
        names += [c for c in self.index.store.list_collections() if c != self.settings.collection]
        return names

    def answerer(self, model: str | None) -> tuple[str, Answerer]:
        """The collection a request names as its ``model`` (or the default one)."""
        name = self.settings.collection if model in (None, "", self.generator.name, "askdocs") else str(model)
        if name not in self.answerers:
            if name not in self.collections():
                raise CollectionNotFoundError(f"no collection {name!r}; GET /v1/models lists them")
            # the server's embedder serves this collection too when it is the collection's model
            ix = Index(
                self.settings.model_copy(update={"collection": name, "embed_model": None}), embedder=self.embedder
            )
            self.answerers[name] = Answerer(ix, self.generator)
            self.locks[name] = threading.Lock()
        return name, self.answerers[name]

    # questions ---------------------------------------------------------------

    def search(self, query: str, options: SearchOptions) -> list[Hit]:
        with self.locks[self.settings.collection]:
            return self.index.search(query, options)

    def prepare(
        self,
        collection: str,
        question: str,
        history: Sequence[Message],
        params: SamplingParams,
        options: SearchOptions,
    ) -> Prepared:
        answerer = self.answerers[collection]
        # A follow-up is made standalone (``Answerer.rewrite``): by the LLM through the batcher when
        # generation is in-process and its rewrite is sane, else by the earlier question's key terms.
        query = question
        rewrite_s = 0.0
        if history:
            t0 = time.perf_counter()
            query = answerer.rewrite(history, question, generate=self.generate)
            rewrite_s = time.perf_counter() - t0
        hist = answerer.recent(history)
        with self.locks[collection]:
            prep = answerer.prepare_many([question], search=options, histories=[hist], queries=[query], params=params)[
                0
            ]
        if history:
            prep.timings["rewrite"] = rewrite_s
        for stage in ("embed", "search", "prompt", "rewrite"):
            if stage in prep.timings:
                self.metrics.stages.labels(stage).observe(prep.timings[stage])
        return prep

    def generate(self, messages: Sequence[Message], params: SamplingParams) -> Generation:
        """One answer, through the micro-batcher when the engine is in-process (blocks the calling thread)."""
        if self.batcher is not None:
            return self.batcher.submit(messages, params).result()
        return self.generator.generate([messages], params)[0]

    async def agenerate(self, messages: Sequence[Message], params: SamplingParams) -> Generation:
        """``generate`` for the event loop: a batched request waits on its future, not on a thread.

        Cancelling the awaiting task (a timeout, a client that has gone) drops a queued request and
        stops a running one at its next token; the rest of its batch goes on."""
        if self.batcher is not None:
            cancelled = threading.Event()
            try:
                return await asyncio.wrap_future(self.batcher.submit(messages, params, cancelled))
            finally:  # after a normal end this changes nothing
                cancelled.set()
        return await run_in_threadpool(self.generate, messages, params)

    async def agenerate_for(self, prep: Prepared, params: SamplingParams) -> Generation:
        """The prepared question's answer; refused before generation, the generator is not called."""
        if prep.refusal is not None:
            return Generation(prep.refusal, finish_reason="refused")
        return await self.agenerate(prep.prompt.messages, params)

    async def answer(self, collection: str, prep: Prepared, params: SamplingParams) -> Answer:
        t0 = time.perf_counter()
        gen = await self.agenerate_for(prep, params)
        return self.finish(collection, prep, gen, time.perf_counter() - t0)

    async def stream(
        self, collection: str, prep: Prepared, params: SamplingParams
    ) -> AsyncIterator[tuple[str, Answer | None]]:
        """(piece, None) while the answer is written, then ("", answer)."""
        t0 = time.perf_counter()
        if not self.stream_tokens or prep.refusal is not None:
            gen = await self.agenerate_for(prep, params)
            yield gen.text, None
        else:
            ts = self.generator.stream(prep.prompt.messages, params)
            self.streams.add(ts)
            try:
                async for piece in iterate_in_threadpool(iter(ts)):
                    yield piece, None
            finally:  # the reader has gone or the answer is whole: either way the model stops now
                ts.cancel()
                self.streams.discard(ts)
            assert ts.result is not None
            gen = ts.result
        yield "", self.finish(collection, prep, gen, time.perf_counter() - t0)

    async def answer_while_connected(
        self, request: Request, collection: str, prep: Prepared, params: SamplingParams
    ) -> Answer:
        """``answer``, stopped when the client hangs up: Starlette notices a disconnect only while it reads
        the body or writes a stream, so a whole (non-streaming) answer would otherwise run to its end.

        The watcher waits on ``receive`` (the body has been read, so the next message is the disconnect),
        as sse-starlette does for streams.  Polling ``request.is_disconnected()`` every 0.25 s never saw
        this disconnect (tried): behind a ``BaseHTTPMiddleware`` (``_measure``) its zero-timeout receive
        is, as far as we can tell, cancelled inside the middleware's task group before the message returns.
        """

        async def gone() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        task = asyncio.ensure_future(self.answer(collection, prep, params))
        watcher = asyncio.ensure_future(gone())
        try:
            await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                raise HTTPException(499, "client closed the request")  # nobody reads it
            return task.result()
        finally:  # no-ops once done; else the generation stops at its next token (``agenerate``)
            task.cancel()
            watcher.cancel()

    def finish(self, collection: str, prep: Prepared, gen: Generation, seconds: float) -> Answer:
        answer = self.answerers[collection].finish(prep, gen, seconds)
        self.metrics.stages.labels("generate").observe(seconds)
        self.metrics.tokens.labels("prompt").inc(answer.usage.get("prompt_tokens", 0))
        self.metrics.tokens.labels("completion").inc(answer.usage.get("completion_tokens", 0))
        return answer

    # documents ---------------------------------------------------------------

    def delete_document(self, source: str) -> int:
        """Chunks removed (0 when the document is not indexed); waits for a running ingest."""
        with self.ingest_lock, self.locks[self.settings.collection]:
            return self.index.delete(source)

    def start_ingest(self, paths: list[str], rejected: Sequence[dict[str, Any]] = ()) -> Job:
        job = Job(uuid.uuid4().hex[:12], rejected=[{"path": r["path"], "reason": r["reason"]} for r in rejected])
        self.jobs[job.id] = job
        threading.Thread(target=self._ingest, args=(job, paths), name=f"askdocs-ingest-{job.id}", daemon=True).start()
        return job

    def _ingest(self, job: Job, paths: list[str]) -> None:
        with self.ingest_lock:
            job.state = "running"
            log.info("ingest job %s: %d path(s), %d upload(s) refused", job.id, len(paths), len(job.rejected))
            try:
                report = self.index.ingest(*paths, progress=job)
                job.report = public_report(report.to_dict(), self.settings)
                job.state = "done"
                log.info("ingest job %s done: %s", job.id, report.summary())
            except AskdocsError as e:
                job.error, job.state = str(e), "failed"
            except Exception as e:  # reported to the client without internals
                log.exception("ingest job %s failed", job.id)
                job.error, job.state = f"ingest failed: {type(e).__name__}", "failed"

    def start_watch(self, folders: Sequence[Path]) -> None:
        """Keep ``folders`` in sync while the server runs (``serve --watch``): the server is the one writer.

        A Milvus Lite file takes one process at a time, so a separate ``ingest --watch`` cannot run beside
        ``serve``; here each sync takes the ingest lock like an upload job does.
        """
        from askdocs.watch import watch_and_sync

        def logged(report: Any, changes: set[Any]) -> None:
            cause = f" after {len(changes)} change(s)" if changes else " (start-up)"
            log.info("watch sync%s: %s", cause, report.summary())

        def run() -> None:
            try:
                watch_and_sync(
                    self.index, [str(f) for f in folders], on_sync=logged, stop_event=self._stop, lock=self.ingest_lock
                )
            except Exception:  # the server keeps answering; the log says why the folder is no longer watched
                log.exception("watching %s stopped", ", ".join(map(str, folders)))

        self._watcher = threading.Thread(target=run, name="askdocs-watch", daemon=True)
        self._watcher.start()

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=10)
        for ts in list(self.streams):  # shutdown (SIGTERM): running answers stop at their next token
            ts.cancel()
        if self.batcher is not None:
            self.batcher.close()
        self.generator.close()
        for a in self.answerers.values():
            a.index.close()


def get_service(request: Request) -> Service:
    """The app's ``Service`` (a FastAPI dependency): it lives on ``app.state`` from start-up to shutdown."""
    return request.app.state.service
