"""Serve: an OpenAI-compatible RAG API, a REST API and the web page, with FastAPI.

One module per role:

* ``app``: assembly — lifespan, auth, CORS, metrics, and the one place where errors become HTTP statuses;
* ``service``: the serving layer — ``Service`` (one embedder, one generator, an index per collection),
  the micro-batcher and the ingest jobs;
* ``protocol``: the request and response models, the stream chunks included, and the one streaming loop;
* ``guards``: upload checks, server-side path confinement, and keeping server paths out of replies;
* ``openai_api``, ``rest_api``, ``web``: the routes of the OpenAI-compatible API, the REST API and the page.
"""

from askdocs.server.app import create_app

__all__ = ["create_app"]
