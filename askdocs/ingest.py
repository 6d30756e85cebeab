"""Ingest: bring a collection in step with folders of documents.

For every file the version hash (content plus chunking settings) is compared
with what the collection holds.  Unchanged documents are skipped before they
are even decoded; new and changed ones are cleaned, chunked, embedded in full
batches across documents and written.  The write order makes a kill -9 at any
point harmless:

1. rows of a half-written copy of the *new* version are deleted first,
2. the new version's chunks are inserted (ids are deterministic),
3. only then are the old version's rows deleted.

The next run reads the chunk rows back, sees which versions are complete, and
finishes whatever step was interrupted.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from askdocs.chunk import Chunk, Chunker, chunk_id
from askdocs.clean import clean
from askdocs.embed import Embedder
from askdocs.errors import AskdocsError, LoadError, StoreError
from askdocs.identity import DocKey
from askdocs.load import (
    FORMATS,
    MAX_FILE_BYTES,
    MAX_PDF_INFLATED_BYTES,
    SourceFile,
    content_hash,
    discover,
    read,
    read_bytes,
)
from askdocs.store import DocState, MilvusStore

log = logging.getLogger(__name__)

Stage = Literal["model", "embed", "flush", "queries"]
"""Where a run is beyond reading files: loading the embedding model (seconds; the first run exports it to
ONNX, ~20 s), embedding chunks, flushing the collection at the end (seconds on a large Lite file), and
readying the question embedder (a bfloat16 collection's float32 ONNX export, made once per machine)."""


class ProgressSink(Protocol):
    """What ingest reports while it runs; the CLI draws it, the server exposes it."""

    def start(self, total_files: int) -> None: ...
    def file_done(self, source: str) -> None: ...
    def stage(self, name: Stage) -> None: ...
    def chunks_queued(self, n: int) -> None: ...
    def chunks_embedded(self, n: int) -> None: ...
    def chunks_written(self, n: int) -> None: ...
    def failed(self, path: str, reason: str) -> None: ...


class _NoProgress:
    def start(self, total_files: int) -> None: ...
    def file_done(self, source: str) -> None: ...
    def stage(self, name: Stage) -> None: ...
    def chunks_queued(self, n: int) -> None: ...
    def chunks_embedded(self, n: int) -> None: ...
    def chunks_written(self, n: int) -> None: ...
    def failed(self, path: str, reason: str) -> None: ...


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: int = 0
    skipped: int = 0  # files of a type askdocs does not read, found inside folders or globs
    chunks: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)
    explicit_failures: list[str] = field(default_factory=list)  # files named on their own that were not indexed
    stages: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"{self.added} added, {self.updated} updated, {self.unchanged} unchanged, {self.removed} removed, "
            f"{self.failed} failed{self._skipped_note()}; {self.chunks} chunks written in {self.seconds:.1f}s"
        )

    def _skipped_note(self) -> str:
        if not self.skipped:
            return ""
        exts = Counter(Path(p).suffix.lower() or "without extension" for p in self.skipped_files)
        kinds = ", ".join(f"{n} {ext}" for ext, n in exts.most_common())
        return f", {self.skipped} skipped as unsupported ({kinds})"

    def to_dict(self) -> dict[str, object]:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "failed": self.failed,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
            "skipped": self.skipped,
            "failures": [{"path": p, "reason": r} for p, r in self.failures],
            "skipped_files": [{"path": p, "extension": Path(p).suffix.lower()} for p in self.skipped_files],
            "stages": {k: round(v, 3) for k, v in self.stages.items()},
        }


@dataclass
class _Plan:
    source: str
    doc_hash: str
    remaining: int
    drop_other_versions: bool


_FAULT = os.environ.get("ASKDOCS_FAULT", "")
_entries: dict[str, int] = {}


def _failpoint(stage: str) -> None:
    """Crash tests set ASKDOCS_FAULT=stage:n to SIGKILL the process on its n-th entry into a stage.

    A kill at a chosen stage (loading, embedding, writing, flushing) proves more than a kill at a
    random moment, which mostly lands in the embedding that dominates the run.
    """
    if not _FAULT:
        return
    _entries[stage] = _entries.get(stage, 0) + 1
    want, _, nth = _FAULT.partition(":")
    if stage == want and _entries[stage] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def _timed(stages: dict[str, float], name: str) -> Iterator[None]:
    _failpoint(name)
    t = time.perf_counter()
    try:
        yield
    finally:
        stages[name] = stages.get(name, 0.0) + time.perf_counter() - t


@dataclass
class Prepared:
    """What a reader (a thread here, a Ray task in ``ingest_ray``) learned about one file; not the store."""

    file: SourceFile
    state: DocState | None
    version: str = ""
    chunks: list[Chunk] = field(default_factory=list)
    error: str | None = None  # a LoadError's reason


_DONE = object()


class _Reader:
    """Reads, cleans and chunks files on a thread of its own, a bounded number of documents ahead.

    Why a thread: on CPU the embedding forward pass is the floor, and torch and onnxruntime release
    the GIL while they compute, so reading and cleaning the next documents costs the embedder little.
    The queue bound keeps memory to a few documents however large the corpus.
    """

    def __init__(self, prepare: Callable[[SourceFile, DocState | None], Prepared], items: list, depth: int = 32):
        self._prepare = prepare
        self._items = items
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="askdocs-reader", daemon=True)

    def _work(self) -> None:
        try:
            for file, state in self._items:
                if self._stop.is_set():
                    return
                self._put(self._prepare(file, state))
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(exc)
        self._put(_DONE)

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[Prepared]:
        self._thread.start()
        try:
            while True:
                item = self._queue.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()


class _Writer:
    """Runs store writes in order on one thread, so Milvus inserts overlap the next batch's embedding.

    Every store call of an ingest goes through it (inserts, deletes), so their order, which the crash
    safety above relies on, is the order they were submitted in.  A failed write stops the ingest
    at the next submit or at ``close``.
    """

    def __init__(self, depth: int = 2) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="askdocs-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is _DONE:
                return
            if self._error is None:
                try:
                    job()
                except BaseException as exc:
                    self._error = exc

    def submit(self, job: Callable[[], None]) -> None:
        self._raise()
        self._queue.put(job)

    def _raise(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def close(self) -> None:
        """Wait for every submitted write, then raise the first failure, if any."""
        self._queue.put(_DONE)
        self._thread.join()
        self._raise()


def prepare_file(
    file: SourceFile,
    state: DocState | None,
    chunker: Chunker,
    timer: Callable[[str], AbstractContextManager],
    pdf_max_inflated: int = MAX_PDF_INFLATED_BYTES,
    max_file_bytes: int = MAX_FILE_BYTES,
) -> Prepared:
    """Hash one file, and unless ``state`` holds that version complete, decode, clean and chunk it.

    The reader thread of a local ingest and the Ray tasks of ``askdocs.ingest_ray`` both run this.
    """
    out = Prepared(file, state)
    try:
        with timer("load"):
            data = read_bytes(file, max_file_bytes)
            out.version = chunker.version_hash(content_hash(data))
        if state is not None and state.complete(out.version):
            return out
        with timer("load"):
            raw = read(file, data, pdf_max_inflated=pdf_max_inflated)
        with timer("clean"):
            doc = clean(raw)
        with timer("chunk"):
            out.chunks = chunker.split(doc)
        if not out.chunks:
            raise LoadError("no text to index")
    except LoadError as exc:
        out.error = str(exc)
    return out


class Ingestor:
    """One ingest run over a store, with a chunker and a lazily loaded embedder.

    Three stages overlap: a reader thread (load, clean, chunk), this thread (embed, in full batches
    across documents) and a writer thread (Milvus inserts and deletes, in submission order).
    """

    def __init__(
        self,
        store: MilvusStore,
        chunker: Callable[[], Chunker],
        embedder: Callable[[], Embedder],
        ensure_collection: Callable[[Sequence[str]], None],
        batch_size: int = 256,
        progress: ProgressSink | None = None,
        pdf_max_inflated: int = MAX_PDF_INFLATED_BYTES,
        max_file_bytes: int = MAX_FILE_BYTES,
    ) -> None:
        self.store = store
        self.pdf_max_inflated = pdf_max_inflated
        self._chunker = chunker
        self._embedder = embedder
        self._ensure_collection = ensure_collection
        self.batch_size = batch_size
        self.progress = progress or _NoProgress()
        self.max_file_bytes = max_file_bytes
        self.report = IngestReport()
        self._time = partial(_timed, self.report.stages)
        self._pending: deque[Chunk] = deque()
        self._plans: dict[DocKey, _Plan] = {}
        self._qualified: set[DocKey] = set()  # documents whose chunk ids take their root in (``chunk_id``)
        self._collection_ready = False
        self._writer: _Writer | None = None
        self._wrote = False  # whether any insert or delete was sent to the store
        self._explicit: set[str] = set()

    def _fail(self, path: str, reason: str) -> None:
        if path in self._explicit:
            self.report.explicit_failures.append(path)
        self.report.failed += 1
        self.report.failures.append((path, reason))
        self.progress.failed(path, reason)

    def run(self, inputs: Iterable[str], prune: bool = False) -> IngestReport:
        """Ingest ``inputs``; a Milvus failure ends the run with one error that says what to do next."""
        try:
            return self._run(inputs, prune)
        except StoreError as exc:
            if "again" in str(exc):
                raise
            said = str(exc).rstrip()
            said += "" if said.endswith((".", "?", "!")) else "."
            if not self._wrote:  # the index could not be read or opened: there is nothing to finish
                raise StoreError(f"{said} Nothing was written.") from None
            # The write order (see the module docstring) keeps every document written so far complete.
            raise StoreError(
                f"{said} The ingest stopped; documents written so far are complete: run it again to finish."
            ) from None

    def _run(self, inputs: Iterable[str], prune: bool = False) -> IngestReport:
        started = time.perf_counter()
        inputs = list(inputs)
        with self._time("discover"):
            found = discover(inputs)
        self._explicit = set(found.explicit) | set(found.missing)
        for path in found.unsupported:
            if path in self._explicit:
                kind = Path(path).suffix or "(no extension)"
                self._fail(path, f"unsupported file type {kind}; askdocs reads {' '.join(sorted(FORMATS))}")
            else:
                self.report.skipped += 1
                self.report.skipped_files.append(path)
        for path, reason in found.skipped:
            self._fail(path, reason)
        for m in found.missing:
            self._fail(m, "no such file, folder or matching glob")
        if not found.files and found.missing and len(found.missing) == len(inputs):
            raise AskdocsError(f"nothing to ingest: {', '.join(found.missing)} matched no file")
        with self._time("read_state"):
            states = self.store.document_states()
        self.progress.start(len(found.files))
        # A document is its (root, source): colA/readme.md and colB/readme.md are two.  Chunk ids keep their
        # old form (source, version, index) for the first root to hold a source, and take the root in as
        # well for any other (``chunk_id``), so a collection with no shared source keeps every id it had.
        holders: dict[str, set[str]] = {}
        for root, source in states:
            holders.setdefault(source, set()).add(root)
        claimed: dict[str, str] = {}  # source -> the root whose ids are unqualified in this run
        seen: set[DocKey] = set()
        work: list[tuple[SourceFile, DocState | None]] = []
        for file in found.files:
            key = (str(file.root), file.source)  # unique: discover() yields each real file once
            seen.add(key)
            others = holders.get(file.source, set()) - {key[0]}
            if others or claimed.setdefault(file.source, key[0]) != key[0]:
                self._qualified.add(key)
            work.append((file, states.get(key)))
        self._chunker()  # built here, not lazily on the reader thread (token sizing loads the model)
        self._writer = _Writer()
        try:
            for prepared in self._prepared(work):
                self._accept(prepared)
                self.progress.file_done(prepared.file.source)
            self._drain(final=True)
        finally:
            writer, self._writer = self._writer, None
            writer.close()
        if prune:  # only documents of the folders given: another folder's, same paths or not, stay
            dir_roots = {str(r) for r in found.dir_roots}
            for root, source in states:
                if root in dir_roots and (root, source) not in seen:
                    self._wrote = True
                    self.store.delete_source(root, source)
                    self.report.removed += 1
        if self._collection_ready or self.report.removed or self.report.updated:
            self.progress.stage("flush")
            with self._time("flush"):
                self.store.flush()
        if self._collection_ready and self._embedder().queries_unprepared():
            self.progress.stage("queries")
            with self._time("queries"):
                try:
                    self._embedder().prepare_queries()
                except Exception as exc:  # the documents are in; the first question will try again
                    log.warning("could not prepare the question embedder now (%s); the first search will", exc)
        self.report.seconds = time.perf_counter() - started
        return self.report

    def _prepare(self, file: SourceFile, state: DocState | None) -> Prepared:
        """Reader thread: hash, and unless the stored version is complete, decode, clean and chunk."""
        return prepare_file(file, state, self._chunker(), self._time, self.pdf_max_inflated, self.max_file_bytes)

    def _prepared(self, work: list[tuple[SourceFile, DocState | None]]) -> Iterable[Prepared]:
        """The files to account for, prepared, in any order: here by the reader thread (Ray overrides it)."""
        return _Reader(self._prepare, work)

    def _embed(self, batch: list[Chunk]) -> object:
        """Vectors for a batch of chunks: here the embedder (Ray's actors have done it already).

        A local embedder gets the batch longest first, one forward pass's worth at a time, so the progress
        bar moves per pass and not per batch (256 chunks are 20 s on a busy CPU); both local embedders sort
        by length and cut passes the same way themselves, so these are the passes one call would run.  An
        embedding server gets the whole batch: it sends its passes as concurrent requests."""
        emb = self._embedder()
        texts = [c.search_text for c in batch]
        if emb.backend == "remote" or len(texts) <= emb.batch_size:
            vectors = emb.embed_documents(texts)
            self.progress.chunks_embedded(len(texts))
            return vectors
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), emb.dimension), dtype=np.float32)
        for start in range(0, len(order), emb.batch_size):
            idx = order[start : start + emb.batch_size]
            out[idx] = emb.embed_documents([texts[i] for i in idx])
            self.progress.chunks_embedded(len(idx))
        return out

    def _store(self, job: Callable[[], None]) -> None:
        assert self._writer is not None
        self._wrote = True
        self._writer.submit(job)

    def _accept(self, p: Prepared) -> None:
        """This thread: account for one prepared file and queue its chunks for embedding."""
        file, state, version = p.file, p.state, p.version
        if p.error is not None:
            self._fail(str(file.path), p.error)
            return
        root = str(file.root)
        if not p.chunks:  # the stored version is complete
            assert state is not None
            if set(state.versions) == {version}:
                self.report.unchanged += 1
            else:  # a crash left an old version behind the complete new one
                self._store(partial(self.store.delete_source, root, file.source, keep_hash=version))
                self.report.updated += 1
            return
        if state is not None and version in state.versions:  # a half-written copy of this version
            self._store(partial(self.store.delete_source, root, file.source, only_hash=version))
        if state is None:
            self.report.added += 1
        else:
            self.report.updated += 1
        chunks = p.chunks
        if (root, file.source) in self._qualified:
            chunks = [replace(c, id=chunk_id(c.source, c.doc_hash, c.index, root=c.root)) for c in chunks]
        self._plans[(root, file.source)] = _Plan(file.source, version, len(chunks), state is not None)
        self._pending.extend(chunks)
        self.progress.chunks_queued(len(chunks))
        self._drain()

    def _drain(self, final: bool = False) -> None:
        while len(self._pending) >= self.batch_size or (final and self._pending):
            batch = [self._pending.popleft() for _ in range(min(self.batch_size, len(self._pending)))]
            if not self._collection_ready:
                self.progress.stage("model")
                with self._time("model"):  # first batch: load the model and create the collection
                    self._embedder().warm_up()
                    self._ensure_collection([c.text for c in batch])
                self._collection_ready = True
                self.progress.stage("embed")
            with self._time("embed"):
                vectors = self._embed(batch)
            self._store(partial(self._write, batch, vectors))

    def _write(self, batch: list[Chunk], vectors: object) -> None:
        """Writer thread: insert a batch, then finish each document whose last chunk it held."""
        with self._time("write"):
            self.store.insert(batch, vectors)
        self.report.chunks += len(batch)
        self.progress.chunks_written(len(batch))
        for c in batch:
            plan = self._plans[(c.root, c.source)]
            plan.remaining -= 1
            if plan.remaining == 0:
                if plan.drop_other_versions:
                    with self._time("write"):
                        self.store.delete_source(c.root, c.source, keep_hash=plan.doc_hash)
                del self._plans[(c.root, c.source)]
