"""Ingest on Ray Data: files read, cleaned and chunked in Ray tasks, chunks embedded by an actor pool.

Everything that decides *what* is written, and in which order, is the local ``Ingestor``'s: this
module only replaces where documents are prepared (``_prepared``) and where their vectors come
from (``_embed``).  So the sync semantics are the local ones by construction:

- the driver hashes every file and skips the unchanged ones against the collection's state before
  any Ray work (an unchanged rerun does not even start Ray);
- changed files go through Ray: a task per block of files reads, cleans and chunks them
  (``prepare_file``, the local reader's function), then an actor pool embeds them (``num_gpus=1`` per
  actor where the cluster has GPUs, CPU actors otherwise);
- the driver receives whole documents with their vectors and writes them through the local
  ``Ingestor``'s crash-safe order (half-written copy deleted, new chunks inserted, then the old
  version deleted), on its writer thread.  Milvus Lite is one process per file, and a Milvus server
  takes the driver's batched inserts as well, so the driver does all the writes.

A document travels through Ray as one row holding its pickled ``Prepared`` record (and later its
vectors): its chunks must reach the driver together, so that the driver can apply the write order
per document, and a pickled row needs no Arrow schema for the nested chunk records.

Ray (``pip install 'askdocs[ray]'``) is imported only here.  On a cluster, every node needs askdocs
installed and the files readable at the same path (a shared or synced folder).
"""

from __future__ import annotations

import logging
import pickle
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from askdocs.chunk import Chunk, Chunker
from askdocs.config import Settings
from askdocs.embed import Embedder, make_embedder
from askdocs.embed_remote import BACKEND as REMOTE
from askdocs.embed_remote import remote_embedder
from askdocs.errors import AskdocsError, LoadError
from askdocs.identity import DocKey
from askdocs.ingest import Ingestor, IngestReport, Prepared, prepare_file
from askdocs.load import SourceFile, content_hash, read_bytes
from askdocs.store import DocState

log = logging.getLogger(__name__)

#: Documents per actor call: a few hundred chunks, enough to keep a GPU's batches full.
DOCS_PER_BATCH = 16


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise AskdocsError("--ray needs Ray: pip install 'askdocs[ray]'") from None
    return ray


def connect(address: str, cpus: int) -> bool:
    """Join the cluster at ``address`` (``auto``, ``ray://host:10001``) or start a local instance.

    Returns whether this call started Ray (and so should shut it down).
    """
    ray = _ray()
    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    local = address in ("", "local")
    # A local instance on a busy machine can miss Ray's fixed 30 s start-up wait: try it three times.
    for attempt in range(3 if local else 1):
        try:
            if local:
                ray.init(num_cpus=cpus, **quiet)
            else:
                ray.init(address=address, **quiet)
            break
        except Exception as exc:  # Ray raises bare Exception for a start-up timeout
            ray.shutdown()
            if attempt == (2 if local else 0):
                where = "start a local Ray instance" if local else f"join the Ray cluster at {address}"
                raise AskdocsError(f"cannot {where}: {exc}") from None
            log.warning("Ray did not start (%s); trying again", exc)
    for name in ("ray", "ray.data"):  # its progress and execution chatter; errors still show
        logging.getLogger(name).setLevel(logging.ERROR)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # askdocs draws its own, per file, as locally
    ctx.print_on_execution_start = False
    return True


@contextmanager
def _stage_timer(stages: dict[str, float], name: str) -> Iterator[None]:
    t = time.perf_counter()
    try:
        yield
    finally:
        stages[name] = stages.get(name, 0.0) + time.perf_counter() - t


def _prepare_row(row: dict[str, Any], chunker: Chunker, pdf_max_inflated: int) -> dict[str, Any]:
    """Ray task: read, clean and chunk one file, with the local reader's function."""
    stages: dict[str, float] = {}
    file = SourceFile(Path(row["path"]), Path(row["root"]), row["source"], row["fmt"])

    def timer(name: str) -> AbstractContextManager:
        return _stage_timer(stages, name)

    prepared = prepare_file(file, None, chunker, timer, pdf_max_inflated)
    return {"source": file.source, "payload": pickle.dumps((prepared, stages))}


class EmbedActor:
    """One embedding model per actor, loaded once; embeds whole documents, all their chunks in one call."""

    def __init__(self, make: Callable[[], Embedder]) -> None:
        self.embedder = make()
        self.embedder.warm_up()
        self.node = _ray().get_runtime_context().get_node_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        docs = [pickle.loads(p) for p in batch["payload"]]
        texts = [c.search_text for prepared, _ in docs for c in prepared.chunks]
        t = time.perf_counter()
        vectors = self.embedder.embed_documents(texts) if texts else np.zeros((0, 0), dtype=np.float32)
        seconds = time.perf_counter() - t
        out, at = [], 0
        for prepared, stages in docs:
            n = len(prepared.chunks)
            stages["embed"] = stages.get("embed", 0.0) + seconds * n / max(len(texts), 1)
            out.append(pickle.dumps((prepared, vectors[at : at + n], stages)))
            at += n
        return {"source": list(batch["source"]), "payload": out, "node": [self.node] * len(out)}


class _EmbedderFactory:
    """What an actor needs to build the driver's embedder: its public settings, not the loaded model."""

    def __init__(self, emb: Embedder, settings: Settings, gpu: bool) -> None:
        self.settings = settings
        self.remote = emb.backend == REMOTE
        self.args = (emb.model_name, emb.backend, "cuda" if gpu else emb.device, emb.batch_size, emb.query_instruction)

    def __call__(self) -> Embedder:
        if self.remote:
            return remote_embedder(self.settings, self.args[0])
        return make_embedder(*self.args)


class RayIngestor(Ingestor):
    """The local ``Ingestor`` with documents prepared by Ray tasks and embedded by Ray actors."""

    def __init__(self, *args: Any, settings: Settings, address: str = "local", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = settings
        self.address = address
        self._vectors: dict[tuple[str, str, int], np.ndarray] = {}  # (root, source, chunk index) -> vector
        self._started = False
        #: documents embedded per Ray node id: where the actors ran
        self.nodes: Counter[str] = Counter()
        #: whether this run handed any work to Ray
        self.used_ray = False

    def run(self, inputs: Iterable[str], prune: bool = False) -> IngestReport:
        try:
            return super().run(inputs, prune)
        finally:
            if self._started:
                _ray().shutdown()

    def _version(self, file: SourceFile, state: DocState | None) -> Prepared:
        """The driver's part: the file's version hash, so that unchanged files never reach Ray."""
        out = Prepared(file, state)
        try:
            with self._time("load"):
                out.version = self._chunker().version_hash(content_hash(read_bytes(file)))
        except LoadError as exc:
            out.error = str(exc)
        return out

    def _prepared(self, work: list[tuple[SourceFile, DocState | None]]) -> Iterator[Prepared]:
        todo: list[tuple[SourceFile, DocState | None]] = []
        for file, state in work:
            p = self._version(file, state)
            if p.error is not None or (state is not None and state.complete(p.version)):
                yield p  # failed or unchanged: accounted for here, as the local reader would
            else:
                todo.append((file, state))
        if todo:
            yield from self._on_ray(todo)

    def _on_ray(self, todo: list[tuple[SourceFile, DocState | None]]) -> Iterator[Prepared]:
        ray = _ray()
        s = self.settings
        with self._time("ray_start"):
            self._started = connect(self.address, s.ray_cpus)
        self.used_ray = True
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        pool = s.ray_actors or (gpus or max(1, int(resources.get("CPU", 1)) // 2))
        factory = _EmbedderFactory(self._embedder(), s, gpu=gpus > 0)
        if gpus and factory.args[1] in ("onnx", "onnx-int8"):
            raise AskdocsError(
                f"the Ray cluster has {gpus} GPUs but embed_backend is {factory.args[1]} (CPU only): "
                "use --embed-backend torch"
            )
        chunker = self._chunker()
        states = {(str(f.root), f.source): st for f, st in todo}
        items = [{"path": str(f.path), "root": str(f.root), "source": f.source, "fmt": f.fmt} for f, _ in todo]
        ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 4 * pool)))
        # Tasks of their own (half a CPU each, so Ray does not fuse them into the actors): reading and
        # chunking the next files overlaps the embedding, as the local reader thread does.
        ds = ds.map(
            _prepare_row, fn_kwargs={"chunker": chunker, "pdf_max_inflated": self.pdf_max_inflated}, num_cpus=0.5
        )
        with warnings.catch_warnings():  # max_restarts goes through ray_remote_args, deprecated in name only
            warnings.simplefilter("ignore", DeprecationWarning)
            ds = ds.map_batches(
                EmbedActor,
                fn_constructor_kwargs={"make": factory},
                batch_size=DOCS_PER_BATCH,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=pool),
                num_gpus=1 if gpus else 0,
                num_cpus=s.ray_actor_cpus,
                max_restarts=0,  # a failed actor fails the run (the rerun resumes); no restart from lost arguments
            )
        try:
            yield from self._results(ds, states)
        except ray.exceptions.RayError as exc:  # a task or actor failed: its own error, in one line
            cause = str(exc).strip().splitlines()
            raise AskdocsError(f"the Ray ingest failed: {cause[-1] if cause else type(exc).__name__}") from None

    def _results(self, ds: Any, states: dict[DocKey, DocState | None]) -> Iterator[Prepared]:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for payload, node in zip(batch["payload"], batch["node"], strict=True):
                prepared, vectors, stages = pickle.loads(payload)
                prepared.state = states[(str(prepared.file.root), prepared.file.source)]
                for name, sec in stages.items():
                    self.report.stages[f"ray_{name}"] = self.report.stages.get(f"ray_{name}", 0.0) + sec
                for chunk, vec in zip(prepared.chunks, vectors, strict=True):  # by document, not id: see _accept
                    self._vectors[(chunk.root, chunk.source, chunk.index)] = vec
                self.nodes[str(node)] += 1
                yield prepared

    def _embed(self, batch: list[Chunk]) -> object:
        vectors = np.stack([self._vectors.pop((c.root, c.source, c.index)) for c in batch])
        self.progress.chunks_embedded(len(batch))  # embedded on the actors already: counted as they arrive
        return vectors
