"""Structured filters from untrusted clients: built into Milvus expressions without injection."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from askdocs.retrieve import Condition, filter_expression

HOSTILE = [
    'x" or source != "',
    'a") or (1 == 1',
    'x\\" or chunk_index >= 0 or source == \\"',
    "x\n or true",
    'guide/hnsw.md" || "1" == "1',
]


def cond(**kw) -> Condition:
    return Condition.model_validate(kw)


def test_expressions() -> None:
    assert cond(field="source", op="==", value="a.md").expression() == 'source == "a.md"'
    assert cond(field="source", op="prefix", value="guide/").expression() == 'source like "guide/%"'
    assert cond(field="title", op="contains", value="HNSW").expression() == 'title like "%HNSW%"'
    # a LIKE wildcard in a prefix: a string range instead, exact for every character
    ranged = cond(field="source", op="prefix", value="t_a/50%").expression()
    assert ranged == 'source >= "t_a/50%" and source < "t_a/50&"'
    assert cond(field="chunk_index", op="<", value=3).expression() == "chunk_index < 3"
    assert cond(field="source", op="in", value=["a", "b"]).expression() == 'source in ["a", "b"]'
    both = filter_expression([cond(field="source", op="!=", value="a"), cond(field="chunk_index", op=">=", value=1)])
    assert both == '(source != "a") and (chunk_index >= 1)'
    assert filter_expression([]) == ""


@pytest.mark.parametrize(
    "bad",
    [
        {"field": "text", "op": "==", "value": "x"},  # not a filterable field
        {"field": "source", "op": "or", "value": "x"},  # not an operator
        {"field": "source", "op": "<", "value": "x"},  # no ordering on strings
        {"field": "chunk_index", "op": "==", "value": "1 or 1==1"},  # ints only
        {"field": "chunk_index", "op": "==", "value": True},
        {"field": "source", "op": "in", "value": "a"},  # in takes a list
        {"field": "source", "op": "contains", "value": "a\\b"},  # no literal backslash in a LIKE pattern
        {"field": "source", "op": "contains", "value": "m_a"},  # nor a literal _ or %
        {"field": "source", "op": "contains", "value": "0%"},
        {"field": "source", "op": "prefix", "value": ""},
        {"field": "source", "op": "==", "value": "a", "expr": "1 == 1"},  # no extra keys
    ],
)
def test_invalid_conditions_are_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        Condition.model_validate(bad)


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_stay_literals(make_index, docs: Path, value: str) -> None:
    ix = make_index()
    ix.ingest(docs)
    assert len(ix.search("vacuum", k=10, mode="bm25")) > 1
    for op in ("==", "prefix", "contains"):
        if op == "contains" and {"\\", "_", "%"} & set(value):
            continue  # refused (test_invalid_conditions_are_refused)
        expr = filter_expression([cond(field="source", op=op, value=value)])
        # the value matches no source, so an intact expression returns nothing; an injected
        # "or ..." clause would return every chunk
        assert ix.search("vacuum", k=10, mode="bm25", filter=expr) == [], expr
    ok = filter_expression([cond(field="source", op="==", value="page.html")])
    assert {h.source for h in ix.search("vacuum", k=10, mode="bm25", filter=ok)} == {"page.html"}


def test_wildcards_in_prefix_and_contains_are_literal(make_index, tmp_path: Path) -> None:
    """F9: ``_`` and ``%`` are LIKE wildcards; a tenant's prefix ``team_a/`` must not reach ``teamXa/``."""
    root = tmp_path / "tenants"
    for folder, word in [("team_a", "alpha"), ("teamXa", "beta"), ("50%off", "gamma"), ("50XXoff", "delta")]:
        (root / folder).mkdir(parents=True)
        (root / folder / "doc.md").write_text(f"# Vacuum {word}\n\nVACUUM reclaims storage, {word}.\n")
    ix = make_index()
    ix.ingest(root)

    def sources(op: str, value: str) -> set[str]:
        expr = filter_expression([cond(field="source", op=op, value=value)])
        return {h.source for h in ix.search("vacuum", k=20, mode="bm25", filter=expr)}

    assert sources("prefix", "team_a/") == {"team_a/doc.md"}
    assert sources("prefix", "50%off/") == {"50%off/doc.md"}
    assert sources("contains", "eamX") == {"teamXa/doc.md"}
    assert sources("prefix", "team") == {"team_a/doc.md", "teamXa/doc.md"}
