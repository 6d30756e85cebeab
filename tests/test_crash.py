"""kill -9 in the middle of an ingest, then a rerun: exactly the expected chunk ids, no more, no fewer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from askdocs import Index


def _ingest_cmd(corpus: Path, db: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "askdocs.cli",
        "ingest",
        str(corpus),
        "--uri",
        str(db),
        "--quiet",
        "--batch-size",
        "8",
    ]


def _ids(db: Path, embedder) -> list[str]:
    with Index(milvus_uri=str(db), embedder=embedder) as index:
        index.store.client.load_collection("askdocs")
        rows = index.store.client.query("askdocs", filter="", output_fields=["id"], limit=16384)
    return [r["id"] for r in rows]


def _timed_run(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, env=env, timeout=900)
    return time.monotonic() - t0


def test_kill_9_at_several_points_then_rerun_converges(sample_copy: Path, tmp_path: Path, embedder) -> None:
    env = {**os.environ, "ASKDOCS_EMBED_DEVICE": "cpu"}
    # Start-up (imports, model load) measured on a one-file corpus, then the whole run: the kills
    # are placed inside the work that follows start-up, not in it.
    one = tmp_path / "one"
    one.mkdir()
    (one / "a.md").write_text("# A\n\nOne small document.\n")
    startup = _timed_run(_ingest_cmd(one, tmp_path / "one.db"), env)
    clean_db = tmp_path / "clean.db"
    duration = _timed_run(_ingest_cmd(sample_copy, clean_db), env)
    work = max(duration - startup, 1.0)
    expected = _ids(clean_db, embedder)
    assert len(expected) == len(set(expected)) > 100

    crash_db = tmp_path / "crash.db"
    target = sample_copy / "reference" / "index.md"
    original = target.read_text(encoding="utf-8")
    kills = 0
    for n in range(3):
        proc = subprocess.Popen(_ingest_cmd(sample_copy, crash_db), env=env)
        time.sleep(startup + work * 0.3)  # each run gets about 30% of the work done before it dies
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        # One document changes between crashes and changes back: an update is interrupted as well.
        target.write_text(original + "\n\nAppended between two crashes.\n" if n == 0 else original, encoding="utf-8")
    assert kills >= 2, "the ingest finished before it could be killed; the test proved nothing"

    done = subprocess.run(_ingest_cmd(sample_copy, crash_db), env=env, timeout=900)
    assert done.returncode == 0
    got = _ids(crash_db, embedder)
    assert len(got) == len(set(got)), "duplicate chunk ids after recovery"
    assert set(got) == set(expected)
