"""Errors a user can act on.

Every exception that reaches the CLI as a one-line message derives from
``AskdocsError``; anything else is a bug and keeps its traceback.
"""


class AskdocsError(Exception):
    """An error whose message alone tells the user what went wrong and what to do."""


class LoadError(AskdocsError):
    """A single file could not be read or parsed; ingest reports it and goes on."""


class ModelMismatchError(AskdocsError):
    """The collection was built with a different embedding model than the one requested."""


class StoreError(AskdocsError):
    """Milvus could not be reached or refused an operation."""
