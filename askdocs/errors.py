"""Errors a user can act on.

Every exception that reaches the CLI as a one-line message derives from
``AskdocsError``; anything else is a bug and keeps its traceback.  Each class
also says whose fault it is, as an HTTP status, so that the server can tell a
client what to fix, what to retry and what to alert on without a table of its
own: the CLI prints the message alone, the server answers with ``status``.
"""


class AskdocsError(Exception):
    """An error whose message alone tells the user what went wrong and what to do.

    Raised as is, it is the caller's input or configuration that is wrong (400).
    """

    status: int = 400


class BadInputError(AskdocsError):
    """The request or its input is wrong: a bad option, an unusable file, a filter the store rejects."""

    status = 400


class LoadError(BadInputError):
    """A single file could not be read or parsed; ingest reports it and goes on."""


class ModelMismatchError(BadInputError):
    """The collection was built with a different embedding model than the one requested."""


class NotFoundError(AskdocsError):
    """What the request names does not exist."""

    status = 404


class CollectionNotFoundError(NotFoundError):
    """The collection does not exist (yet): nothing has been ingested into it."""


class AmbiguousNameError(BadInputError):
    """A document name that several documents answer to (one source under two roots): the message lists them."""

    status = 409


class DocumentNotFoundError(NotFoundError):
    """No document with that source is in the index."""


class StoreError(AskdocsError):
    """Milvus could not be reached or refused an operation: retry later or alert the operator."""

    status = 503


class GeneratorError(AskdocsError):
    """The LLM answered with a failure: the upstream is at fault, not the client (502)."""

    status = 502


class GeneratorUnavailableError(GeneratorError):
    """The LLM server cannot be reached: retry later (503)."""

    status = 503
