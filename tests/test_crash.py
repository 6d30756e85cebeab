"""kill -9 in the middle of an ingest, then a rerun: exactly the expected chunk ids, no more, no fewer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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
        if not index.store.exists():
            return []
        index.store.client.load_collection("askdocs")
        rows = index.store.client.query("askdocs", filter="", output_fields=["id"], limit=16384)
    return [r["id"] for r in rows]


# Ten kill points across the stages of an ingest: reading and cleaning files, the model load and
# collection creation, embedding, the writes (inserts and deletes of old versions) and the flush.
KILL_POINTS = [  # counts stay small: each rerun skips the documents already complete
    "load:3",
    "model:1",
    "embed:2",
    "clean:2",
    "write:1",
    "chunk:2",
    "embed:3",
    "write:3",
    "load:1",
    "flush:1",
]


def test_kill_9_at_ten_stage_points_then_rerun_converges(sample_copy: Path, tmp_path: Path, embedder) -> None:
    env = {**os.environ, "ASKDOCS_EMBED_DEVICE": "cpu"}
    clean_db = tmp_path / "clean.db"
    subprocess.run(_ingest_cmd(sample_copy, clean_db), check=True, env=env, timeout=900)
    expected = _ids(clean_db, embedder)
    assert len(expected) == len(set(expected)) > 100

    crash_db = tmp_path / "crash.db"
    target = sample_copy / "reference" / "index.md"
    original = target.read_text(encoding="utf-8")
    killed = []
    for n, point in enumerate(KILL_POINTS):
        run = subprocess.run(_ingest_cmd(sample_copy, crash_db), env={**env, "ASKDOCS_FAULT": point}, timeout=900)
        if run.returncode == -signal.SIGKILL:
            killed.append(point)
        # One document changes between crashes and changes back: updates are interrupted as well.
        target.write_text(original + f"\n\nAppended before run {n}.\n" if n % 3 == 0 else original, encoding="utf-8")
        # no duplicates at any point, even mid-recovery
        got = _ids(crash_db, embedder) if crash_db.exists() else []
        assert len(got) == len(set(got)), f"duplicate chunk ids after the kill at {point}"
    assert len(killed) >= 8, f"only {killed} were reached; the test proved too little"

    target.write_text(original, encoding="utf-8")
    done = subprocess.run(_ingest_cmd(sample_copy, crash_db), env=env, timeout=900)
    assert done.returncode == 0
    got = _ids(crash_db, embedder)
    assert len(got) == len(set(got)), "duplicate chunk ids after recovery"
    assert set(got) == set(expected)
