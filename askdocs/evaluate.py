"""Evaluate retrieval (and optionally answers) against a JSON Lines question set.

Question records carry ``id``, ``question``, ``gold_sources`` (paths relative to the ingested
corpus root, i.e. askdocs's ``source`` field), ``answer``, ``key_facts``, ``lang`` and ``answerable``.

Retrieval metrics use *binary relevance by source*: a ranked list of hits is first deduplicated by
source (a source counts at the rank of its first chunk only; its later chunks are dropped, so they
are neither relevant again nor do they push other sources down).  We judge sources, not chunks,
because the gold labels name documents; without dedupe, five chunks of one gold page would inflate
nDCG and one gold page repeated would look like several relevant results.  Ranks are the dedupe
ranks.  hit@k: a gold source within the first k sources; MRR@10: 1/rank of the first gold source;
nDCG@10: DCG of the gold sources found / ideal DCG for min(|gold|, 10) gold sources.

Answer metrics (``--answers``): key-fact accuracy is the share of answerable questions whose answer
contains every ``key_facts`` string, case-insensitively (substring match: exact numbers and names,
no paraphrase credit).  A refusal is detected by ``askdocs.answer.is_refusal`` (``Answer.refused``):
a regex for the prompt's "The documents do not contain the answer." and its usual paraphrases
("does not mention/provide/say", "no information", "not mentioned in").  Refusal accuracy is the
share of unanswerable questions refused; false refusals the share of answerable ones refused.
Support is the share of all answer sentences that the chunk they cite supports (``askdocs.support``: a
sentence citing nothing counts as unsupported, the refusal sentence as supported).
Citation precision is, over answerable answers that cite at least one [n], the share of cited
sources that are gold.  Latency is the whole ``Answer.timings`` sum (embed, search, rerank, prompt,
generate) per question; questions are answered one by one unless ``batch`` so it is per answer.

The metric functions are written by hand (a dozen lines) instead of using ranx: ranx 0.3 brings 36
more packages (numba and llvmlite with their JIT start-up, pandas, scipy, matplotlib and seaborn,
ir_datasets, fastparquet; `pip install --dry-run ranx`), and it scores a run as a dict of document
id -> score, so a ranking where one source appears several times (one hit per chunk) has to be
deduplicated by us first anyway; what remains is hit@k, 1/rank and a log2 sum.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CUTOFFS = (1, 3, 5, 10)
DEPTH = 10


# --------------------------------------------------------------------------- metrics


def dedupe_sources(sources: Sequence[str]) -> list[str]:
    """Sources in first-seen order: later chunks of an already seen source are dropped."""
    seen: dict[str, None] = {}
    for s in sources:
        seen.setdefault(s, None)
    return list(seen)


def first_gold_rank(sources: Sequence[str], gold: Sequence[str], depth: int = DEPTH) -> int | None:
    """1-based rank (after source dedupe) of the first gold source within ``depth``, else None."""
    gold_set = set(gold)
    for i, s in enumerate(dedupe_sources(sources)[:depth], 1):
        if s in gold_set:
            return i
    return None


def ndcg(sources: Sequence[str], gold: Sequence[str], depth: int = DEPTH) -> float:
    """Binary-relevance nDCG@depth over deduplicated sources; 0.0 when there is no gold source."""
    gold_set = set(gold)
    if not gold_set:
        return 0.0
    dcg = sum(1 / math.log2(i + 1) for i, s in enumerate(dedupe_sources(sources)[:depth], 1) if s in gold_set)
    ideal = sum(1 / math.log2(i + 1) for i in range(1, min(len(gold_set), depth) + 1))
    return dcg / ideal


def retrieval_metrics(ranks: Sequence[int | None], ndcgs: Sequence[float]) -> dict[str, float]:
    """hit@k, MRR@10 and mean nDCG@10 from per-question first-gold ranks; empty input gives zeros."""
    n = len(ranks)
    if n == 0:
        return {**{f"hit@{c}": 0.0 for c in CUTOFFS}, "mrr@10": 0.0, "ndcg@10": 0.0, "n": 0}
    out: dict[str, float] = {f"hit@{c}": sum(r is not None and r <= c for r in ranks) / n for c in CUTOFFS}
    out["mrr@10"] = sum(1 / r for r in ranks if r is not None and r <= DEPTH) / n
    out["ndcg@10"] = sum(ndcgs) / n
    out["n"] = n
    return out


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (numpy's default), 0.0 for no values."""
    if not values:
        return 0.0
    xs = sorted(values)
    pos = (len(xs) - 1) * p / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def has_key_facts(answer: str, facts: Sequence[str]) -> bool:
    """Every key fact appears in the answer, case-insensitively (vacuously true with no facts)."""
    low = answer.lower()
    return all(f.lower() in low for f in facts)


# --------------------------------------------------------------------------- running


def load_questions(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSON Lines question file; ``lang`` defaults to 'en' and ``answerable`` to True."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            q = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not JSON ({exc.msg})") from None
        if not isinstance(q, dict) or not isinstance(q.get("question"), str):
            raise ValueError(f"{path}:{n}: needs a 'question' string")
        q.setdefault("id", f"q{n}")
        q.setdefault("gold_sources", [])
        q.setdefault("key_facts", [])
        q.setdefault("lang", "en")
        q.setdefault("answerable", True)
        out.append(q)
    return out


def evaluate_sources(questions: Sequence[dict[str, Any]], sources: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Metrics (overall and per ``lang``) and per-question rows, over the answerable questions only."""
    rows = []
    for q, got in zip(questions, sources, strict=True):
        if not q.get("answerable", True):
            continue
        rows.append(
            {
                "id": q["id"],
                "lang": q.get("lang", "en"),
                "rank": first_gold_rank(got, q["gold_sources"]),
                "ndcg@10": ndcg(got, q["gold_sources"]),
                "top": dedupe_sources(got)[:3],
                "gold": list(q["gold_sources"]),
            }
        )
    by_lang = {
        lang: retrieval_metrics(
            [r["rank"] for r in rows if r["lang"] == lang], [r["ndcg@10"] for r in rows if r["lang"] == lang]
        )
        for lang in sorted({r["lang"] for r in rows})
    }
    overall = retrieval_metrics([r["rank"] for r in rows], [r["ndcg@10"] for r in rows])
    return {"all": overall, "by_lang": by_lang, "per_question": rows}


def evaluate_retrieval(index: Any, questions: Sequence[dict[str, Any]], modes: Sequence[str]) -> dict[str, Any]:
    """Search every answerable question at k=10 in each mode (one ``search_many`` call per mode)."""
    answerable = [q for q in questions if q.get("answerable", True)]
    out: dict[str, Any] = {}
    for mode in modes:
        t = time.perf_counter()
        hits = index.search_many([q["question"] for q in answerable], k=DEPTH, mode=mode) if answerable else []
        res = evaluate_sources(answerable, [[h.source for h in hs] for hs in hits])
        res["seconds"] = time.perf_counter() - t
        out[mode] = res
    return out


def answer_metrics(questions: Sequence[dict[str, Any]], answers: Sequence[Any]) -> dict[str, Any]:
    """Key-fact accuracy, refusal accuracy, false refusals, citation precision, latency percentiles.

    ``answers`` are ``askdocs.answer.Answer`` objects (anything with ``.answer``, ``.citations``
    carrying ``.source``, ``.timings`` and ``.refused``), one per question in order.
    """
    ans_rows, unans, cite_prec, latencies, rows = [], [], [], [], []
    checked: list[bool] = []
    for q, a in zip(questions, answers, strict=True):
        total = float(sum(a.timings.values()))
        latencies.append(total)
        cited = [c.source for c in a.citations]
        gold = set(q.get("gold_sources", []))
        prec = (sum(s in gold for s in cited) / len(cited)) if cited else None
        row = {
            "id": q["id"],
            "answerable": q.get("answerable", True),
            "refused": a.refused,
            "seconds": total,
            "cited": cited,
            "answer": a.answer,
            "support": getattr(a, "support", None),
        }
        checked.extend(c.supported for c in getattr(a, "sentences", []))
        if q.get("answerable", True):
            row["key_facts"] = has_key_facts(a.answer, q.get("key_facts", []))
            ans_rows.append(row)
            if prec is not None:
                cite_prec.append(prec)
        else:
            unans.append(row)
        rows.append(row)
    return {
        "key_fact_accuracy": _mean([r["key_facts"] for r in ans_rows]),
        "false_refusal_rate": _mean([r["refused"] for r in ans_rows]),
        "refusal_accuracy": _mean([r["refused"] for r in unans]),
        "citation_precision": _mean(cite_prec),
        "support": _mean(checked),
        "sentences_checked": len(checked),
        "answers_with_citations": len(cite_prec),
        "n_answerable": len(ans_rows),
        "n_unanswerable": len(unans),
        "latency_p50": percentile(latencies, 50),
        "latency_p95": percentile(latencies, 95),
        "latencies": latencies,
        "per_question": rows,
    }


def _mean(xs: Sequence[float | bool]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def generate_answers(index: Any, questions: Sequence[dict[str, Any]], mode: str | None, batch: bool) -> list[Any]:
    """Answer every question; one by one unless ``batch``, so per-answer latency is a real distribution."""
    from askdocs.answer import Answerer
    from askdocs.generate import make_generator
    from askdocs.retrieve import SearchOptions

    answerer = Answerer(index, make_generator(index.settings))
    texts = [q["question"] for q in questions]
    if batch:
        return answerer.ask_many(texts, search=SearchOptions(mode=mode))  # type: ignore[arg-type]
    return [answerer.ask_many([t], search=SearchOptions(mode=mode))[0] for t in texts]  # type: ignore[arg-type]


def evaluate(
    index: Any,
    questions: str | Path | Sequence[dict[str, Any]],
    modes: Sequence[str] | None = None,
    *,
    answers: bool = False,
    answer_mode: str | None = None,
    batch: bool = False,
) -> EvalResult:
    """The library form of ``askdocs eval``: retrieval in each of ``modes`` (default: the index's
    configured mode), plus generated answers scored when ``answers`` (in ``answer_mode``, default the
    first of ``modes``).  ``questions`` is a JSON Lines path or already loaded records."""
    name = str(questions) if isinstance(questions, str | Path) else "(questions)"
    qs = load_questions(questions) if isinstance(questions, str | Path) else list(questions)
    modes = list(modes or [index.settings.search_mode])
    result = EvalResult(name, len(qs), evaluate_retrieval(index, qs, modes), meta={"settings": _settings_meta(index)})
    if answers:
        result.answer_mode = answer_mode or modes[0]
        result.answers = answer_metrics(qs, generate_answers(index, qs, result.answer_mode, batch))
    return result


def _settings_meta(index: Any) -> dict[str, Any]:
    """The settings that decide retrieval, so a report says what it measured."""
    s = index.settings
    return {
        "collection": s.collection,
        "uri": s.milvus_uri,
        "fusion": s.fusion,
        "dense_weight": s.dense_weight if s.fusion == "weighted" else None,
        "rrf_k": s.rrf_k if s.fusion == "rrf" else None,
        "rerank_model": s.rerank_model,
        "rerank_candidates": s.rerank_candidates if s.rerank_model else None,
        "top_k_answers": s.top_k,
    }


@dataclass
class EvalResult:
    """Everything one ``askdocs eval`` run measured; ``to_dict`` is the --json shape."""

    questions_file: str
    n_questions: int
    retrieval: dict[str, Any]
    answers: dict[str, Any] | None = None
    answer_mode: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "questions": self.questions_file,
            "n_questions": self.n_questions,
            "retrieval": self.retrieval,
            "answers": self.answers,
            "answer_mode": self.answer_mode,
            **self.meta,
        }


# --------------------------------------------------------------------------- reports

_COLS = [*(f"hit@{c}" for c in CUTOFFS), "mrr@10", "ndcg@10"]


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def retrieval_table_rows(result: EvalResult) -> list[list[str]]:
    """One row per mode and language (plus 'all'): mode, lang, n, metrics."""
    rows = []
    for mode, res in result.retrieval.items():
        groups = [("all", res["all"])] + (list(res["by_lang"].items()) if len(res["by_lang"]) > 1 else [])
        for lang, m in groups:
            rows.append([mode, lang, str(m["n"]), *(_fmt(m[c]) for c in _COLS)])
    return rows


def answer_table_rows(ans: dict[str, Any]) -> list[list[str]]:
    return [
        ["key-fact accuracy (answerable)", _fmt(ans["key_fact_accuracy"])],
        ["refusal accuracy (unanswerable)", _fmt(ans["refusal_accuracy"])],
        ["false refusals (answerable)", _fmt(ans["false_refusal_rate"])],
        [f"citation precision ({ans['answers_with_citations']} cited)", _fmt(ans["citation_precision"])],
        [f"support ({ans.get('sentences_checked', 0)} sentences)", _fmt(ans.get("support"))],
        ["latency p50 (s)", _fmt(ans["latency_p50"])],
        ["latency p95 (s)", _fmt(ans["latency_p95"])],
    ]


def _svg_hit_curve(retrieval: dict[str, Any]) -> str:
    """Inline SVG line chart: hit@k (k = 1, 3, 5, 10) per mode."""
    w, h, pad = 420, 240, 40
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    x = {c: pad + (w - 2 * pad) * (c - 1) / 9 for c in CUTOFFS}

    def y(v: float) -> float:
        return h - pad - (h - 2 * pad) * v

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="hit@k">',
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#333"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#333"/>',
    ]
    for v in (0, 0.5, 1):
        parts.append(f'<text x="{pad - 6}" y="{y(v) + 4:.1f}" font-size="10" text-anchor="end">{v}</text>')
    for c in CUTOFFS:
        parts.append(f'<text x="{x[c]:.1f}" y="{h - pad + 14}" font-size="10" text-anchor="middle">k={c}</text>')
    for i, (mode, res) in enumerate(retrieval.items()):
        col = colors[i % len(colors)]
        pts = " ".join(f"{x[c]:.1f},{y(res['all'][f'hit@{c}']):.1f}" for c in CUTOFFS)
        parts.append(f'<polyline fill="none" stroke="{col}" stroke-width="2" points="{pts}"/>')
        parts.append(
            f'<text x="{w - pad + 4}" y="{pad + 14 * i}" font-size="11" fill="{col}">{html.escape(mode)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _svg_histogram(values: Sequence[float], bins: int = 10) -> str:
    """Inline SVG histogram of per-answer latencies in seconds."""
    w, h, pad = 420, 200, 36
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    span = (hi - lo) or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(int((v - lo) / span * bins), bins - 1)] += 1
    top = max(counts) or 1
    bw = (w - 2 * pad) / bins
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="latency">']
    for i, c in enumerate(counts):
        bh = (h - 2 * pad) * c / top
        parts.append(
            f'<rect x="{pad + i * bw:.1f}" y="{h - pad - bh:.1f}" width="{bw - 2:.1f}" '
            f'height="{bh:.1f}" fill="#1f77b4"><title>{c}</title></rect>'
        )
    parts.append(f'<text x="{pad}" y="{h - pad + 14}" font-size="10">{lo:.2f}s</text>')
    parts.append(f'<text x="{w - pad}" y="{h - pad + 14}" font-size="10" text-anchor="end">{hi:.2f}s</text>')
    parts.append(f'<text x="{pad}" y="{pad - 8}" font-size="10">max count {top}</text></svg>')
    return "".join(parts)


def _html_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def gold_not_indexed(questions: Sequence[dict[str, Any]], indexed: set[str]) -> list[str]:
    """Gold sources that no document in the collection has: questions citing only those cannot score."""
    gold = {g for q in questions for g in q.get("gold_sources", [])}
    return sorted(gold - indexed)


_RUN_KEYS = ("collection", "uri", "embed_model", "mode", "k", "llm", "date")


def render_html(result: EvalResult) -> str:
    """A self-contained HTML report: tables plus inline SVG charts, no external assets.

    Every row is in the page and open (nothing folded away or cut short), and gold sources that are not
    in the collection are marked, so a low score that only means "not indexed" reads as such.
    """
    missing = set(result.meta.get("gold_not_indexed", []))
    run = [[k, str(result.meta[k])] for k in _RUN_KEYS if result.meta.get(k) is not None]
    body = [
        f"<h1>askdocs eval</h1><p>{html.escape(result.questions_file)}: {result.n_questions} questions</p>",
        *(["<h2>Run</h2>", _html_table(["setting", "value"], run)] if run else []),
        *(
            [
                f"<p class=warn>{len(missing)} gold source(s) are not indexed (marked below): "
                + html.escape(", ".join(sorted(missing)))
                + "</p>"
            ]
            if missing
            else []
        ),
        *(
            ["<p>" + html.escape(", ".join(f"{k}={v}" for k, v in settings.items() if v is not None)) + "</p>"]
            if (settings := result.meta.get("settings"))
            else []
        ),
        "<h2>Retrieval</h2>",
        _html_table(["mode", "lang", "n", *_COLS], retrieval_table_rows(result)),
        "<h3>hit@k per mode</h3>",
        _svg_hit_curve(result.retrieval),
    ]
    for mode, res in result.retrieval.items():
        rows = [
            [
                r["id"],
                r["lang"],
                _fmt(r["rank"]),
                ", ".join(g + (" (not indexed)" if g in missing else "") for g in r["gold"]),
                ", ".join(r["top"]),
            ]
            for r in res["per_question"]
        ]
        body.append(
            f"<details open><summary>per question: {html.escape(mode)}</summary>"
            + _html_table(["id", "lang", "first gold rank", "gold", "top sources"], rows)
            + "</details>"
        )
    if result.answers is not None:
        ans = result.answers
        body += [
            f"<h2>Answers ({html.escape(str(result.answer_mode))})</h2>",
            _html_table(["metric", "value"], answer_table_rows(ans)),
            "<h3>latency per answer</h3>",
            _svg_histogram(ans["latencies"]),
        ]
        rows = [
            [
                r["id"],
                "yes" if r["answerable"] else "no",
                "yes" if r["refused"] else "no",
                _fmt(r.get("key_facts")),
                f"{r['seconds']:.2f}",
                r["answer"],
            ]
            for r in ans["per_question"]
        ]
        body.append(
            "<details open><summary>per answer</summary>"
            + _html_table(["id", "answerable", "refused", "key facts", "seconds", "answer"], rows)
            + "</details>"
        )
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top;overflow-wrap:anywhere;"
        "white-space:pre-wrap}.warn{color:#a40}"
    )
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>askdocs eval</title><style>{style}</style>'
        f"</head><body>{''.join(body)}</body></html>"
    )


def write_html(result: EvalResult, path: str | Path) -> Path:
    p = Path(path)
    p.write_text(render_html(result), encoding="utf-8")
    return p
