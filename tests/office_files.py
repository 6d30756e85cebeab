"""Real DOCX, PPTX, XLSX, CSV, EPUB and scanned-PDF files, written by the libraries that make them.

Shared by tests/test_formats.py and benchmarks/formats.py, so the benchmark measures the same
kind of files the tests check.
"""

from __future__ import annotations

import zipfile
from pathlib import Path


def make_docx(path: Path, paragraphs: int = 0) -> Path:
    import docx

    d = docx.Document()
    d.core_properties.title = "Vector Index Guide"
    d.add_heading("Vector Index Guide", level=1)
    d.add_paragraph("HNSW builds a layered proximity graph for approximate nearest neighbour search.")
    d.add_heading("Parameters", level=2)
    d.add_paragraph("M sets the maximum degree of each node", style="List Bullet")
    d.add_paragraph("efConstruction sets the candidate list size while building", style="List Bullet")
    d.add_paragraph("ef is tuned at query time", style="List Bullet 2")
    d.add_heading("Steps", level=2)
    d.add_paragraph("Create the collection", style="List Number")
    d.add_paragraph("Build the index", style="List Number")
    table = d.add_table(rows=3, cols=3)
    for r, row in enumerate([["index", "memory", "recall"], ["HNSW", "high", "0.99"], ["IVF_FLAT", "low", "0.95"]]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    for i in range(paragraphs):
        if i % 20 == 0:
            d.add_heading(f"Section {i // 20}", level=2)
        d.add_paragraph(f"Paragraph {i} explains how segment {i} of the collection is compacted and indexed.")
    d.save(path)
    return path


def make_pptx(path: Path, slides: int = 0) -> Path:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    s = deck.slides.add_slide(deck.slide_layouts[0])
    s.shapes.title.text = "Milvus Quarterly Review"
    s.placeholders[1].text = "Search latency and recall"
    s = deck.slides.add_slide(deck.slide_layouts[1])
    s.shapes.title.text = "Index choices"
    body = s.placeholders[1].text_frame
    body.text = "HNSW for low latency"
    p = body.add_paragraph()
    p.text = "efSearch trades recall for speed"
    p.level = 1
    body.add_paragraph().text = "DiskANN for datasets larger than memory"
    s.notes_slide.notes_text_frame.text = "Mention the rebuild cost."
    s = deck.slides.add_slide(deck.slide_layouts[5])
    s.shapes.title.text = "Latency"
    t = s.shapes.add_table(3, 2, Inches(1), Inches(2), Inches(6), Inches(2)).table
    for r, row in enumerate([["index", "p99 ms"], ["HNSW", "4.1"], ["IVF_PQ", "7.9"]]):
        for c, value in enumerate(row):
            t.cell(r, c).text = value
    for i in range(slides):
        s = deck.slides.add_slide(deck.slide_layouts[1])
        s.shapes.title.text = f"Topic {i}"
        s.placeholders[1].text_frame.text = f"Point {i} about replicas and shards"
    deck.save(path)
    return path


def make_xlsx(path: Path, rows: int = 0) -> Path:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "Benchmarks"
    sheet.append(["index", "QPS", "recall"])
    sheet.append(["HNSW", 5200, 0.99])
    sheet.append(["IVF_FLAT", 3100, 0.95])
    sheet.append(["with | pipe", None, 0.5])
    for i in range(rows):
        sheet.append([f"run {i}", i * 10, round(i / max(rows, 1), 3)])
    other = book.create_sheet("Costs")
    other.append(["tier", "dollars per month"])
    other.append(["standard", 65])
    book.save(path)
    return path


def make_csv(path: Path) -> Path:
    path.write_text("name;role;city\nAda;engineer;London\nGrace;admiral;Arlington\n", encoding="utf-8")
    return path


def make_epub(path: Path) -> Path:
    """A minimal EPUB 3 (mimetype, container, OPF with a spine of two XHTML chapters)."""
    chapter = (
        '<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml"><head><title>{t}</title>'
        "</head><body><h1>{t}</h1>{body}</body></html>"
    )
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        z.writestr(
            "META-INF/container.xml",
            '<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
            '<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
            "</rootfiles></container>",
        )
        z.writestr(
            "OEBPS/content.opf",
            '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id">'
            '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>The Vector Book</dc:title>'
            '<dc:identifier id="id">urn:uuid:1</dc:identifier></metadata>'
            '<manifest><item id="c2" href="text/ch2.xhtml" media-type="application/xhtml+xml"/>'
            '<item id="c1" href="text/ch1.xhtml" media-type="application/xhtml+xml"/></manifest>'
            '<spine><itemref idref="c1"/><itemref idref="c2"/></spine></package>',
        )
        z.writestr(
            "OEBPS/text/ch1.xhtml",
            chapter.format(
                t="Chapter One: Embeddings",
                body="<p>Embeddings map text to vectors.</p><ul><li>dense vectors</li><li>sparse vectors</li></ul>",
            ),
        )
        z.writestr(
            "OEBPS/text/ch2.xhtml",
            chapter.format(t="Chapter Two: Quantization", body="<p>Product quantization compresses vectors.</p>"),
        )
    return path


def make_scanned_pdf(path: Path, lines: tuple[str, ...] = ("Scanned invoice", "Total due: 42 euros")) -> Path:
    """An image-only PDF: text drawn into a bitmap, saved by Pillow, no text layer at all."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", (1700, 900), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=64)
    for i, line in enumerate(lines):
        draw.text((120, 120 + i * 140), line, fill=0, font=font)
    image.save(path, "PDF", resolution=200)
    return path
