"""Watch mode: files added, changed and deleted in a watched folder show up in search, debounced."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from askdocs import Index
from askdocs.watch import watch_and_sync

TIMEOUT = 120


def _wait(reports: queue.Queue, want) -> object:
    """The next sync report for which ``want(report)`` holds (earlier, unrelated syncs are passed over)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        report, changes = reports.get(timeout=max(deadline - time.monotonic(), 0.1))
        if want(report):
            return report, changes
    raise AssertionError("no matching sync")


def test_watch_follows_add_modify_delete(tmp_path: Path, make_index) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "hnsw.md").write_text("# HNSW\n\nHNSW builds a layered graph; M is the node degree.\n")
    index: Index = make_index()
    reports: queue.Queue = queue.Queue()
    stop = threading.Event()

    def on_sync(report, changes):
        reports.put((report, changes))

    def run() -> None:  # the test searches between syncs, while this thread waits for changes
        watch_and_sync(index, [folder], on_sync=on_sync, stop_event=stop, quiet_ms=1000)

    watcher = threading.Thread(target=run, daemon=True)
    watcher.start()
    try:
        first, changes = _wait(reports, lambda r: True)
        assert first.added == 1 and changes == set()
        time.sleep(0.5)  # watchfiles has started watching once the first sync returned

        # a burst of writes to one new file (an editor's save) is one sync, not three
        new = folder / "ivf.md"
        for i in range(3):
            new.write_text(f"# IVF\n\nIVF_FLAT splits vectors into nlist clusters (draft {i}).\n")
            time.sleep(0.05)
        (folder / ".swap.md").write_text("hidden: never indexed")
        (folder / "tool.py").write_text("print('not a document')")
        added, changes = _wait(reports, lambda r: r.added)
        assert added.added == 1 and added.unchanged == 1 and added.updated == 0
        assert {Path(p).name for _, p in changes} == {"ivf.md"}
        hit = index.search("How many clusters does IVF_FLAT use?", k=1)[0]
        assert hit.source == "ivf.md" and "draft 2" in hit.text

        new.write_text("# IVF\n\nIVF_PQ compresses each cluster's vectors with product quantization.\n")
        updated, _ = _wait(reports, lambda r: r.updated)
        assert updated.updated == 1
        hit = index.search("product quantization", k=1)[0]
        assert hit.source == "ivf.md" and "IVF_PQ" in hit.text
        assert "nlist" not in " ".join(h.text for h in index.search("nlist clusters", k=5, mode="bm25"))

        new.unlink()
        removed, _ = _wait(reports, lambda r: r.removed)
        assert removed.removed == 1
        assert {d.source for d in index.documents()} == {"hnsw.md"}
    finally:
        stop.set()
        watcher.join(timeout=30)
    assert not watcher.is_alive()


def test_cli_watch_syncs_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\nAlpha text about vector search.\n")
    env = {**os.environ, "ASKDOCS_MILVUS_URI": str(tmp_path / "w.db"), "ASKDOCS_EMBED_DEVICE": "cpu"}
    errors = (tmp_path / "stderr.txt").open("w+")  # a file, not a pipe that nobody drains while it runs
    proc = subprocess.Popen(
        [sys.executable, "-m", "askdocs.cli", "ingest", "--watch", "--json", str(folder)],
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
        env=env,
    )
    try:
        import json

        first = json.loads(proc.stdout.readline())
        assert first["added"] == 1 and first["changes"] == []
        time.sleep(1.0)
        (folder / "b.md").write_text("# B\n\nBravo text about replicas.\n")
        second = json.loads(proc.stdout.readline())
        assert second["added"] == 1 and second["unchanged"] == 1
        assert [Path(p).name for p in second["changes"]] == ["b.md"]
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)  # the second Ctrl-C stops at once
            proc.wait(timeout=30)
            raise AssertionError(f"one Ctrl-C did not stop it: {Path(errors.name).read_text()[-3000:]}") from None
        assert code == 0, Path(errors.name).read_text()[-3000:]
        assert "Traceback" not in Path(errors.name).read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        errors.close()
    with Index(milvus_uri=str(tmp_path / "w.db")) as index:  # the watcher released the Lite file
        assert {d.source for d in index.documents()} == {"a.md", "b.md"}
