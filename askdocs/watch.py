"""Watch mode: keep an index in step with folders while their files change.

``watchfiles`` (Rust ``notify``: inotify on Linux, FSEvents on macOS) reports changes and
debounces them: a burst of events (an editor's save-rename-chmod, a ``git checkout`` of a
hundred files) arrives as one set once the folder has been quiet for ``quiet_ms`` (watchfiles's
``step``), or after ``MAX_WAIT_MS`` of continuous changes, so a long copy still syncs as it goes.  Each
set triggers one ``Index.ingest(..., prune=True)``: the same sync as a manual re-run, so the
crash safety is the same (new chunks before old ones are deleted; a killed run is completed
by the next one), unchanged files are skipped by their hash, and deleted files are pruned.
A full sync per burst rather than per-file bookkeeping: it costs a hash of each file (about a
second for the 269 Milvus docs) and can never drift from what a plain ``askdocs ingest`` does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from watchfiles import Change, DefaultFilter, watch

from askdocs.load import FORMATS

if TYPE_CHECKING:
    from askdocs.index import Index
    from askdocs.ingest import IngestReport, ProgressSink

#: Quiet time that ends a burst of changes (watchfiles's ``step``; its own default, 50 ms, splits an
#: editor's save into several syncs).
QUIET_MS = 400
#: Longest a burst is held before it is synced anyway (watchfiles's ``debounce``).
MAX_WAIT_MS = 5000


class DocumentFilter(DefaultFilter):
    """Changes to files askdocs reads, outside hidden files and folders (``.git``, editors' swap files).

    Hidden is judged below the watched roots only, as ingest's folder walk does.  A deleted folder
    arrives as one event for the folder itself, so deletions of anything not hidden pass.
    """

    def __init__(self, roots: Sequence[Path]) -> None:
        super().__init__()
        self._roots = [r.resolve() for r in roots]

    def __call__(self, change: Change, path: str) -> bool:
        if not super().__call__(change, path):
            return False
        p = Path(path)
        for root in self._roots:
            if p.is_relative_to(root) and any(part.startswith(".") for part in p.relative_to(root).parts):
                return False
        return change == Change.deleted or p.suffix.lower() in FORMATS


def watch_and_sync(
    index: Index,
    paths: Sequence[str | os.PathLike[str]],
    *,
    on_sync: Callable[[IngestReport, set[tuple[Change, str]]], None] | None = None,
    progress: ProgressSink | None = None,
    stop_event: threading.Event | None = None,
    quiet_ms: int = QUIET_MS,
    lock: threading.Lock | None = None,
) -> None:
    """Sync ``paths`` into ``index`` now, then again after every burst of changes until ``stop_event``.

    ``on_sync`` gets each report and the changes that caused it (an empty set for the first sync).
    Folders and single files can be watched; a glob cannot (there is nothing to watch until it matches).
    ``lock``, when given, is held for each sync (the server's one-writer lock).
    """
    targets = [os.fspath(p) for p in paths]
    missing = [p for p in targets if not Path(p).exists()]
    if missing:
        from askdocs.errors import AskdocsError

        raise AskdocsError(f"--watch needs existing folders or files: {', '.join(missing)} not found")

    def sync() -> IngestReport:
        with lock or contextlib.nullcontext():
            return index.ingest(*targets, prune=True, progress=progress)

    report = sync()
    if on_sync is not None:
        on_sync(report, set())
    for changes in watch(
        *targets,
        watch_filter=DocumentFilter([Path(t) if Path(t).is_dir() else Path(t).parent for t in targets]),
        step=quiet_ms,
        debounce=max(MAX_WAIT_MS, quiet_ms),
        stop_event=stop_event,
        raise_interrupt=False,
    ):
        if stop_event is not None and stop_event.is_set():
            return
        report = sync()
        if on_sync is not None:
            on_sync(report, changes)


def watch_cli(index: Index, paths: Sequence[str], *, as_json: bool, quiet: bool, echo: Callable[..., None]) -> None:
    """``askdocs ingest --watch``: one line (or one JSON report) per sync, until Ctrl-C."""
    import json
    import time

    def report_line(report: IngestReport, changes: set[tuple[Change, str]]) -> None:
        if as_json:
            print(json.dumps({**report.to_dict(), "changes": sorted(p for _, p in changes)}), flush=True)
            return
        for path, reason in report.failures:
            echo(f"skipped {path}: {reason}", highlight=False)
        if not quiet:
            names = sorted({Path(p).name for _, p in changes})
            cause = f" after changes to {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}" if names else ""
            echo(f"{time.strftime('%H:%M:%S')} synced{cause}: {report.summary()}", highlight=False)

    # Ctrl-C sets a stop flag rather than raising wherever the main thread happens to be (inside a Milvus
    # call, say): the watcher ends at its next check, a sync in progress finishes first, and the Lite file is
    # closed cleanly.  A second Ctrl-C stops at once (an ingest is crash-safe either way).
    stop = threading.Event()

    def on_interrupt(signum: int, frame: object) -> None:
        if stop.is_set():
            signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt
        stop.set()
        if not as_json:
            echo("stopping (Ctrl-C again to stop at once)", highlight=False)

    if not quiet and not as_json:
        echo(f"watching {', '.join(paths)} (Ctrl-C stops)", highlight=False)
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        watch_and_sync(index, paths, on_sync=report_line)
        return
    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        watch_and_sync(index, paths, on_sync=report_line, stop_event=stop)
    finally:
        signal.signal(signal.SIGINT, previous)
