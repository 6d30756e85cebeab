"""Embedding backends: the ONNX export computes what sentence-transformers computes, int8 stays close,
and a collection remembers the backend it was built with so that queries match its vectors."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import pytest

from askdocs import Index
from askdocs.embed import CPU_DEFAULT_MODEL, Embedder, OnnxEmbedder, make_embedder
from askdocs.errors import AskdocsError

pytest.importorskip("onnxruntime")
onnxlib = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("askdocs-cache")


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """Mixed lengths (3 to 300 words), so batches are padded: padding must not change a vector."""
    rng = random.Random(7)
    words = (Path(__file__).resolve().parent.parent / "README.md").read_text().split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 300))) for _ in range(70)]


def test_onnx_vectors_equal_torch_and_export_is_cached(
    monkeypatch: pytest.MonkeyPatch, cache: Path, texts: list[str], embedder: Embedder
) -> None:
    monkeypatch.setenv("ASKDOCS_CACHE", str(cache))
    onnx = OnnxEmbedder(CPU_DEFAULT_MODEL, batch_size=16)
    got = onnx.embed_documents(texts)
    want = embedder.embed_documents(texts)
    assert got.shape == want.shape == (len(texts), 384)
    assert np.abs(got - want).max() < 1e-4
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    [exported] = list(cache.glob("onnx/*/model.onnx"))
    ops = {node.op_type for node in onnxlib.load(str(exported), load_external_data=False).graph.node}
    # ONNX Runtime's transformer optimizer fused the BERT layers (what makes the export faster)
    assert {"Attention", "SkipLayerNormalization", "BiasGelu", "EmbedLayerNormalization"} <= ops, ops
    mtime = exported.stat().st_mtime_ns
    again = OnnxEmbedder(CPU_DEFAULT_MODEL, batch_size=7).embed_queries(texts[:5])
    assert exported.stat().st_mtime_ns == mtime  # loaded, not exported again
    assert np.abs(again - embedder.embed_queries(texts[:5])).max() < 1e-4


def test_int8_is_close_but_not_identical(
    monkeypatch: pytest.MonkeyPatch, cache: Path, texts: list[str], embedder: Embedder
) -> None:
    monkeypatch.setenv("ASKDOCS_CACHE", str(cache))
    got = OnnxEmbedder(CPU_DEFAULT_MODEL, quantize=True).embed_documents(texts)
    want = embedder.embed_documents(texts)
    cos = (got * want).sum(axis=1)
    # word salad of up to 300 words is harsher than prose; retrieval quality is measured in benchmarks
    assert cos.mean() > 0.98 and cos.min() > 0.9, (cos.mean(), cos.min())
    assert np.abs(got - want).max() > 1e-3  # really quantized, not the float graph again
    [int8] = list(cache.glob("onnx/*/model-int8.onnx"))
    ops = {node.op_type for node in onnxlib.load(str(int8), load_external_data=False).graph.node}
    assert "QAttention" in ops, ops  # the fused attention's projections quantized too


def test_int8_query_vector_does_not_depend_on_its_batch(
    monkeypatch: pytest.MonkeyPatch, cache: Path, texts: list[str]
) -> None:
    """One quantization scale per run would make a query's vector depend on the queries beside it."""
    monkeypatch.setenv("ASKDOCS_CACHE", str(cache))
    int8 = OnnxEmbedder(CPU_DEFAULT_MODEL, quantize=True)
    alone = int8.embed_queries(["What do the parameters of HNSW mean?"])[0]
    beside = int8.embed_queries(["What do the parameters of HNSW mean?", *texts[:8]])[0]
    assert np.array_equal(alone, beside)


def test_bfloat16_is_close_to_float32_and_queries_do_not_depend_on_their_batch(
    texts: list[str], embedder: Embedder
) -> None:
    bf16 = make_embedder(CPU_DEFAULT_MODEL, "torch-bf16", batch_size=16)
    assert bf16.backend == "torch-bf16"
    got = bf16.embed_documents(texts)
    want = embedder.embed_documents(texts)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # normalised again in float32
    cos = (got * want).sum(axis=1)
    assert cos.min() > 0.99, cos.min()
    assert np.abs(got - want).max() > 1e-4  # really bfloat16, not float32 again
    alone = bf16.embed_queries(["What do the parameters of HNSW mean?"])[0]
    beside = bf16.embed_queries(["What do the parameters of HNSW mean?", *texts[:8]])[0]
    assert np.array_equal(alone, beside)
    # questions go through the float32 ONNX export (no torch at search time): float32's vectors
    assert isinstance(bf16.for_queries(), OnnxEmbedder) and not bf16.for_queries().quantize
    assert np.abs(bf16.embed_queries(texts[:5]) - embedder.embed_queries(texts[:5])).max() < 1e-4
    assert bf16._model is not None  # documents did load the bfloat16 torch model
    assert bf16.dimension == 384


def test_a_bfloat16_collection_is_searched_without_torch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, docs: Path, db: str
) -> None:
    """Ingest in bfloat16, then search from a fresh process: the question's vector comes from ONNX Runtime,
    so the search never imports torch (5 s of a one-shot search) and finds the page.  The ingest made the
    float32 ONNX export (torch was loaded anyway), so the first question does not."""
    import subprocess
    import sys

    monkeypatch.setenv("ASKDOCS_CACHE", str(tmp_path / "cache"))  # no export yet
    with Index(milvus_uri=db, embed_backend="torch-bf16") as ix:
        ix.ingest(docs)
        assert ix.store.meta()["embed_backend"] == "torch-bf16"
    assert list((tmp_path / "cache").glob("onnx/all-MiniLM-L6-v2-*/askdocs-onnx.json")), "ingest left no export"
    script = (
        "import sys\n"
        "from askdocs import Index\n"
        "from askdocs.answer import Answerer\n"
        "from askdocs.generate import make_generator\n"
        f"with Index(milvus_uri={db!r}, llm_backend='extractive') as ix:\n"
        "    hits = ix.search('What does VACUUM FULL do to the table?', k=1, mode='hybrid')\n"
        "    answer = Answerer(ix, make_generator(ix.settings)).ask('What does VACUUM FULL do to the table?')\n"
        "print(hits[0].source, ix.embed_backend, bool(answer.citations), 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    # the search and an extractive answer (its sentences scored by embedding) both ran without torch
    assert out.stdout.split() == ["page.html", "torch-bf16", "True", "False"], out.stdout
    assert "first use of" not in out.stderr  # nothing was exported on the question's path


def test_unfused_export_is_kept_apart(
    monkeypatch: pytest.MonkeyPatch, cache: Path, texts: list[str], embedder: Embedder
) -> None:
    """fuse=False (the packaged MiniLM's graph) lives in its own cache folder and agrees with the fused one.

    Its softmaxes lost the NaN guards torch's SDPA export puts after them (a third of the int8 graph's
    time): still the model's own vectors, for an empty text and in padded batches too."""
    monkeypatch.setenv("ASKDOCS_CACHE", str(cache))
    sample = ["", *texts[:20]]
    fused = OnnxEmbedder(CPU_DEFAULT_MODEL).embed_documents(sample)
    before = set(cache.glob("onnx/*"))
    plain = OnnxEmbedder(CPU_DEFAULT_MODEL, fuse=False).embed_documents(sample)
    [folder] = set(cache.glob("onnx/*")) - before
    ops = {node.op_type for node in onnxlib.load(str(folder / "model.onnx"), load_external_data=False).graph.node}
    assert "Attention" not in ops and "MatMul" in ops
    assert "IsNaN" not in ops and "Softmax" in ops
    assert (fused * plain).sum(axis=1).min() > 0.9999
    assert np.isfinite(plain).all()
    assert np.abs(plain - embedder.embed_documents(sample)).max() < 1e-4


def test_int8_without_nan_guards_is_bit_identical(
    monkeypatch: pytest.MonkeyPatch, cache: Path, texts: list[str], tmp_path: Path
) -> None:
    """The guards dropped from the plain graph were dead: its int8 vectors equal, bit for bit, those of the
    same graph exported with them (the README's claim, and why the int8 default kept every dev figure)."""
    import askdocs.embed as embed_mod

    sample = ["", *texts[:32]]  # an empty text, and batches padded to different lengths
    monkeypatch.setenv("ASKDOCS_CACHE", str(cache))
    without = OnnxEmbedder(CPU_DEFAULT_MODEL, quantize=True, fuse=False).embed_documents(sample)
    monkeypatch.setenv("ASKDOCS_CACHE", str(tmp_path))
    monkeypatch.setattr(embed_mod, "_drop_nan_guards", lambda path: None)
    guarded = OnnxEmbedder(CPU_DEFAULT_MODEL, quantize=True, fuse=False).embed_documents(sample)
    [folder] = list(tmp_path.glob("onnx/*"))
    ops = {node.op_type for node in onnxlib.load(str(folder / "model.onnx"), load_external_data=False).graph.node}
    assert "IsNaN" in ops  # really the guarded graph
    assert np.array_equal(without, guarded)


def test_backend_choice_is_checked() -> None:
    assert type(make_embedder(CPU_DEFAULT_MODEL, "torch")) is Embedder
    assert isinstance(make_embedder(CPU_DEFAULT_MODEL, "onnx-int8"), OnnxEmbedder)
    with pytest.raises(AskdocsError, match="CPU"):
        make_embedder(CPU_DEFAULT_MODEL, "onnx", device="cuda")
    with pytest.raises(AskdocsError, match="unknown embed_backend"):
        make_embedder(CPU_DEFAULT_MODEL, "tensorrt")


def test_collection_remembers_its_backend(monkeypatch: pytest.MonkeyPatch, cache: Path, docs: Path, db: str) -> None:
    monkeypatch.setenv("ASKDOCS_CACHE", str(cache))
    with Index(milvus_uri=db, embed_backend="onnx-int8") as ix:
        ix.ingest(docs)
        assert ix.store.meta()["embed_backend"] == "onnx-int8"
    with Index(milvus_uri=db) as ix:  # no backend configured: the collection's own
        assert ix.embed_backend == "onnx-int8"
        hits = ix.search("What does VACUUM FULL do to the table?", k=1, mode="dense")
        assert isinstance(ix.embedder(), OnnxEmbedder)
        assert hits[0].source == "page.html"


def test_default_backend_on_cpu_is_int8_with_or_without_amx(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import askdocs.embed as embed_mod
    from askdocs.embed import CPU_MULTILINGUAL_MODEL, default_backend

    for amx in (True, False):
        monkeypatch.setattr(embed_mod, "cpu_has_amx", lambda amx=amx: amx)
        assert default_backend(CPU_DEFAULT_MODEL, "cpu") == "onnx-int8"
        assert default_backend(CPU_MULTILINGUAL_MODEL, "cpu") == "onnx-int8"
        assert default_backend("BAAI/bge-large-en-v1.5", "cpu") == "torch"
        assert default_backend(CPU_DEFAULT_MODEL, "cuda") == "torch"
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="askdocs"):
            make_embedder(CPU_DEFAULT_MODEL, "torch-bf16", "cpu")
        assert ("without AMX" in caplog.text) is not amx, caplog.text  # emulated bfloat16 is slow: say so


def test_collection_records_the_backend_that_embedded_it(docs: Path, db: str, embedder: Embedder) -> None:
    """A shared torch embedder writes torch vectors: the collection must say torch, whatever the default."""
    with Index(milvus_uri=db, embedder=embedder) as ix:
        ix.ingest(docs)
        assert ix.store.meta()["embed_backend"] == "torch"


def test_packaged_minilm_keeps_the_plain_graph() -> None:
    """Fusion is per model: MiniLM's fused int8 lost a dev question at hit@5, e5's gained 1.5x (multilingual.md)."""
    from askdocs.embed import CPU_MULTILINGUAL_MODEL, make_embedder

    assert make_embedder(CPU_DEFAULT_MODEL, "onnx-int8").fuse is False
    assert make_embedder(CPU_MULTILINGUAL_MODEL, "onnx-int8").fuse is True
