"""askdocs: answers from your own documents, with sources.

The pipeline has one module per stage: ``load`` -> ``clean`` -> ``chunk`` ->
``embed`` -> ``store`` -> ``retrieve``; ``ingest`` keeps a collection in step
with folders, and ``Index`` is the library front door that the CLI mirrors.
"""

from askdocs.config import Settings, load_settings
from askdocs.errors import AskdocsError
from askdocs.index import Index
from askdocs.ingest import IngestReport
from askdocs.store import Hit

__all__ = ["AskdocsError", "Hit", "Index", "IngestReport", "Settings", "load_settings"]
__version__ = "0.1.0"
