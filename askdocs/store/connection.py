"""The connection to Milvus: which engine a URI means, the Milvus Lite file lock, errors explained, retries.

The URI alone picks the backend, as in pymilvus: a path ending in ``.db`` is Milvus Lite (``is_lite`` is the one
rule askdocs uses for that), an ``http(s)://`` address a Milvus server or cluster.

Milvus Lite 2.5 runs Milvus's C++ engine in a child process of the first client that opens a file, and guards
the file with a POSIX lock on ``.NAME.db.lock`` beside it.  pymilvus reports every reason it cannot open a
file with the same words, so ``LiteFile.precheck`` finds the real one first (missing folder, read-only,
another process, a name Lite refuses, a folder left by Milvus Lite 3).
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import re
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from askdocs.errors import AskdocsError, StoreError

if TYPE_CHECKING:
    from pymilvus import MilvusClient

log = logging.getLogger(__name__)

# milvus-lite 2.5 imports pkg_resources (hence setuptools<81 in pyproject), whose deprecation warning would
# otherwise land on every command's stderr.  Only that message is silenced.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

T = TypeVar("T")

#: Chunks up to which embedded Milvus Lite keeps a hybrid query's p50 under 50 ms on a 2-core CPU: measured 25 ms
#: at 100,000 (benchmarks/results/engines.md), 71 ms at 1,000,000 (speed.md).  Beyond it, a Milvus server.
LITE_CHUNK_LIMIT = 100_000

#: How long a call keeps retrying a Milvus server that went away (the ``milvus_retry_seconds`` setting).
RETRY_SECONDS = 30.0

# Words of the errors that mean "the server is not there (right now)", from gRPC, pymilvus's reconnect,
# and a Milvus proxy whose own components are shutting down.
_UNREACHABLE = (
    "fail connecting",
    "failed to connect",
    "unavailable",
    "connection refused",
    "connection reset",
    "closed channel",
    "socket closed",
    "empty grpc client",
)

_HELD = (
    "Milvus Lite file {uri} is already open in another process (Lite allows one). Stop that process, "
    "or share the index through a Milvus server (a Milvus standalone, or Milvus Lite's own: "
    "`python -c \"from milvus_lite.server import Server; s = Server('{uri}', '127.0.0.1:19530'); s.start(); "
    'input()"`) and --uri http://127.0.0.1:19530.'
)

# One pymilvus connection alias per askdocs connection (see Connection._connect).
_ALIASES = itertools.count(1)

# Processes of this interpreter that use each Lite file (pymilvus shares one Lite engine per file and process).
_LITE_USERS: dict[str, int] = {}


def is_lite(uri: str) -> bool:
    """Milvus Lite, by pymilvus's own rule: a URI that names a local ``.db`` file."""
    return uri.endswith(".db")


def unreachable(exc: BaseException) -> bool:
    low = str(exc).lower()
    return any(word in low for word in _UNREACHABLE)


def lite_engine() -> str | None:
    """The installed Milvus Lite's version ("2.5.1"), or None when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("milvus-lite")
    except PackageNotFoundError:
        return None


class LiteFile:
    """A Milvus Lite file: its lock, its users in this process, and why it might not open."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.path = Path(uri).expanduser().absolute()
        self.key = str(self.path)

    @property
    def lock_path(self) -> Path:
        return self.path.parent / f".{self.path.name}.lock"  # milvus_lite.server.Server's own choice

    def precheck(self) -> None:
        """Say precisely why the file cannot be opened; nothing is raised when it can."""
        uri, path = self.uri, self.path
        if not path.parent.exists():
            raise StoreError(f"cannot open Milvus Lite at {uri}: folder {path.parent} does not exist")
        if not path.parent.is_dir():  # else the lock file fails, which read as "open in another process"
            raise StoreError(f"cannot open Milvus Lite at {uri}: {path.parent} is a file, not a folder")
        engine = lite_engine()
        if engine is None:
            raise StoreError(
                f"cannot open Milvus Lite at {uri}: milvus-lite is not installed on this platform; "
                "use a Milvus server with --uri http://HOST:19530"
            )
        if engine.startswith("2.") and path.is_dir():
            raise StoreError(
                f"{uri} is a Milvus Lite 3 index (a folder); this askdocs uses Milvus Lite {engine}, which "
                "keeps an index in one file. Re-ingest into a new file (--uri new.db), or move the folder "
                "aside and ingest again"
            )
        if engine.startswith("2.") and (not re.fullmatch(r"[A-Za-z0-9.\-_]+", path.name) or len(path.name) > 36):
            raise StoreError(
                f"cannot open Milvus Lite at {uri}: Milvus Lite accepts file names of at most 36 letters, digits, "
                "'.', '-' or '_'; choose another name"
            )
        target = path if path.exists() else path.parent
        if not os.access(target, os.W_OK):
            raise StoreError(
                f"cannot open Milvus Lite at {uri}: {target} is not writable (read-only file system or "
                "permissions). Milvus Lite writes even to search; make it writable or copy the index elsewhere"
            )
        if self.key in _LITE_USERS:  # this process holds it (pymilvus shares the engine): a POSIX lock test
            return  # here would be granted, and closing its descriptor would drop this process's own lock
        if engine.startswith("2."):
            self._test_lock(self.lock_path, posix=True)
        else:
            self._test_lock(path / "LOCK", posix=False)

    def _test_lock(self, lock: Path, posix: bool) -> None:
        if not lock.exists():
            return
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError as exc:
            raise StoreError(f"cannot open Milvus Lite at {self.uri}: {exc.strerror}") from None
        try:
            if posix:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.lockf(fd, fcntl.LOCK_UN)
            else:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:  # BlockingIOError for flock, EACCES/EAGAIN for POSIX locks
            raise StoreError(_HELD.format(uri=self.uri)) from None
        finally:
            os.close(fd)

    def disk_nearly_full(self) -> bool:
        """Whether the file's file system has under 16 MiB free: Lite 2.5's engine process reports a full disk
        only as "Unexpected error in RPC handling" (after pymilvus's 75 retries), so the cause is looked up."""
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return False
        return st.f_bavail * st.f_frsize < 16 * 2**20

    def opened(self) -> None:
        _LITE_USERS[self.key] = _LITE_USERS.get(self.key, 0) + 1

    def release(self) -> None:
        """Stop this process's Lite engine for the file once nothing here uses it.

        pymilvus's ``close()`` leaves the Lite engine (and its file lock) running until the process exits,
        so a closed ``Index`` would still keep every other process off the file.
        """
        _LITE_USERS[self.key] = _LITE_USERS.get(self.key, 1) - 1
        if _LITE_USERS[self.key] > 0:
            return
        del _LITE_USERS[self.key]
        try:
            from milvus_lite.server_manager import server_manager_instance
        except ImportError:  # another Lite implementation: it manages its own lifetime
            return
        server_manager_instance.release_server(self.key)


class Connection:
    """A lazily opened ``MilvusClient`` with askdocs's error wording and server retries."""

    def __init__(self, uri: str, token: str | None = None, retry_seconds: float = RETRY_SECONDS) -> None:
        self.uri = uri
        self.token = token
        self.retry_seconds = retry_seconds
        self.lite = LiteFile(uri) if is_lite(uri) else None
        self._client: MilvusClient | None = None
        self._reached = False  # this process has talked to the server: a later failure is worth waiting out
        self.generation = 0  # bumped on every new client: a collection loaded on an old one must be loaded again
        # the server's request threads share one Index: the first of them to connect makes the one client
        self._connect_lock = threading.Lock()

    @property
    def client(self) -> MilvusClient:
        """The connected client; connection failures are raised as ``StoreError``."""
        try:
            return self.connected()
        except AskdocsError:
            raise
        except Exception as exc:  # pymilvus raises several unrelated types here
            raise StoreError(self.explain(exc)) from None

    def connected(self) -> MilvusClient:
        client = self._client
        if client is not None:
            return client
        with self._connect_lock:
            if self._client is None:
                self._client = self._connect()
                self._reached = True
                self.generation += 1
            return self._client

    def _connect(self) -> MilvusClient:
        from pymilvus import MilvusClient

        # its RPC errors come back to us, explained; pymilvus.milvus_client has its own level (INFO), not
        # pymilvus's: it logged "Failed to create new connection" above the one-line error
        for name in ("pymilvus", "pymilvus.milvus_client"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        if self.lite is not None:
            # On Milvus Lite every query_iterator asks for a timestamp the engine does not serve; pymilvus
            # falls back to a client-side one and logs the harmless miss.
            logging.getLogger("milvus_lite").setLevel(logging.CRITICAL)  # failures reach us, explained
            self.lite.precheck()
        # pymilvus names a client's connection after its URI (and token), so every client of one URI shares it,
        # and ``close()`` removes it for all of them: one Index closing (a second server, a finished ingest job)
        # left every other handle on the file with "should create connection first".  A private alias keeps
        # each connection to itself; Lite's engine is still one per file (pymilvus's server manager).
        alias = f"askdocs-{os.getpid()}-{next(_ALIASES)}"
        client = MilvusClient(uri=self.uri, token=self.token or "", alias=alias)
        if self.lite is not None:
            self.lite.opened()
        return client

    def drop_client(self) -> None:
        """Forget a server connection whose channel is gone, so the next attempt dials afresh."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # the connection is already broken; closing is best effort
                client.close()

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None
                if self.lite is not None:
                    self.lite.release()

    def explain(self, exc: BaseException, waited: float | None = None) -> str:
        text = str(exc)
        low = text.lower()
        if "no space left" in low or (self.lite is not None and self.lite.disk_nearly_full()):
            return (
                f"disk full writing to Milvus at {self.uri}: free some space and run the ingest again; "
                "documents written so far are complete, the rest will be added"
            )
        if "read-only file system" in low:
            return f"Milvus at {self.uri} is on a read-only file system: make it writable and run again"
        if self.lite is not None and ("lock" in low or "open local milvus failed" in low):
            return _HELD.format(uri=self.uri)
        detail = getattr(exc, "message", None) or text  # MilvusException's own words, without its repr
        if unreachable(exc):
            tried = f" (retried for {waited:.0f}s)" if waited else ""
            return f"cannot reach Milvus at {self.uri}{tried}: {detail}. Is the server running, and is the URI right?"
        return f"Milvus at {self.uri}: {detail}"

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``MilvusClient.<method>(*args, **kwargs)``, with the retries and errors of ``retrying``."""
        return self.retrying(lambda retry: getattr(self.connected(), method)(*args, **kwargs))

    def retrying(self, op: Callable[[bool], T]) -> T:
        """Run ``op`` (told whether this is a retry), waiting out a Milvus server that went away.

        pymilvus retries an RPC that fails with UNAVAILABLE only while its own channel reconnects; a server
        that is down for a few seconds (a restart, a failover) fails the call anyway.  So the retry lives
        here: a fresh connection after 0.5 s, 1 s, 2 s ... (8 s at most between tries) for up to
        ``retry_seconds``, then one error that names the URI.  Only a server this process has already
        reached is waited for: one that is down when a command starts (or a wrong URI) is reported at once.
        Milvus Lite is this process's own child; there is nothing to wait for.  ``op`` must be idempotent
        when retried (it gets True then).
        """
        started: float | None = None
        delay = 0.5
        while True:
            try:
                return op(started is not None)
            except AskdocsError:
                raise
            except Exception as exc:
                if self.lite is not None or not self._reached or not unreachable(exc) or self.retry_seconds <= 0:
                    raise StoreError(self.explain(exc)) from None
                now = time.monotonic()
                if started is None:
                    started = now
                    log.warning("Milvus at %s is unreachable; retrying for up to %.0fs", self.uri, self.retry_seconds)
                if now + delay - started > self.retry_seconds:
                    raise StoreError(self.explain(exc, waited=now - started)) from None
                self.drop_client()
                time.sleep(delay)
                delay = min(delay * 2, 8.0)
