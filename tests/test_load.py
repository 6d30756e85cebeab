"""Load stage: discovery of folders, files and globs, and decoding of real bytes into text."""

from __future__ import annotations

import hashlib
import os
import random
import threading
from pathlib import Path

import pytest
from pdf_files import pdf_of_streams
from reportlab.pdfgen import canvas

from askdocs.errors import LoadError
from askdocs.load import Discovery, RawDocument, SourceFile, decode, discover, read

FRENCH = (
    "Le café est très bon. Déjà vu à la crème brûlée, naïveté.\n"
    "Les paramètres de l'index sont décrits ci-dessous. Après la création, la requête sélectionne "
    "les éléments les plus proches. Il faut être prudent : la mémoire nécessaire dépend du nombre de vecteurs.\n"
)


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _one(path: Path) -> SourceFile:
    found = discover([path])
    assert len(found.files) == 1, found
    return found.files[0]


def _read(path: Path) -> RawDocument:
    return read(_one(path))


def _sources(found: Discovery) -> list[str]:
    return [f.source for f in found.files]


def make_pdf(path: Path, pages: list[str], title: str | None = None, **kwargs: object) -> Path:
    """A real PDF written by reportlab, one line of text per page."""
    c = canvas.Canvas(str(path), **kwargs)
    if title:
        c.setTitle(title)
    for text in pages:
        c.drawString(72, 720, text)
        c.showPage()
    c.save()
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A folder with nested, hidden and unsupported files (resolved, so globs see no symlinked prefix)."""
    root = tmp_path.resolve() / "docs"
    _write(root / "a.md", "# A\n\nalpha\n")
    _write(root / "sub" / "b.txt", "beta\n")
    _write(root / "sub" / "deep" / "c.rst", "Gamma\n=====\n\ngamma\n")
    _write(root / "sub" / "d.MD", "# D\n\ndelta\n")
    _write(root / "page.html", "<html><body><p>page</p></body></html>")
    _write(root / "script.py", "print('not a document')\n")
    _write(root / "image.png", b"\x89PNG\r\n\x1a\n")
    _write(root / ".hidden.md", "# hidden\n")
    _write(root / ".git" / "HEAD.md", "# inside a hidden folder\n")
    _write(root / "sub" / ".cache" / "x.md", "# hidden nested folder\n")
    return root


# --------------------------------------------------------------------------- discover


def test_folder_is_walked_recursively_with_posix_sources(tree: Path) -> None:
    """Sources are the documents' identity in the index: posix paths relative to the folder given."""
    found = discover([tree])
    assert sorted(_sources(found)) == ["a.md", "page.html", "sub/b.txt", "sub/d.MD", "sub/deep/c.rst"]
    assert found.roots == [tree]
    assert found.missing == []
    by_source = {f.source: f for f in found.files}
    assert by_source["sub/deep/c.rst"].fmt == "rst"
    assert by_source["sub/d.MD"].fmt == "markdown"  # extensions match case-insensitively
    assert by_source["page.html"].fmt == "html"
    assert all(f.root == tree and f.path == tree / f.source for f in found.files)


def test_hidden_files_and_folders_are_skipped_inside_folders(tree: Path) -> None:
    """Like ripgrep, a folder walk ignores dotfiles and dot-folders such as .git."""
    sources = _sources(discover([tree]))
    assert not any(part.startswith(".") for s in sources for part in s.split("/")), sources


def test_hidden_file_named_explicitly_is_taken(tree: Path) -> None:
    """Naming a hidden file on purpose overrides the folder-walk rule."""
    found = discover([tree / ".hidden.md"])
    assert _sources(found) == [".hidden.md"]


def test_unsupported_extensions_are_ignored(tree: Path) -> None:
    """Code and images are not documents, whether found in a folder or named explicitly."""
    assert not any(s.endswith((".py", ".png")) for s in _sources(discover([tree])))
    found = discover([tree / "script.py"])
    assert found.files == [] and found.missing == []


def test_single_file_source_is_its_name(tree: Path) -> None:
    """A file given on its own is rooted at its folder, so its source is just its name."""
    found = discover([tree / "sub" / "deep" / "c.rst"])
    assert _sources(found) == ["c.rst"]
    assert found.files[0].root == tree / "sub" / "deep"
    assert found.files[0].fmt == "rst"


def test_glob_root_is_the_fixed_prefix(tree: Path) -> None:
    """For root/**/*.md, sources are relative to root, the part of the pattern without wildcards."""
    found = discover([f"{tree}/**/*.md"])
    assert sorted(_sources(found)) == ["a.md"]  # *.md is case-sensitive in glob; hidden files not matched
    assert found.roots == [tree]
    found = discover([f"{tree}/sub/**/*.*"])
    assert sorted(_sources(found)) == ["b.txt", "d.MD", "deep/c.rst"]
    assert found.roots == [tree / "sub"]


def test_missing_inputs_are_listed(tree: Path) -> None:
    """A typo must be reported, not silently ingest nothing: paths and empty globs land in .missing."""
    absent = str(tree / "nope")
    empty_glob = f"{tree}/**/*.nothing"
    found = discover([tree / "a.md", absent, empty_glob])
    assert _sources(found) == ["a.md"]
    assert found.missing == [absent, empty_glob]


def test_same_file_twice_is_listed_once(tree: Path) -> None:
    """A folder and a file inside it, given together, must not index that file twice."""
    found = discover([tree, tree / "a.md"])
    assert _sources(found).count("a.md") == 1
    assert len(found.files) == 5


def test_symlink_loop_in_folder_does_not_hang_or_duplicate(tree: Path) -> None:
    """A link from a subfolder back to its ancestor must neither trap the walk nor repeat files."""
    os.symlink(tree, tree / "sub" / "loop", target_is_directory=True)
    result: list[Discovery] = []
    worker = threading.Thread(target=lambda: result.append(discover([tree])), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "discover() did not finish within 10 s on a symlink loop"
    assert sorted(_sources(result[0])) == ["a.md", "page.html", "sub/b.txt", "sub/d.MD", "sub/deep/c.rst"]


def test_symlink_loop_under_recursive_glob_does_not_duplicate(tree: Path) -> None:
    """The glob path should be as safe as the folder walk against a link back to an ancestor."""
    os.symlink(tree, tree / "sub" / "loop", target_is_directory=True)
    found = discover([f"{tree}/**/*.md"])
    assert _sources(found) == ["a.md"]


def test_glob_through_symlinked_folder_finds_files(tree: Path) -> None:
    """A glob whose folder part is a symlink (alias -> docs) must still find the files it matches."""
    alias = tree.parent / "alias"
    os.symlink(tree, alias, target_is_directory=True)
    found = discover([f"{alias}/*.md"])
    assert found.files or found.missing, "matches were silently dropped"
    assert _sources(found) == ["a.md"]


def test_glob_with_dotdot_gives_canonical_sources(tree: Path) -> None:
    """Sources are index keys; '..' spellings must not create a second identity for one file."""
    found = discover([f"{tree}/sub/../*.md"])
    assert _sources(found) == ["a.md"]


def test_non_latin_name_with_newline_is_found_and_read(tmp_path: Path) -> None:
    """File names are data, not lines: a newline and CJK characters must survive discovery and reading."""
    name = "日本語\nname.md"
    _write(tmp_path / "docs" / name, "# 日本語のタイトル\n\n本文です。\n")
    found = discover([tmp_path / "docs"])
    assert _sources(found) == [name]
    raw = read(found.files[0])
    assert raw.text == "# 日本語のタイトル\n\n本文です。\n"
    assert raw.file.source == name


# --------------------------------------------------------------------------- decode / read


def test_utf8(tmp_path: Path) -> None:
    """Plain UTF-8 is read unchanged, and its content hash is that of the bytes."""
    raw = _read(_write(tmp_path / "u.md", "naïve café — 日本\n"))
    assert raw.text == "naïve café — 日本\n"
    assert raw.content_hash == hashlib.sha256((tmp_path / "u.md").read_bytes()).hexdigest()


def test_utf8_bom_is_stripped(tmp_path: Path) -> None:
    """Windows editors write a BOM; it must not end up in front of the first heading."""
    raw = _read(_write(tmp_path / "bom.md", "\ufeff# Titel\n\nÄrger über Öl.\n".encode()))
    assert raw.text == "# Titel\n\nÄrger über Öl.\n"


def test_utf16_le_with_bom_is_decoded(tmp_path: Path) -> None:
    """UTF-16 files (common from Windows tools) are recognised by their BOM."""
    data = b"\xff\xfe" + "# Überschrift\n\nText mit Umlauten: äöü.\n".encode("utf-16-le")
    raw = _read(_write(tmp_path / "u16.md", data))
    assert "# Überschrift\n\nText mit Umlauten: äöü.\n" in raw.text


def test_utf16_le_bom_is_stripped(tmp_path: Path) -> None:
    """Like the UTF-8 BOM, the UTF-16 BOM is an encoding mark, not text."""
    data = b"\xff\xfe" + "# Überschrift\n".encode("utf-16-le")
    assert decode(data) == "# Überschrift\n"


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1"])
def test_legacy_latin_encoding_keeps_accents(tmp_path: Path, encoding: str) -> None:
    """Old Western-European docs are not UTF-8; their accented words must survive decoding."""
    raw = _read(_write(tmp_path / "fr.txt", FRENCH.encode(encoding)))
    assert "très" in raw.text and "crème brûlée" in raw.text and "Déjà vu à la" in raw.text


def test_legacy_latin_encoding_is_not_rejected(tmp_path: Path) -> None:
    """A non-UTF-8 text file falls back to charset detection rather than failing as binary."""
    raw = _read(_write(tmp_path / "fr.txt", FRENCH.encode("cp1252")))
    assert raw.text.startswith("Le café est")
    assert len(raw.text) == len(FRENCH)  # one character per byte: a single-byte code page, not UTF-8 junk
    assert "\ufffd" not in raw.text


def test_binary_under_markdown_name_is_refused(tmp_path: Path) -> None:
    """An image renamed .md must not be indexed as mojibake."""
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00"
    with pytest.raises(LoadError, match="binary"):
        _read(_write(tmp_path / "image.md", png))


def test_empty_file_is_refused(tmp_path: Path) -> None:
    """An empty (or blank) file gives a clear reason instead of an empty document."""
    with pytest.raises(LoadError, match="empty"):
        _read(_write(tmp_path / "empty.md", b""))
    with pytest.raises(LoadError, match="empty"):
        _read(_write(tmp_path / "blank.txt", b" \n\t\n"))


def test_invalid_utf8_garbage_is_refused(tmp_path: Path) -> None:
    """Random high bytes (no NUL) are neither UTF-8 nor any text: charset detection rejects them."""
    rng = random.Random(0)
    garbage = bytes(rng.randrange(0x80, 0x100) for _ in range(2000))
    assert b"\x00" not in garbage
    with pytest.raises(LoadError, match="binary content or unknown text encoding"):
        _read(_write(tmp_path / "garbage.txt", garbage))


def test_corrupt_pdf_is_refused(tmp_path: Path) -> None:
    """A truncated or fake PDF gives a LoadError naming the PDF, never a pypdf traceback."""
    with pytest.raises(LoadError, match="PDF"):
        _read(_write(tmp_path / "junk.pdf", b"%PDF-1.4\nnot really a pdf \x01\x02\x03 garbage"))
    rng = random.Random(1)
    with pytest.raises(LoadError, match="PDF"):
        _read(_write(tmp_path / "noise.pdf", bytes(rng.randrange(256) for _ in range(600))))


def test_two_page_pdf(tmp_path: Path) -> None:
    """Text of every page is extracted, and page_starts lets clean name sections by page."""
    path = make_pdf(
        tmp_path / "two.pdf", ["First page about HNSW graphs.", "Second page about IVF lists."], title="Index Notes"
    )
    raw = _read(path)
    assert raw.text == "First page about HNSW graphs.\n\nSecond page about IVF lists."
    assert raw.page_starts == [0, raw.text.index("Second page")]
    assert raw.pdf_title == "Index Notes"


def test_encrypted_pdf_is_refused(tmp_path: Path) -> None:
    """A PDF with a user password cannot be read; the reason must say so."""
    path = make_pdf(tmp_path / "secret.pdf", ["Secret text."], encrypt="hunter2")
    with pytest.raises(LoadError, match=r"(?i)encrypted|password"):
        _read(path)


def test_pdf_bytes_under_markdown_name_are_refused(tmp_path: Path) -> None:
    """A PDF saved as .md would otherwise be indexed as a stream of PDF operators."""
    pdf = make_pdf(tmp_path / "real.pdf", ["Some text."]).read_bytes()
    with pytest.raises(LoadError, match="PDF"):
        _read(_write(tmp_path / "fake.md", pdf))


# pypdf refuses an array of over 100,000 elements with LimitReachedError, which derives from
# PyPdfError only: before it was caught, it escaped read() and aborted the whole ingest.
OVER_LIMIT = pdf_of_streams([b"BT /F1 12 Tf 72 720 Td (array) Tj ET"], page_extra=b" /Big [" + b"0 " * 100_001 + b"]")


def test_pdf_past_a_pypdf_limit_is_reported(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="safety limit"):
        _read(_write(tmp_path / "limit.pdf", OVER_LIMIT))


def test_pdf_past_a_pypdf_limit_does_not_stop_the_ingest(tmp_path: Path, make_index) -> None:
    """The bad PDF is reported with its reason; the good file beside it is ingested and found."""
    root = tmp_path / "docs"
    _write(root / "limit.pdf", OVER_LIMIT)
    _write(root / "good.md", "# Good\n\nThe pangolin index stays searchable.\n")
    ix = make_index()
    report = ix.ingest(root)
    assert report.added == 1 and report.failed == 1, report.failures
    assert report.failures[0][0].endswith("limit.pdf") and "limit" in report.failures[0][1]
    assert ix.search("pangolin", k=1, mode="bm25")[0].source == "good.md"


def test_pdf_pages_share_one_inflation_budget(tmp_path: Path) -> None:
    """Each page under pypdf's per-stream limit, together past the budget: reported, not parsed for minutes."""
    page = b"BT /F1 12 Tf 72 720 Td (pangolin) Tj ET\n" + b" " * (3 * 2**20)
    path = _write(tmp_path / "pages.pdf", pdf_of_streams([page] * 4))
    with pytest.raises(LoadError, match=r"inflates past 8 MiB .*pdf_max_inflated_mb.* page 3"):
        read(_one(path), pdf_max_inflated=8 * 2**20)
    assert read(_one(path), pdf_max_inflated=16 * 2**20).text.count("pangolin") == 4


def test_pdf_budget_is_a_setting(tmp_path: Path, make_index) -> None:
    page = b"BT /F1 12 Tf 72 720 Td (pangolin) Tj ET\n" + b" " * (3 * 2**20)
    _write(tmp_path / "docs" / "pages.pdf", pdf_of_streams([page] * 4))
    report = make_index(pdf_max_inflated_mb=8).ingest(tmp_path / "docs")
    assert report.failed == 1 and "pdf_max_inflated_mb" in report.failures[0][1]


def test_unreadable_folder_is_reported(tmp_path: Path) -> None:
    """A folder os.walk cannot list (here: its path is past PATH_MAX) is a failure, not silence.

    The same holds for a folder without read permission; root ignores permissions, so the test
    builds a path the kernel refuses whoever runs it.
    """
    root = tmp_path / "docs"
    _write(root / "top.md", "# Top\n")
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(20):  # 20 x 250 characters: past Linux's 4,096
            os.mkdir("d" * 250, dir_fd=fd)
            fd, old = os.open("d" * 250, os.O_RDONLY, dir_fd=fd), fd
            os.close(old)
        with open(os.open("deep.md", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "w") as f:
            f.write("# Deep\n")
    finally:
        os.close(fd)
    found = discover([root])
    assert _sources(found) == ["top.md"]
    assert len(found.skipped) == 1, found.skipped
    path, reason = found.skipped[0]
    assert path.startswith(str(root)) and "folder cannot be read" in reason and "too long" in reason


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_bom_is_decoded(tmp_path: Path, encoding: str) -> None:
    """Latin text in UTF-16 has a NUL in every other byte; without a BOM it was refused as binary."""
    text = "The axolotl index keeps its vectors in memory. " * 3
    assert _read(_write(tmp_path / "u16.txt", text.encode(encoding))).text == text
