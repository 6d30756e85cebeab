"""Structured filters from untrusted clients: built into Milvus expressions without injection."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from askdocs.retrieve import Condition, filter_expression

HOSTILE = [
    'x" or source != "',
    'a") or (1 == 1',
    "x\\\" or chunk_index >= 0 or source == \\\"",
    "x\n or true",
    'guide/hnsw.md" || "1" == "1',
]


def cond(**kw) -> Condition:
    return Condition.model_validate(kw)


def test_expressions() -> None:
    assert cond(field="source", op="==", value="a.md").expression() == 'source == "a.md"'
    assert cond(field="source", op="prefix", value="guide/").expression() == 'source like "guide/%"'
    assert cond(field="title", op="contains", value="HNSW").expression() == 'title like "%HNSW%"'
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
        {"field": "source", "op": "prefix", "value": "%"},
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
        if op != "==" and "%" in value:
            continue
        expr = filter_expression([cond(field="source", op=op, value=value)])
        # the value matches no source, so an intact expression returns nothing; an injected
        # "or ..." clause would return every chunk
        assert ix.search("vacuum", k=10, mode="bm25", filter=expr) == [], expr
    ok = filter_expression([cond(field="source", op="==", value="page.html")])
    assert {h.source for h in ix.search("vacuum", k=10, mode="bm25", filter=ok)} == {"page.html"}
