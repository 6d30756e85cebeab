"""Storage faults: a full disk and a read-only index folder give one clear error and corrupt nothing.

Both use a real tmpfs mount (root only; skipped elsewhere): a small one that fills up during an
ingest, and one remounted read-only under an existing index.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from askdocs import Index


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Path]:
    point = tmp_path / "mnt"
    point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(point)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)])


def remount(point: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(point)], check=True)


def ingest(corpus: Path, db: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "askdocs.cli", "ingest", str(corpus), "--uri", str(db), "--batch-size", "16"]
    env = {**os.environ, "ASKDOCS_EMBED_DEVICE": "cpu"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)


def ids(db: Path, embedder) -> list[str]:
    with Index(milvus_uri=str(db), embedder=embedder) as ix:
        if not ix.store.exists():
            return []
        ix.store.client.load_collection("askdocs")
        return [r["id"] for r in ix.store.client.query("askdocs", filter="", output_fields=["id"], limit=16384)]


def test_read_only_index_folder(mount: Path, docs: Path, embedder) -> None:
    db = mount / "index.db"
    assert ingest(docs, db).returncode == 0
    before = sorted(ids(db, embedder))
    (docs / "notes.txt").write_text("Changed text about Milvus Lite files.\n")
    remount(mount, "ro")
    run = ingest(docs, db)
    assert run.returncode == 1
    assert "read-only" in run.stderr.lower() and str(db) in run.stderr, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    remount(mount, "rw")
    assert sorted(ids(db, embedder)) == before, "the failed ingest changed the index"
    again = ingest(docs, db)
    assert again.returncode == 0 and "1 updated" in again.stderr, again.stderr[-2000:]


def test_disk_full_then_room_again(mount: Path, sample_copy: Path, tmp_path: Path, embedder) -> None:
    clean = tmp_path / "clean.db"
    assert ingest(sample_copy, clean).returncode == 0
    expected = sorted(ids(clean, embedder))
    remount(mount, "size=1m")
    db = mount / "index.db"
    run = ingest(sample_copy, db)
    assert run.returncode == 1
    assert "disk full" in run.stderr.lower() and "Traceback" not in run.stderr, run.stderr[-2000:]
    remount(mount, "size=64m")
    again = ingest(sample_copy, db)
    assert again.returncode == 0, again.stderr[-2000:]
    got = ids(db, embedder)
    assert len(got) == len(set(got)) and sorted(got) == expected
