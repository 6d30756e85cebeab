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
