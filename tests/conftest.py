"""Shared fixtures: real Milvus Lite files in tmp folders and one real MiniLM for the session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from askdocs import Index
from askdocs.embed import CPU_DEFAULT_MODEL, Embedder

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "samples" / "milvus-docs"
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The packaged all-MiniLM-L6-v2, loaded once: it is the model CI and offline users run."""
    emb = Embedder(CPU_DEFAULT_MODEL, device="cpu", batch_size=32)
    emb.warm_up()
    return emb


@pytest.fixture(scope="session")
def local_llm():
    """The packaged SmolLM2 (the CPU default LLM), converted once into the user cache, loaded once."""
    from askdocs.generate.local import LocalGenerator

    return LocalGenerator()


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "index.db")


@pytest.fixture
def make_index(db: str, embedder: Embedder):
    """Indexes over the test's own Milvus Lite file; closed at teardown so the file lock is released."""
    made: list[Index] = []

    def make(**overrides: object) -> Index:
        overrides.setdefault("milvus_uri", db)
        ix = Index(embedder=embedder, **overrides)
        made.append(ix)
        return ix

    yield make
    for ix in made:
        ix.close()


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """A small corpus of every format, written fresh for each test."""
    root = tmp_path / "docs"
    (root / "guide").mkdir(parents=True)
    (root / "guide" / "hnsw.md").write_text(
        "---\ntitle: Graph Indexes\n---\n\n# Graph Indexes\n\nIntro text about graphs.\n\n"
        "## HNSW\n\nHNSW builds a hierarchical navigable small world graph. The parameter M is the maximum "
        "degree of a node and efConstruction controls the build-time search range.\n\n"
        "## IVF\n\nIVF_FLAT clusters vectors into nlist buckets and probes nprobe of them at query time.\n",
        encoding="utf-8",
    )
    (root / "page.html").write_text(
        "<html><head><title>Vacuuming Basics</title></head><body>"
        "<nav class='navheader'><a href='a'>Prev</a> <a href='b'>Up</a> NAVIGATION-CHROME-TEXT</nav>"
        "<main><h1>Vacuuming Basics</h1><p>VACUUM reclaims storage occupied by dead tuples in PostgreSQL tables. "
        "Plain VACUUM can run alongside normal reads and writes on the table.</p>"
        "<h2>Full vacuum</h2><p>VACUUM FULL rewrites the entire table into a new disk file and returns space "
        "to the operating system, but it takes an ACCESS EXCLUSIVE lock on the table while it runs.</p>"
        "<pre>VACUUM (VERBOSE, ANALYZE) onek;</pre>"
        "<table><tr><th>Option</th><th>Meaning</th></tr><tr><td>FULL</td><td>rewrite the table</td></tr></table>"
        "</main><footer>FOOTER-CHROME-TEXT Copyright</footer></body></html>",
        encoding="utf-8",
    )
    (root / "notes.txt").write_text(
        "Milvus Lite stores everything in one local file. Only one process may open a given file at a time.\n",
        encoding="utf-8",
    )
    (root / "intro.rst").write_text(
        "Tokenizers\n==========\n\nA tokenizer splits text into tokens before BM25 scoring.\n\n"
        "Analyzers\n---------\n\nAn analyzer combines a tokenizer with filters such as lowercase.\n",
        encoding="utf-8",
    )
    return root


@pytest.fixture
def sample_copy(tmp_path: Path) -> Path:
    """A writable copy of the bundled sample corpus."""
    dest = tmp_path / "sample"
    shutil.copytree(SAMPLE, dest)
    return dest


@pytest.fixture
def manual_page():
    """A page with a trail (its place in its manual), a title and a heading path."""
    from askdocs.clean import Document, Section

    text = "# Install\n\nRun the installer.\n\n## Options\n\nThe --prefix option sets the folder.\n"
    sections = [Section(0, 30, "Install"), Section(30, len(text), "Install > Options")]
    trail = {"trail": ["Server Administration", "Setup"]}
    return Document("admin/install.html", "/r", "html", "Installation", text, "abc", sections, trail)


@pytest.fixture
def manual_store(tmp_path: Path, embedder: Embedder, manual_page):
    """The manual page's chunks in a real Milvus Lite collection: (store, chunks)."""
    from askdocs.chunk import Chunker
    from askdocs.store import MilvusStore

    chunks = Chunker(512, 51).split(manual_page)
    store = MilvusStore(str(tmp_path / "manual.db"), "docs")
    store.create(embedder.model_name, embedder.dimension)
    store.insert(chunks, embedder.embed_documents([c.search_text for c in chunks]))
    store.flush()
    yield store, chunks
    store.close()
