"""Document identity: the folder a file was ingested from (its root) and its path inside it (its source).

Two folders may each hold a ``readme.md``; they are two documents.  People, though, read and type names, and a
bare ``readme.md`` would not say which one is meant, so the name shown (in search results, citations, the
document list) and accepted by ``delete`` is the source alone where one root holds it, and the source behind
as much of its root's path as tells the roots apart where several do (``colA/readme.md``, ``colB/readme.md``).
A collection whose sources all differ, the usual case, shows exactly the paths it always showed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import PurePath

from askdocs.errors import AmbiguousNameError

#: A document's identity in the index: (root, source), the root an absolute folder path as ingest recorded it.
DocKey = tuple[str, str]


def _tails(root: str) -> list[str]:
    """The root's trailing folder names, shortest first: ``/a/b/c`` -> ``c``, ``b/c``, ``a/b/c``, ``/a/b/c``."""
    parts = PurePath(root).parts
    tails = ["/".join(parts[i:]) for i in range(len(parts) - 1, 0, -1)]
    return [*tails, root]


def _qualified(root: str, source: str) -> list[str]:
    """The names a shared source may take under ``root``, shortest first; the last, its full path, is unique."""
    return [f"{t.rstrip('/')}/{source}" for t in _tails(root)]


def _shared(keys: Iterable[DocKey]) -> dict[str, list[str]]:
    by_source: dict[str, list[str]] = defaultdict(list)
    for root, source in sorted(set(keys)):
        by_source[source].append(root)
    return by_source


def candidates(keys: Iterable[DocKey]) -> set[str]:
    """Every name ``names`` might give the shared sources among ``keys``: what a caller that knows only some
    documents (a search knows its hits') must look up as sources, to pass as ``taken``."""
    return {
        n for source, roots in _shared(keys).items() if len(roots) > 1 for r in roots for n in _qualified(r, source)
    }


def names(keys: Iterable[DocKey], taken: Iterable[str] = ()) -> dict[DocKey, str]:
    """The name of each document: its source, or where roots share the source, its root's shortest tail + source
    that no other of those roots has and that is no other document's source (``taken``: sources not in ``keys``).

    Nested roots are why the last rule exists: ``docs/`` holding ``sub/a.md`` and ``docs/sub/`` holding
    ``a.md`` beside another root's ``a.md`` would otherwise both be called ``sub/a.md``.
    """
    by_source = _shared(keys)
    sources = set(by_source) | set(taken)
    out: dict[DocKey, str] = {}
    for source, roots in by_source.items():
        if len(roots) == 1:
            out[(roots[0], source)] = source
            continue
        options = {r: _qualified(r, source) for r in roots}
        for r, mine in options.items():
            # Names of equal text come from tails of equal depth, so a tail no other root shares is unique.
            others = {n for o, theirs in options.items() if o != r for n in theirs}
            out[(r, source)] = next((n for n in mine if n not in others and n not in sources), mine[-1])
    return out


def resolve(name: str, keys: Iterable[DocKey]) -> list[DocKey]:
    """The documents ``name`` may mean: by shown name, by bare source, or by the file's full path.

    An exact shown name wins over a bare source, so ``readme.md`` names the one document of that source
    and, once two roots hold it, neither (the caller refuses it and lists the candidates).
    """
    keys = list(keys)
    shown = names(keys)
    exact = [k for k in keys if shown[k] == name]
    if exact:
        return exact
    return [k for k in keys if k[1] == name or full_path(k) == name]


def full_path(key: DocKey) -> str:
    """The file the document was read from, as a path (used to list candidates unambiguously)."""
    root, source = key
    return f"{root.rstrip('/')}/{source}" if root else source


def pick(name: str, keys: Iterable[DocKey]) -> DocKey | None:
    """The one document ``name`` means, None when none; an ambiguous name is refused with the candidates."""
    keys = list(keys)
    found = resolve(name, keys)
    if len(found) > 1:
        shown = names(keys)
        listed = ", ".join(f"{shown[k]} ({full_path(k)})" for k in sorted(found))
        raise AmbiguousNameError(f"{name!r} names {len(found)} documents; name one of: {listed}")
    return found[0] if found else None
