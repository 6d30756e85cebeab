"""askdocs ingest --ray on a local Ray instance with 2 CPUs: the local ingest's results and sync semantics.

Run by `make test-ray` in .venv-ray (Ray is not in the base environment); skipped without Ray.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from askdocs import Index

ray = pytest.importorskip("ray", reason="Ray is in the optional extra askdocs[ray]: make test-ray")
pytestmark = pytest.mark.ray
# float ONNX: batch-independent up to rounding.  The CPU default is not: onnx-int8 quantizes activations
# with scales taken per batch (cosine 0.98-0.997 between the two ingests); nor is torch-bf16, which rounds
# per batch.
BACKEND = "onnx"


def _rows(db: Path) -> dict[str, dict]:
    with Index(milvus_uri=str(db)) as index:
        if not index.store.exists():
            return {}
        index.store.client.load_collection("askdocs")
        rows = index.store.client.query(
            "askdocs", filter="", output_fields=["id", "text", "source", "section", "vector"], limit=16384
        )
    return {r["id"]: r for r in rows}


@pytest.fixture(scope="module")
def local_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The bundled sample, copied, ingested locally once: the reference for every Ray run."""
    import shutil

    root = tmp_path_factory.mktemp("ray")
    corpus = root / "milvus-docs"
    shutil.copytree(Path(__file__).resolve().parent.parent / "samples" / "milvus-docs", corpus)
    db = root / "local.db"
    with Index(milvus_uri=str(db), embed_backend=BACKEND) as index:
        index.ingest(corpus)
    return corpus, db


def test_ray_ingest_matches_local_then_syncs(local_db: tuple[Path, Path], tmp_path: Path) -> None:
    corpus, ref = local_db
    db = tmp_path / "ray.db"
    with Index(milvus_uri=str(db), ray_address="local", embed_backend=BACKEND) as index:
        report = index.ingest(corpus)
        first = index.last_ingestor
    assert first.used_ray and sum(first.nodes.values()) == report.added == 26 and report.failed == 0

    want, got = _rows(ref), _rows(db)
    assert sorted(got) == sorted(want)  # identical chunk ids
    assert all(got[i]["text"] == want[i]["text"] and got[i]["section"] == want[i]["section"] for i in want)
    a = np.array([want[i]["vector"] for i in sorted(want)])
    b = np.array([got[i]["vector"] for i in sorted(want)])
    assert float(np.abs(a - b).max()) < 1e-4  # float tolerance: the batches differ (Ray's are per document)

    # unchanged: skipped by the driver before any Ray work (Ray is not even started)
    with Index(milvus_uri=str(db), ray_address="local") as index:
        again = index.ingest(corpus)
        assert not index.last_ingestor.used_ray
    assert (again.unchanged, again.added, again.updated, again.chunks) == (26, 0, 0, 0)

    # one changed file is replaced (its old chunks gone), one deleted file is pruned
    changed = corpus / "reference" / "replica.md"
    changed.write_text(changed.read_text(encoding="utf-8") + "\n\n## Added\n\nA new closing section.\n")
    (corpus / "reference" / "bitset.md").unlink()
    with Index(milvus_uri=str(db), ray_address="local") as index:
        third = index.ingest(corpus, prune=True)
        assert index.last_ingestor.used_ray
    assert (third.updated, third.unchanged, third.removed) == (1, 24, 1)
    with Index(milvus_uri=str(db)) as index:
        local = index.ingest(corpus, prune=True)  # the local ingest agrees: nothing left to do
    assert (local.unchanged, local.updated, local.added, local.removed) == (25, 0, 0, 0)
    rows = _rows(db)
    assert "A new closing section." in " ".join(
        r["text"] for r in rows.values() if r["source"] == "reference/replica.md"
    )
    assert not any(r["source"] == "reference/bitset.md" for r in rows.values())


def test_kill_9_of_the_driver_then_rerun_converges(local_db: tuple[Path, Path], tmp_path: Path) -> None:
    corpus, _ = local_db
    db = tmp_path / "crash.db"
    cmd = [sys.executable, "-m", "askdocs.cli", "ingest", str(corpus), "--uri", str(db), "--ray", "--quiet"]
    clean = tmp_path / "clean.db"
    with Index(milvus_uri=str(clean)) as index:
        index.ingest(corpus)
    expected = sorted(_rows(clean))

    # the driver is killed on its second batch of writes, while the actors are still embedding
    killed = subprocess.run(cmd, env={**os.environ, "ASKDOCS_FAULT": "write:2"}, timeout=900)
    assert killed.returncode == -signal.SIGKILL
    assert len(_rows(db)) < len(expected)

    done = subprocess.run(cmd, env=os.environ, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert sorted(_rows(db)) == expected
