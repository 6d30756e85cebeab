"""Bad input: a generated fuzz corpus is ingested next to good documents.

Every bad file is either ingested or reported with its path and a reason; no exception escapes;
the good documents are searchable; and the ingest's peak memory stays bounded although the
corpus holds a 200 MB file, a 50 MB line and a PDF that inflates to 1 GiB.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from pdf_files import pdf_of_streams

from askdocs import Index


def bomb_pdf(inflated_mib: int = 1024) -> bytes:
    """A valid one-page PDF whose content stream inflates to ``inflated_mib`` MiB (built in pieces)."""
    comp = zlib.compressobj(9)
    parts = [comp.compress(b"BT /F1 12 Tf 72 720 Td (bomb) Tj ET\n")]
    block = b" " * 2**20
    parts += [comp.compress(block) for _ in range(inflated_mib)]
    parts.append(comp.flush())
    return pdf_of_streams([b"".join(parts)], compressed=True)


def encrypted_pdf() -> bytes:
    from pypdf import PdfReader, PdfWriter
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf)
    c.drawString(72, 720, "Secret pangolin text")
    c.save()
    w = PdfWriter(clone_from=PdfReader(io.BytesIO(buf.getvalue())))
    w.encrypt("password")
    out = io.BytesIO()
    w.write(out)
    return out.getvalue()


GOOD = {  # file -> a word only it contains
    "good/hnsw.md": "zebrafinch",
    "good/vacuum.html": "quokka",
    "latin1.txt": "narwhal",
    "badutf8.md": "okapi",
    "utf16.txt": "axolotl",
    "new\nline.md": "wombat",
    "日本語のドキュメント.md": "capybara",
    "deep.html": "marmoset",  # 10,000 nested <div>s: the renderer is iterative
}
BAD = {  # file -> words expected in its reason
    "binary.md": "binary",
    "binary.html": "binary",
    "binary.txt": "binary",
    "empty.md": "empty",
    "blank.txt": "empty",
    "big.txt": "limit",
    "oneline.txt": "blob",
    "corrupt.pdf": "PDF",
    "encrypted.pdf": "encrypted",
    "bomb.pdf": "",
    "a.md": "symlink loop",
    "b.md": "symlink loop",
    "dangling.md": "broken symlink",
    "pipe.md": "pipe",
}


def build(root: Path) -> None:
    def put(name: str, data: bytes) -> None:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)

    put("good/hnsw.md", b"# HNSW\n\nThe zebrafinch parameter M is the maximum degree of a graph node.\n")
    put("good/vacuum.html", b"<html><body><h1>Vacuum</h1><p>VACUUM reclaims dead tuples, quokka.</p></body></html>")
    put("latin1.txt", "Café crème brûlée with the word narwhal.".encode("latin-1"))
    put("badutf8.md", b"# Bad\n\nvalid start \xff\xfe\xc3\x28 broken bytes then okapi text.\n")
    put("utf16.txt", "UTF-16 text about the axolotl index.".encode("utf-16"))
    put("new\nline.md", b"# Newline name\n\nA file whose name holds a newline: wombat.\n")
    put("日本語のドキュメント.md", "# 日本語\n\nベクトル検索 capybara の説明。\n".encode())
    put("binary.md", bytes(range(256)) * 16)
    put("binary.html", b"\x00\x01\x02" * 2000)
    put("binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00" + bytes(range(256)) * 8)
    put("empty.md", b"")
    put("blank.txt", b"   \n\n\t\n")
    line = b"All work and no play makes Jack a dull boy. " * 20 + b"\n"
    with open(root / "big.txt", "wb") as f:
        for _ in range(200 * 2**20 // len(line) + 1):
            f.write(line)
    put("oneline.txt", b"x" * (50 * 2**20))
    put("deep.html", b"<html><body>" + b"<div>" * 10000 + b"deep marmoset" + b"</div>" * 10000 + b"</body></html>")
    put("corrupt.pdf", b"%PDF-1.4\n1 0 obj <</Type /Catalog>> garbage\n%%EOF")
    put("encrypted.pdf", encrypted_pdf())
    put("bomb.pdf", bomb_pdf())
    (root / "loop").mkdir()
    os.symlink("../loop", root / "loop" / "again")  # a folder loop: the walk must not follow it
    os.symlink("b.md", root / "a.md")
    os.symlink("a.md", root / "b.md")
    os.symlink("missing.md", root / "dangling.md")
    os.mkfifo(root / "pipe.md")  # reading it would block forever
    (root / "folder.md").mkdir()


# Peak memory is VmHWM (this address space's high-water mark), not getrusage's ru_maxrss: Linux carries
# ru_maxrss across exec, so a child spawned by a pytest process holding 2.5 GB of models reported 2.5 GB.
CHILD = """
import json, sys
from askdocs import Index
with Index(milvus_uri=sys.argv[2]) as ix:
    report = ix.ingest(sys.argv[1])
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"report": report.to_dict(), "peak_mib": int(hwm.split()[1]) / 1024}))
"""


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict]:
    base = tmp_path_factory.mktemp("fuzz")
    root = base / "corpus"
    root.mkdir()
    build(root)
    db = str(base / "fuzz.db")
    # in a child process, so its peak RSS is the ingest's own
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), db],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "ASKDOCS_EMBED_DEVICE": "cpu"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, db, json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_bad_file_is_reported_with_a_reason(fuzzed) -> None:
    root, _, out = fuzzed
    report = out["report"]
    failures = {Path(f["path"]).relative_to(root).as_posix(): f["reason"] for f in report["failures"]}
    for name, words in BAD.items():
        assert name in failures, f"{name} was neither ingested nor reported"
        assert words.lower() in failures[name].lower(), (name, failures[name])
        assert failures[name].strip()
    assert report["added"] == len(GOOD), failures
    assert report["failed"] == len(BAD)


def test_good_documents_are_searchable(fuzzed, embedder) -> None:
    _, db, _ = fuzzed
    with Index(milvus_uri=db, embedder=embedder) as ix:
        sources = {d.source for d in ix.documents()}
        assert sources == set(GOOD)
        for name, word in GOOD.items():
            hits = ix.search(word, k=1, mode="bm25")
            assert hits and hits[0].source == name, (word, hits)


def test_memory_stays_bounded(fuzzed) -> None:
    """200 MB and 50 MB files and a 1 GiB PDF bomb: the ingest never holds them whole.

    The bound is the model and runtime (~0.7 GiB measured for this process) plus one file under the
    64 MiB size limit decoded once; holding the 200 MB file or the inflated bomb would exceed it.
    """
    _, _, out = fuzzed
    print(f"peak RSS of the fuzz ingest: {out['peak_mib']:.0f} MiB")
    assert out["peak_mib"] < 1000, out["peak_mib"]


def test_rerun_is_stable(fuzzed, embedder) -> None:
    root, db, _ = fuzzed
    with Index(milvus_uri=db, embedder=embedder) as ix:
        report = ix.ingest(root)
    assert report.unchanged == len(GOOD) and report.added == 0 and report.failed == len(BAD)
