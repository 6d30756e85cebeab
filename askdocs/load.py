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

#: Files larger than this are refused (``read_bytes``' ``max_bytes`` changes it).  A file is read,
#: decoded and chunked whole: 64 MiB of text is ~130,000 chunks, about an hour of embedding on a
#: laptop CPU, and peaks near 1 GiB of memory (tests/test_fuzz.py measures it); a larger file is
#: almost always a log, a dump or a mistake, and is reported rather than silently taking hours.
MAX_FILE_BYTES = 64 * 1024 * 1024

#: A PDF's content streams may inflate to this much in total (the ``pdf_max_inflated_mb`` setting).
#: Text-heavy pages hold 3-20 KB of content each, so this is thousands of pages; pypdf parses
#: content at ~10 MB/s, so it is also ~15 s of work at most.
MAX_PDF_INFLATED_BYTES = 128 * 1024 * 1024

#: Runs without whitespace at least this long are broken into lines (see ``break_long_runs``).
LONG_RUN = 2000

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


def _walk(root: Path, skipped: list[tuple[str, str]]) -> Iterator[Path]:
    """Supported and unsupported files under ``root``; folders that cannot be listed go to ``skipped``.

    os.walk passes over a folder it cannot list (no permission, a path past PATH_MAX) unless given
    ``onerror``: its documents would be missing from the index with nothing said.
    """

    def unreadable(exc: OSError) -> None:
        skipped.append((exc.filename or str(root), f"folder cannot be read: {exc.strerror or exc}"))

    # followlinks=False: a symlink loop cannot trap the walk; linked files are still read.
    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=False):
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
            for p in _walk(root, skipped):
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
    nul = b"\x00" in data[:8192]
    if not nul:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    from charset_normalizer import from_bytes

    matches = from_bytes(data[: 1024 * 1024])
    best = matches.best()
    # NUL bytes mean binary, unless the text is UTF-16/32 without a byte-order mark (Latin letters
    # are then every other byte a NUL), which charset-normalizer recognises.
    if nul and (best is None or not (best.encoding or "").startswith("utf_")):
        raise LoadError("binary content (NUL bytes), not text")
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


def _read_pdf(file: SourceFile, data: bytes, max_inflated: int = MAX_PDF_INFLATED_BYTES) -> RawDocument:
    """Text of every page; a damaged PDF, or one past a pypdf safety limit or our budget, is a LoadError.

    Each page's content stream is inflated before its text is extracted, and the inflated sizes are
    summed: pypdf limits one stream (75 MB), but 30 pages of 70 MB each pass that limit one by one
    and took 3.5 minutes and 2.4 GB to extract nothing.  The sum stops such a file after
    ``max_inflated`` bytes.  pypdf's ``LimitReachedError`` (a decompression bomb, a cyclic page tree,
    an array of a million elements) derives from ``PyPdfError`` only, so it is caught by that name.
    """
    import io

    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PyPdfError

    budget = f"{max_inflated / 2**20:g} MiB (the pdf_max_inflated_mb setting)"
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
        inflated = 0
        for n, page in enumerate(reader.pages, 1):
            contents = page.get_contents()
            inflated += len(contents.get_data()) if contents is not None else 0
            if inflated > max_inflated:
                raise LoadError(f"PDF content inflates past {budget} by page {n} (a decompression bomb?)")
            starts.append(offset)
            page_text = break_long_runs((page.extract_text() or "").strip())
            pages.append(page_text)
            offset += len(page_text) + 2
        title = None
        if reader.metadata and reader.metadata.title:
            title = str(reader.metadata.title).strip() or None
    except LoadError:
        raise
    except LimitReachedError as exc:
        raise LoadError(f"PDF exceeds a pypdf safety limit (a decompression bomb?): {exc}") from None
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as exc:
        raise LoadError(f"corrupt or unreadable PDF: {exc}") from None
    text = "\n\n".join(pages)
    if not text.strip():
        return ocr_pdf(file, data)  # scanned: OCR, or a LoadError saying how to enable it
    return RawDocument(file, text, content_hash(data), page_starts=starts, pdf_title=title)


def read_bytes(file: SourceFile, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The file's bytes, refusing oversized files before they are read into memory.

    At most ``max_bytes + 1`` bytes are ever read, so a file that grows after the size check (a log
    being written) cannot slip a larger read past the limit.
    """
    limit = f"over the {max_bytes / 2**20:g} MiB limit (the max_file_mb setting, ASKDOCS_MAX_FILE_MB)"
    try:
        size = file.path.stat().st_size
        if size > max_bytes:
            raise LoadError(f"file is {size / 2**20:.0f} MiB, {limit}")
        with file.path.open("rb") as f:
            data = f.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise LoadError(f"file grew past {limit} while being read")
        return data
    except LoadError:
        raise
    except OSError as exc:
        raise LoadError(exc.strerror or str(exc)) from None


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read(
    file: SourceFile,
    data: bytes | None = None,
    max_bytes: int = MAX_FILE_BYTES,
    pdf_max_inflated: int = MAX_PDF_INFLATED_BYTES,
) -> RawDocument:
    """Decode one file into text; raise ``LoadError`` with a reason a person understands.

    ``data`` lets the caller hash the bytes first and decode only files that changed.
    """
    if data is None:
        data = read_bytes(file, max_bytes)
    if not data.strip():
        raise LoadError("empty file")
    if file.fmt == "pdf":
        return _read_pdf(file, data, pdf_max_inflated)
    if file.fmt in OFFICE_FORMATS.values():
        return read_office(file, data)
    if data.startswith(b"%PDF-"):
        raise LoadError("PDF content under a text file name")
    text = decode(data)
    if file.fmt != "html":  # HTML is tamed after rendering: its markup has long runs of its own
        tamed = break_long_runs(text, drop_blobs=True)
        if not tamed.strip() and text.strip():
            raise LoadError("no prose: only data blobs (runs of 1000+ characters without a space)")
        text = tamed
    return RawDocument(file, text, content_hash(data))


# Both patterns start only where a run starts ((?<!\S)): "\S{1000,}" alone would rescan every run
# shorter than 1000 from each of its characters, minutes on a 64 MB file of 999-letter words.
_BLOB = re.compile(r"(?<!\S)[!-~]{1000,}")
_LONG_RUN = re.compile(rf"(?<!\S)\S{{{LONG_RUN},}}")
_SENTENCE_END = re.compile(r"[。！？．!?]")
_LONG_LINE = re.compile(rf"(?<![^\n])[^\n]{{{LONG_RUN},}}")


def break_long_runs(text: str, drop_blobs: bool = False) -> str:
    """Defuse runs of thousands of characters without whitespace before they reach the chunker.

    ASCII runs of 1000+ (base64 images, minified data, a 50 MB line of "x") are blobs, not prose:
    with ``drop_blobs`` they become a space, because embedded they would be thousands of
    meaningless chunks.  Other long runs are real text in scripts written without spaces (Chinese,
    Japanese, Thai): they are kept, with a line break after each sentence end, and lines still
    ``LONG_RUN`` long are cut every ``LONG_RUN // 2`` characters.  Unbroken, the splitter would cut
    such a run into one string per character: ~80 bytes of memory per character, 4 GB for a
    50 MB line.
    """
    if drop_blobs:
        text = _BLOB.sub(" ", text)

    def wrap(line: re.Match[str]) -> str:
        s = line.group(0)
        return "\n".join(s[i : i + LONG_RUN // 2] for i in range(0, len(s), LONG_RUN // 2))

    def split(run: re.Match[str]) -> str:
        return _LONG_LINE.sub(wrap, _SENTENCE_END.sub("\\g<0>\n", run.group(0)))

    return _LONG_RUN.sub(split, text)
