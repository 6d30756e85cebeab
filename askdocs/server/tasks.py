"""Client housekeeping prompts: requests that are not questions about the documents.

Open WebUI sends its own "task" prompts to the chat model after each answer: a chat title, tags and
follow-up suggestions (and, when enabled, search queries, autocompletion, an emoji).  They are the
user message of a ``/v1/chat/completions`` request, built from templates in Open WebUI's
``backend/open_webui/config.py`` (``DEFAULT_TITLE_GENERATION_PROMPT_TEMPLATE`` and its siblings), which
all start with ``### Task:`` and quote the conversation inside ``<chat_history>`` tags.  Retrieving
passages for such a prompt is wasted work and makes the model answer the documents instead of the
task (a title that took 120 s and read like a passage), so these go to the LLM as they are.
"""

from __future__ import annotations

import re

#: Task kinds, by what each template asks for in its first lines (Open WebUI 0.5 to 0.6 wording).
_KINDS = (
    ("title", re.compile(r"\btitle\b", re.I)),
    ("tags", re.compile(r"\btags?\b", re.I)),
    ("follow_ups", re.compile(r"follow-up", re.I)),
    ("queries", re.compile(r"search quer", re.I)),
    ("autocomplete", re.compile(r"autocompletion|sentence completion", re.I)),
    ("emoji", re.compile(r"\bemoji\b", re.I)),
)


def client_task(text: str) -> str | None:
    """The kind of Open WebUI task prompt ``text`` is (``"title"``, ``"tags"``, ...), or None for a question."""
    stripped = text.lstrip()
    if not stripped.startswith("### Task:") or "<chat_history>" not in stripped:
        return None
    head = stripped.split("### Guidelines", 1)[0]  # the task statement, before the shared guideline text
    for kind, pattern in _KINDS:
        if pattern.search(head):
            return kind
    return "other"
