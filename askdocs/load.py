"""Load: find the files to ingest and turn their bytes into text.

Discovery walks folders, files and globs; reading detects the encoding (BOMs,
then strict UTF-8, then charset-normalizer) and extracts PDF text with pypdf.
Each failure is a ``LoadError`` naming the reason, so ingest can report the
file and carry on with the rest of the corpus.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from askdocs.errors import LoadError
from askdocs.load_office import OFFICE_FORMATS, ocr_pdf, read_office

#: File extension -> format name understood by ``askdocs.clean``.
FORMATS: dict[str, str] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdx": "markdown",
    ".html": "html",
    ".htm": "html",
    ".txt": "text",
    ".rst": "rst",
    ".pdf": "pdf",
    **OFFICE_FORMATS,  # DOCX, PPTX, XLSX, CSV, EPUB: askdocs.load_office
}

#: Files larger than this are refused rather than read whole into memory.
MAX_FILE_BYTES = 64 * 1024 * 1024

_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


@dataclass(frozen=True)
class SourceFile:
    """A file found on disk, with the path it is known by inside the index."""

    path: Path
    root: Path
    source: str  # posix path relative to ``root``: the document's identity in the index
    fmt: str


@dataclass
class RawDocument:
    """A file's decoded text, before cleaning."""

    file: SourceFile
    text: str
    content_hash: str  # sha256 of the file's bytes
    page_starts: list[int] = field(default_factory=list)  # PDF only: offset of each page in ``text``
    pdf_title: str | None = None


@dataclass(frozen=True)
class Discovery:
    files: list[SourceFile]
    roots: list[Path]
    dir_roots: list[Path]  # roots given as folders: the scope of --prune
    missing: list[str]  # inputs that matched nothing
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): loops, pipes, broken links
    unsupported: list[str] = field(default_factory=list)  # files of a type askdocs does not read
    explicit: list[str] = field(default_factory=list)  # files named on their own: failing one fails the run


def _is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def _glob_root(pattern: str) -> Path:
    """The deepest folder of a glob pattern that contains no wildcard."""
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts:
        if _is_glob(part):
            break
        fixed.append(part)
    return Path(os.path.normpath(Path(*fixed).absolute())) if fixed else Path.cwd()


def _walk(root: Path) -> Iterator[Path]:
    # followlinks=False: a symlink loop cannot trap the walk; linked files are still read.
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def discover(inputs: Iterable[str | os.PathLike[str]]) -> Discovery:
    """Expand folders (recursively), files and globs into supported files.

    A file named explicitly is taken even if hidden; within folders, hidden files
    and folders are skipped, as users expect from tools like ripgrep.
    """
    seen: set[Path] = set()
    files: list[SourceFile] = []
    roots: list[Path] = []
    dir_roots: list[Path] = []
    missing: list[str] = []
    skipped: list[tuple[str, str]] = []
    unsupported: list[str] = []
    explicit: list[str] = []

    def add(path: Path, root: Path) -> None:
        fmt = FORMATS.get(path.suffix.lower())
        if fmt is None:
            unsupported.append(str(Path(os.path.normpath(path.absolute()))))
            return
        try:
            real = path.resolve(strict=True)  # one identity per file, however it was reached (symlinks, '..')
            mode = real.stat().st_mode
        except RuntimeError:  # Python 3.11 reports a symlink loop this way
            skipped.append((str(path), "symlink loop"))
            return
        except OSError as exc:
            reason = "symlink loop" if exc.errno == errno.ELOOP else exc.strerror or str(exc)
            if path.is_symlink() and exc.errno == errno.ENOENT:
                reason = "broken symlink"
            skipped.append((str(path), reason))
            return
        if not stat.S_ISREG(mode):
            # a FIFO would block the read forever; a device or folder is no document
            kind = "a folder" if stat.S_ISDIR(mode) else "a pipe" if stat.S_ISFIFO(mode) else "not a regular file"
            skipped.append((str(path), f"{kind}, not a document"))
            return
        if real in seen:
            return
        seen.add(real)
        absolute = Path(os.path.normpath(path.absolute()))
        try:
            source = absolute.relative_to(root).as_posix()
        except ValueError:  # reached outside the root (a glob through '..'): name it from its own folder
            source = absolute.name
        files.append(SourceFile(path=absolute, root=root, source=source, fmt=fmt))

    for raw in inputs:
        text = os.fspath(raw)
        path = Path(text).expanduser()
        if path.is_dir():
            root = Path(os.path.normpath(path.absolute()))
            roots.append(root)
            dir_roots.append(root)
            for p in _walk(root):
                add(p, root)
        elif path.exists():
            root = Path(os.path.normpath(path.absolute())).parent
            roots.append(root)
            explicit.append(str(Path(os.path.normpath(path.absolute()))))
            add(path, root)
        elif _is_glob(text):
            root = _glob_root(text)
            roots.append(root)
            matches = sorted(glob.glob(os.path.expanduser(text), recursive=True))
            for m in matches:
                p = Path(m)
                if p.is_file():
                    add(p, root)
            if not matches:
                missing.append(text)
        else:
            missing.append(text)
    return Discovery(files, roots, dir_roots, missing, skipped, unsupported, explicit)


def decode(data: bytes) -> str:
    """Bytes to text: BOM first, then strict UTF-8, then charset-normalizer's best guess."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom) :].decode(encoding.removesuffix("-sig"))
            except UnicodeDecodeError as exc:
                raise LoadError(f"invalid {encoding} after its byte-order mark: {exc.reason}") from None
    if b"\x00" in data[:8192]:
        raise LoadError("binary content (NUL bytes), not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    matches = from_bytes(data[: 1024 * 1024])
    best = matches.best()
    if best is None or best.encoding is None:
        raise LoadError("binary content or unknown text encoding")
    encoding = best.encoding
    # Short Western texts are ambiguous between single-byte code pages (French comes back as Baltic
    # cp1257).  cp1252 is by far the most common of them, so it wins any near tie.
    western = next((m for m in matches if m.encoding == "cp1252"), None)
    if western is not None and western.chaos <= best.chaos + 0.1:
        encoding = "cp1252"
    text = data.decode(encoding, errors="replace")
    printable = sum(ch.isprintable() or ch in "\n\r\t" for ch in text[:8192])
    if printable < 0.95 * min(len(text), 8192):
        raise LoadError("binary content, not text")
    return text


def _read_pdf(file: SourceFile, data: bytes) -> RawDocument:
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                if not reader.decrypt(""):
                    raise LoadError("encrypted PDF (a password is needed)")
            except NotImplementedError as exc:
                raise LoadError(f"encrypted PDF: {exc}") from None
        pages: list[str] = []
        starts: list[int] = []
        offset = 0
        for page in reader.pages:
            starts.append(offset)
            page_text = (page.extract_text() or "").strip()
            pages.append(page_text)
            offset += len(page_text) + 2
        title = None
        if reader.metadata and reader.metadata.title:
            title = str(reader.metadata.title).strip() or None
    except LoadError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as exc:
        raise LoadError(f"corrupt or unreadable PDF: {exc}") from None
    text = "\n\n".join(pages)
    if not text.strip():
        return ocr_pdf(file, data)  # scanned: OCR, or a LoadError saying how to enable it
    return RawDocument(file, text, content_hash(data), page_starts=starts, pdf_title=title)


def read_bytes(file: SourceFile) -> bytes:
    """The file's bytes, refusing oversized files before they are read into memory."""
    try:
        size = file.path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise LoadError(f"file is {size / 2**20:.0f} MiB, over the {MAX_FILE_BYTES // 2**20} MiB limit")
        return file.path.read_bytes()
    except LoadError:
        raise
    except OSError as exc:
        raise LoadError(exc.strerror or str(exc)) from None


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read(file: SourceFile, data: bytes | None = None) -> RawDocument:
    """Decode one file into text; raise ``LoadError`` with a reason a person understands.

    ``data`` lets the caller hash the bytes first and decode only files that changed.
    """
    if data is None:
        data = read_bytes(file)
    if not data.strip():
        raise LoadError("empty file")
    if file.fmt == "pdf":
        return _read_pdf(file, data)
    if file.fmt in OFFICE_FORMATS.values():
        return read_office(file, data)
    if data.startswith(b"%PDF-"):
        raise LoadError("PDF content under a text file name")
    text = decode(data)
    if file.fmt != "html":
        # Runs of thousands of characters without a space are blobs (base64 images, minified data,
        # a 50 MB line), not prose: embedded, they would become thousands of meaningless chunks.
        text = _BLOB.sub(" ", text)
    return RawDocument(file, text, content_hash(data))


_BLOB = re.compile(r"\S{1000,}")
