"""kill -9 in the middle of an ingest, then a rerun: exactly the expected chunk ids, no more, no fewer."""

from __future__ import annotations

import os
import shutil
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


def _rows(db: Path, embedder) -> list[tuple[str, str, str, str, int]]:
    with Index(milvus_uri=str(db), embedder=embedder) as index:
        if not index.store.exists():
            return []
        index.store.client.load_collection("askdocs")
        fields = ["id", "root", "source", "doc_hash", "chunk_index"]
        rows = index.store.client.query("askdocs", filter="", output_fields=fields, limit=16384)
    return [(r["id"], r["root"], r["source"], r["doc_hash"], r["chunk_index"]) for r in rows]


def test_kill_9_with_two_folders_sharing_paths_then_rerun_converges(
    sample_copy: Path, tmp_path: Path, embedder
) -> None:
    """colA and colB hold the same paths (identical files, and one that differs): whatever the kill, the rerun
    leaves both folders' documents whole, once.  Ids of shared sources may take either form after a crash (the
    first root to hold a source keeps the old form), so rows are compared by document, version and index."""
    a, b = tmp_path / "colA", tmp_path / "colB"
    for folder in (a, b):
        shutil.copytree(sample_copy / "reference", folder)
    (b / "index.md").write_text((b / "index.md").read_text(encoding="utf-8") + "\n\nOnly colB says this.\n")
    cmd = [*_ingest_cmd(a, tmp_path / "clean.db"), str(b)]
    env = {**os.environ, "ASKDOCS_EMBED_DEVICE": "cpu"}
    subprocess.run(cmd, check=True, env=env, timeout=900)
    expected = {r[1:] for r in _rows(tmp_path / "clean.db", embedder)}
    assert {r[0] for r in expected} == {str(a), str(b)} and len(expected) > 100

    crash_db = tmp_path / "crash.db"
    cmd = [*_ingest_cmd(a, crash_db), str(b)]
    killed = []
    for point in ("write:2", "embed:4", "write:5", "flush:1"):
        run = subprocess.run(cmd, env={**env, "ASKDOCS_FAULT": point}, timeout=900)
        if run.returncode == -signal.SIGKILL:
            killed.append(point)
        rows = _rows(crash_db, embedder)
        assert len({r[0] for r in rows}) == len(rows) == len({r[1:] for r in rows}), f"duplicates after {point}"
    assert len(killed) >= 3, f"only {killed} were reached; the test proved too little"
    assert subprocess.run(cmd, env=env, timeout=900).returncode == 0
    rows = _rows(crash_db, embedder)
    assert len({r[0] for r in rows}) == len(rows) and {r[1:] for r in rows} == expected
