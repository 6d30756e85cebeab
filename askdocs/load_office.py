"""Load, for formats that are not text: DOCX, PPTX, XLSX, CSV, EPUB, and scanned PDFs through OCR.

Each reader turns the file into Markdown (headings as ``#``, lists as ``-``/``1.``, tables as
pipe tables), so the Markdown cleaner and chunker downstream see the same structure as they do
for ``.md`` files.  ``load.py`` registers these formats and hands the bytes over; every failure is
a ``LoadError`` with a reason a person understands, so ingest reports the file and goes on.

Why separate libraries rather than ``markitdown`` (``benchmarks/results/formats.md`` has the
numbers): markitdown turns DOCX headings into Markdown only through mammoth's HTML round trip,
flattens PPTX bullet levels, writes XLSX through pandas (``NaN`` cells, ``Unnamed: 1`` headers)
and pulls pandas, numpy-heavy and Azure dependencies; python-docx, python-pptx and openpyxl are
what it uses underneath anyway, and walking their objects directly keeps list levels and
headings for a fraction of the install.  EPUB is read with zipfile and askdocs's own HTML
renderer (``clean_html``): an EPUB is a zip of XHTML chapters in the order its OPF spine gives,
and the well-known reader (ebooklib) is AGPL.  OCR: Debian's ``tesseract-ocr`` through
pytesseract, pages rendered by pypdfium2 (PDFium, no Ghostscript), used only when a PDF has no
text layer.
"""

from __future__ import annotations

import csv
import io
import posixpath
import re
import shutil
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING
from xml.etree import ElementTree

from askdocs.errors import LoadError

if TYPE_CHECKING:
    from askdocs.load import RawDocument, SourceFile

#: File extension -> format name; ``load.FORMATS`` includes these.
OFFICE_FORMATS: dict[str, str] = {
    ".docx": "docx",
    ".pptx": "pptx",
    ".xlsx": "xlsx",
    ".csv": "csv",
    ".epub": "epub",
}

#: Rasterising resolution for OCR: tesseract reads body text best at about 300 dpi.
OCR_DPI = 300

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # an encrypted OOXML file is an OLE container, not a zip
_NS = {
    "w": "http://schemas.openxmlformats.org/wordprocessingml/2006/main",
    "opf": "http://www.idpf.org/2007/opf",
    "dc": "http://purl.org/dc/elements/1.1/",
    "cn": "urn:oasis:names:tc:opendocument:xmlns:container",
}


# --------------------------------------------------------------------------- Markdown helpers


def _cell(value: object) -> str:
    """One table cell on one line, with pipes escaped so the row keeps its columns."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = re.sub(r"\s+", " ", str(value)).strip()
    return text.replace("|", "\\|")


def markdown_table(rows: Iterable[Iterable[object]]) -> str:
    """Rows (the first is the header) as a pipe table; empty trailing columns and empty rows dropped."""
    cells = [[_cell(v) for v in row] for row in rows]
    cells = [row for row in cells if any(row)]
    if not cells:
        return ""
    width = max(max((i + 1 for i, v in enumerate(row) if v), default=0) for row in cells)
    cells = [(row + [""] * width)[:width] for row in cells]
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * width]
    lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
    return "\n".join(lines)


def _zip_or_fail(data: bytes, kind: str) -> None:
    """The one-line reasons for what is not a readable OOXML/EPUB container."""
    if data.startswith(_OLE_MAGIC):
        raise LoadError(f"encrypted (password-protected) or legacy binary {kind} file; save it unprotected as {kind}")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise LoadError(f"corrupt or unreadable {kind} file: not a zip container")


# --------------------------------------------------------------------------- DOCX


def _docx(data: bytes) -> tuple[str, str | None]:
    import docx
    from docx.table import Table

    document = docx.Document(io.BytesIO(data))
    # Paragraph.style resolves the default style by scanning every style, per paragraph (15 s for
    # 2,000 paragraphs); the style id in the paragraph's XML and one id -> name map cost nothing.
    names = {s.style_id: s.name for s in document.styles}
    out: list[str] = []
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            out.append(markdown_table([c.text for c in row.cells] for row in block.rows))
            continue
        text = block.text.strip()
        if not text:
            continue
        style = names.get(block._p.style or "", "")
        level = _heading_level(style)
        if level:
            out.append("#" * level + " " + text)
            continue
        # python-docx has no public API for a paragraph's numbering: w:numPr from its XML (block._p)
        numbering = block._p.pPr.numPr if block._p.pPr is not None else None
        if numbering is not None or style.startswith("List"):
            depth = 0
            if numbering is not None and numbering.ilvl is not None:
                depth = int(numbering.ilvl.val or 0)
            else:
                m = re.search(r"(\d+)$", style)
                depth = int(m.group(1)) - 1 if m else 0
            marker = "1." if "Number" in style else "-"
            out.append("  " * depth + f"{marker} {text}")
            continue
        out.append(text)
    title = (document.core_properties.title or "").strip() or None
    return _join_blocks(out), title


def _heading_level(style: str) -> int:
    if style == "Title":
        return 1
    m = re.fullmatch(r"Heading (\d)", style)
    return min(int(m.group(1)), 6) if m else 0


def _join_blocks(blocks: list[str]) -> str:
    """Blank lines between blocks, except between items of one list (a loose list reads worse)."""
    out: list[str] = []
    for block in blocks:
        if out and _is_item(block) and _is_item(out[-1]):
            out[-1] += "\n" + block
        else:
            out.append(block)
    return "\n\n".join(b for b in out if b)


def _is_item(block: str) -> bool:
    last = block.rsplit("\n", 1)[-1].lstrip()
    return last.startswith("- ") or bool(re.match(r"\d+\. ", last))


# --------------------------------------------------------------------------- PPTX


def _pptx(data: bytes) -> tuple[str, str | None]:
    from pptx import Presentation

    deck = Presentation(io.BytesIO(data))
    out: list[str] = []
    first_title = None
    for n, slide in enumerate(deck.slides, 1):
        title_shape = slide.shapes.title
        title = title_shape.text_frame.text.strip() if title_shape is not None and title_shape.has_text_frame else ""
        first_title = first_title or title or None
        out.append(f"## Slide {n}" + (f": {_cell(title)}" if title else ""))
        body: list[str] = []
        for shape in _shapes(slide.shapes):
            if title_shape is not None and shape.shape_id == title_shape.shape_id:
                continue
            if shape.has_table:
                body.append(markdown_table([c.text for c in row.cells] for row in shape.table.rows))
            elif shape.has_text_frame:
                items = [(p.level, "".join(r.text for r in p.runs).strip()) for p in shape.text_frame.paragraphs]
                items = [(lvl, t) for lvl, t in items if t]
                if len(items) > 1 or (items and items[0][0] > 0):
                    body.append("\n".join("  " * lvl + "- " + t for lvl, t in items))
                elif items:
                    body.append(items[0][1])
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame.text.strip() if slide.notes_slide.notes_text_frame else ""
            if notes:
                body.append("Notes: " + notes)
        out.append(_join_blocks(body))
    title = (deck.core_properties.title or "").strip() or first_title
    return "\n\n".join(b for b in out if b), title


def _shapes(shapes) -> Iterable:
    """Shapes in reading order, group shapes opened (python-pptx keeps groups nested)."""
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    for shape in sorted(shapes, key=lambda s: (s.top or 0, s.left or 0)):
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            yield from _shapes(shape.shapes)
        else:
            yield shape


# --------------------------------------------------------------------------- XLSX, CSV


def _xlsx(data: bytes) -> tuple[str, str | None]:
    from openpyxl import load_workbook

    # read_only streams rows (bounded memory on big sheets); data_only gives cached values, not formulas
    book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    try:
        out = []
        for sheet in book.worksheets:
            table = markdown_table(sheet.iter_rows(values_only=True))
            if table:
                out.append(f"## {sheet.title}\n\n{table}")
        title = (book.properties.title or "").strip() or None
    finally:
        book.close()
    return "\n\n".join(out), title


def _csv(data: bytes) -> tuple[str, str | None]:
    from askdocs.load import decode

    text = decode(data)
    sample = text[: 64 * 1024]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        return markdown_table(csv.reader(io.StringIO(text), dialect)), None
    except csv.Error as exc:
        raise LoadError(f"malformed CSV: {exc}") from None


# --------------------------------------------------------------------------- EPUB


def _epub(data: bytes) -> tuple[str, str | None]:
    from askdocs.clean_html import html_to_markdown

    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = set(z.namelist())
        if "META-INF/encryption.xml" in names and b"EncryptedData" in z.read("META-INF/encryption.xml"):
            raise LoadError("encrypted (DRM-protected) EPUB")
        container = ElementTree.fromstring(z.read("META-INF/container.xml"))
        rootfile = container.find(".//cn:rootfile", _NS)
        if rootfile is None:
            raise LoadError("corrupt EPUB: no rootfile in META-INF/container.xml")
        opf_path = rootfile.get("full-path", "")
        opf = ElementTree.fromstring(z.read(opf_path))
        base = posixpath.dirname(opf_path)
        manifest = {
            item.get("id"): posixpath.normpath(posixpath.join(base, item.get("href", "")))
            for item in opf.iterfind(".//opf:manifest/opf:item", _NS)
        }
        title_el = opf.find(".//dc:title", _NS)
        chapters: list[str] = []
        for ref in opf.iterfind(".//opf:spine/opf:itemref", _NS):
            href = manifest.get(ref.get("idref"))
            if href is None or href not in names:
                continue
            _, md = html_to_markdown(z.read(href).decode("utf-8", errors="replace"))
            if md.strip():
                chapters.append(md.strip())
    title = (title_el.text or "").strip() if title_el is not None and title_el.text else None
    return "\n\n".join(chapters), title


# --------------------------------------------------------------------------- dispatch

_READERS: dict[str, tuple[str, Callable[[bytes], tuple[str, str | None]]]] = {
    "docx": ("Word (.docx)", _docx),
    "pptx": ("PowerPoint (.pptx)", _pptx),
    "xlsx": ("Excel (.xlsx)", _xlsx),
    "epub": ("EPUB", _epub),
}


def read_office(file: SourceFile, data: bytes) -> RawDocument:
    """Convert one DOCX/PPTX/XLSX/CSV/EPUB file to Markdown; a ``RawDocument`` the Markdown cleaner takes."""
    from askdocs.load import RawDocument, content_hash

    if file.fmt == "csv":
        text, title = _csv(data)
    else:
        kind, reader = _READERS[file.fmt]
        _zip_or_fail(data, kind)
        try:
            text, title = reader(data)
        except LoadError:
            raise
        except RecursionError:
            raise LoadError(f"{kind} file is nested too deeply to parse") from None
        except Exception as exc:  # the libraries raise KeyError, ValueError, XML and zip errors on broken parts
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise LoadError(f"corrupt or unreadable {kind} file: {reason}") from None
    if not text.strip():
        raise LoadError("no text in the file")
    if title:
        # the Markdown cleaner takes the title from front matter; JSON-quoted, it is valid YAML
        import json

        text = f"---\ntitle: {json.dumps(title, ensure_ascii=False)}\n---\n\n{text}"
    return RawDocument(replace(file, fmt="markdown"), text, content_hash(data))


# --------------------------------------------------------------------------- OCR


def ocr_available() -> bool:
    """Whether scanned PDFs can be read: the tesseract binary and the Python bindings are installed."""
    if shutil.which("tesseract") is None:
        return False
    try:
        import pypdfium2  # noqa: F401
        import pytesseract  # noqa: F401
    except ImportError:
        return False
    return True


def ocr_pdf(file: SourceFile, data: bytes, language: str = "eng") -> RawDocument:
    """Text of a PDF without a text layer, page by page through tesseract.

    Called by the PDF reader only when pypdf found no text, so born-digital PDFs never pay for it.
    """
    from askdocs.load import RawDocument, content_hash

    if not ocr_available():
        raise LoadError(
            "PDF has no extractable text (scanned images?); install tesseract-ocr (apt-get install "
            "tesseract-ocr) and `pip install pytesseract pypdfium2` to read it through OCR"
        )
    import pypdfium2
    import pytesseract

    try:
        pdf = pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError as exc:
        raise LoadError(f"corrupt or unreadable PDF: {exc}") from None
    pages: list[str] = []
    starts: list[int] = []
    offset = 0
    try:
        for page in pdf:
            image = page.render(scale=OCR_DPI / 72).to_pil()
            try:
                page_text = pytesseract.image_to_string(image, lang=language).strip()
            except pytesseract.TesseractError as exc:
                raise LoadError(f"OCR failed: {exc}") from None
            starts.append(offset)
            pages.append(page_text)
            offset += len(page_text) + 2
    finally:
        pdf.close()
    text = "\n\n".join(pages)
    if not text.strip():
        raise LoadError("PDF has no text, and OCR found none in its images")
    return RawDocument(file, text, content_hash(data), page_starts=starts)
