"""DOCX, PPTX, XLSX, CSV, EPUB and scanned PDFs: real files in, Markdown structure out, nothing skipped in silence."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from office_files import make_csv, make_docx, make_epub, make_pptx, make_scanned_pdf, make_xlsx
from typer.testing import CliRunner

from askdocs.clean import clean
from askdocs.cli import app
from askdocs.errors import LoadError
from askdocs.load import discover, read
from askdocs.load_office import ocr_available


def _clean(path: Path):
    found = discover([path])
    assert len(found.files) == 1, found
    return clean(read(found.files[0]))


def test_docx_keeps_headings_lists_and_tables(tmp_path: Path) -> None:
    doc = _clean(make_docx(tmp_path / "guide.docx"))
    assert doc.title == "Vector Index Guide"
    assert "# Vector Index Guide" in doc.text and "\n## Parameters\n" in doc.text
    assert "- M sets the maximum degree of each node\n- efConstruction" in doc.text
    assert "\n  - ef is tuned at query time" in doc.text  # the second list level stays nested
    assert "1. Create the collection\n1. Build the index" in doc.text
    assert "| index | memory | recall |\n|---|---|---|\n| HNSW | high | 0.99 |" in doc.text
    assert {s.path for s in doc.sections} >= {"Vector Index Guide > Parameters", "Vector Index Guide > Steps"}


def test_pptx_slides_become_sections_with_bullets_tables_and_notes(tmp_path: Path) -> None:
    doc = _clean(make_pptx(tmp_path / "review.pptx"))
    assert doc.title == "Milvus Quarterly Review"
    assert "## Slide 2: Index choices" in doc.text
    assert "- HNSW for low latency\n  - efSearch trades recall for speed\n- DiskANN" in doc.text
    assert "Notes: Mention the rebuild cost." in doc.text
    assert "| HNSW | 4.1 |" in doc.text
    assert "Slide 3: Latency" in {s.path for s in doc.sections}


def test_xlsx_sheets_become_tables(tmp_path: Path) -> None:
    doc = _clean(make_xlsx(tmp_path / "bench.xlsx"))
    assert "## Benchmarks\n\n| index | QPS | recall |\n|---|---|---|\n| HNSW | 5200 | 0.99 |" in doc.text
    assert "| with \\| pipe |  | 0.5 |" in doc.text  # a pipe in a cell does not split the row; None is blank
    assert "## Costs" in doc.text and "| standard | 65 |" in doc.text
    assert "None" not in doc.text and "nan" not in doc.text.lower()


def test_csv_dialect_is_sniffed(tmp_path: Path) -> None:
    doc = _clean(make_csv(tmp_path / "people.csv"))
    assert doc.text.splitlines()[:3] == ["| name | role | city |", "|---|---|---|", "| Ada | engineer | London |"]


def test_epub_chapters_in_spine_order(tmp_path: Path) -> None:
    doc = _clean(make_epub(tmp_path / "book.epub"))
    assert doc.title == "The Vector Book"
    one, two = doc.text.index("# Chapter One"), doc.text.index("# Chapter Two")
    assert one < two  # spine order, not manifest order
    assert "\n- dense vectors\n" in doc.text and "\n- sparse vectors\n" in doc.text  # clean_html's list items


@pytest.mark.parametrize("ext", [".docx", ".pptx", ".xlsx", ".epub"])
def test_corrupt_and_encrypted_office_files_are_load_errors(tmp_path: Path, ext: str) -> None:
    maker = {".docx": make_docx, ".pptx": make_pptx, ".xlsx": make_xlsx, ".epub": make_epub}[ext]
    good = maker(tmp_path / f"good{ext}").read_bytes()
    truncated = tmp_path / f"truncated{ext}"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(LoadError, match="corrupt or unreadable"):
        _clean(truncated)
    # a valid zip whose parts are gone: the library's KeyError becomes a one-line reason
    hollow = tmp_path / f"hollow{ext}"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("nothing.txt", "x")
    hollow.write_bytes(buf.getvalue())
    with pytest.raises(LoadError, match=r"corrupt|unreadable"):
        _clean(hollow)
    # Office encrypts OOXML into an OLE compound file (what msoffcrypto-tool and Word write)
    encrypted = tmp_path / f"locked{ext}"
    encrypted.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 4096)
    with pytest.raises(LoadError, match="encrypted"):
        _clean(encrypted)


@pytest.mark.skipif(not ocr_available(), reason="tesseract-ocr (Debian) or pytesseract/pypdfium2 not installed")
def test_scanned_pdf_is_read_through_ocr(tmp_path: Path) -> None:
    pdf = make_scanned_pdf(tmp_path / "scan.pdf")
    from pypdf import PdfReader

    assert not (PdfReader(pdf).pages[0].extract_text() or "").strip()  # truly no text layer
    doc = _clean(pdf)
    assert "invoice" in doc.text.lower() and "42" in doc.text
    assert [s.path for s in doc.sections] == ["Page 1"]


def test_ingest_new_formats_and_name_unsupported_files(tmp_path: Path, make_index) -> None:
    root = tmp_path / "mixed"
    root.mkdir()
    make_docx(root / "guide.docx")
    make_pptx(root / "review.pptx")
    make_xlsx(root / "bench.xlsx")
    make_csv(root / "people.csv")
    make_epub(root / "book.epub")
    (root / "data.json").write_text('{"a": 1}')
    (root / "tool.py").write_text("print('hi')\n")
    (root / "Makefile").write_text("all:\n")
    (root / "broken.docx").write_bytes(b"PK\x03\x04 not really a zip")
    index = make_index()
    report = index.ingest(root)
    assert report.added == 5, report.failures
    assert report.failed == 1 and report.failures[0][0].endswith("broken.docx")
    assert report.skipped == 3
    assert sorted(Path(p).name for p in report.skipped_files) == ["Makefile", "data.json", "tool.py"]
    assert "3 skipped as unsupported (" in report.summary() and "1 .json" in report.summary()
    assert {f["extension"] for f in report.to_dict()["skipped_files"]} == {".json", ".py", ""}
    assert report.explicit_failures == []  # found inside a folder: reported, not fatal
    hits = index.search("Which index has a p99 latency of 7.9 ms?", k=3)
    assert hits[0].source == "review.pptx" and "IVF_PQ" in hits[0].text
    assert index.search("product quantization compresses vectors", k=1)[0].source == "book.epub"


def test_cli_named_files_that_cannot_be_read_fail_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASKDOCS_MILVUS_URI", str(tmp_path / "cli.db"))
    unsupported = tmp_path / "report.key"
    unsupported.write_bytes(b"keynote")
    res = CliRunner().invoke(app, ["ingest", str(unsupported), "--json"])
    assert res.exit_code == 1, res.output
    assert "unsupported file type .key" in res.output and "not ingested" in res.output
    broken = tmp_path / "broken.docx"
    broken.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 512)
    good = make_csv(tmp_path / "people.csv")
    res = CliRunner().invoke(app, ["ingest", str(good), str(broken), "--json"])
    assert res.exit_code == 1, res.output
    report = json.loads(res.stdout.splitlines()[0])
    assert report["added"] == 1  # the readable file is still ingested
    assert "encrypted" in report["failures"][0]["reason"]
