"""Guards at the server's edge: how big a request may be, what an upload may be, which server paths a
client may name, what a reply may show.

Clients are untrusted: every body, question, chat and ``max_tokens`` is capped by a setting, so one client
cannot make the server read, embed or generate without bound while others wait; uploads are checked for
name, type, size and count and written whole or not at all; server-side paths must resolve, symlinks
included, inside the operator's ``ingest_roots``; and server paths outside those roots never reach a reply.
"""

from __future__ import annotations

import hmac
import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from askdocs.config import Settings
from askdocs.load import FORMATS

#: Every format ingest reads (askdocs.load.FORMATS), so the web page takes what the CLI takes.
UPLOAD_SUFFIXES = set(FORMATS)
#: Formats whose files are binary by nature (zip containers, PDF): the "binary in a text file" check skips them.
BINARY_SUFFIXES = {".pdf", ".docx", ".pptx", ".xlsx", ".epub"}
UPLOAD_TYPES = {
    "",
    "application/octet-stream",
    "application/pdf",
    "application/xhtml+xml",
    "text/markdown",
    "text/x-markdown",
    "text/plain",
    "text/html",
    "text/x-rst",
    "text/prs.fallenstein.rst",
    "text/csv",
    "application/csv",
    "application/vnd.ms-excel",  # what Windows browsers send for .csv
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/epub+zip",
    "application/zip",
    "application/x-zip-compressed",
}


class Rejected(Exception):
    """One upload refused (the others in the same request still go ahead)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_ABS_PATH = re.compile(r"(?<![\w.])/(?:[\w.@+-]+/)+[\w.@+-]*")
_SAFE_NAME = re.compile(r"[^\w.\- ]+", re.UNICODE)


class LimitError(HTTPException):
    """A request over one of the server's limits: 400 (413 for bodies) naming the field and the setting."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(status, message)
        self.param = param


def check_chat(settings: Settings, texts: Sequence[tuple[str, str]], max_tokens: int | None) -> None:
    """Question, messages and ``max_tokens`` within the settings; ``texts`` is (param, text) per message.

    A 20 MB question made a concurrent search wait 13.8 s (embedding and BM25 of the whole text):
    the caps keep each request's work small and refuse the rest before any of it is done.
    """
    if len(texts) > settings.max_messages:
        raise LimitError(400, f"too many messages: at most {settings.max_messages} (max_messages)", "messages")
    for param, text in texts:
        if len(text) > settings.max_question_chars:
            msg = f"{param} is longer than {settings.max_question_chars} characters (max_question_chars)"
            raise LimitError(400, msg, param)
    if max_tokens is not None and max_tokens > settings.max_tokens_limit:
        msg = f"max_tokens is above {settings.max_tokens_limit} (max_tokens_limit)"
        raise LimitError(400, msg, "max_tokens")


class RequestLimits:
    """Refuses a request head over ``max_header_bytes`` (431) and a body over its limit (413).

    Uploads may be ``max_upload_files`` x ``max_upload_bytes`` (plus form overhead); every other body,
    JSON, ``max_request_bytes``.  Starlette reads a body whole into memory, so the bound has to sit in
    front of it: the declared Content-Length is checked first, and the bytes actually received are
    counted, for clients that send more than they declare or none at all (chunked).  A JSON body is
    read here (it is small) so that going over is a 413 and not FastAPI's generic parse error; an
    upload is counted as it streams.  h11 bounds a head that arrives in pieces; one that arrives
    whole is measured here.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings = app, settings

    async def _refuse(self, status: int, message: str, scope: Scope, receive: Receive, send: Send) -> None:
        from starlette.responses import JSONResponse

        body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
        await JSONResponse(body, status_code=status, headers={"Connection": "close"})(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_headers = scope.get("headers") or []
        head = sum(len(k) + len(v) + 4 for k, v in raw_headers) + len(scope.get("raw_path") or b"")
        if head > self.settings.max_header_bytes:
            msg = f"request headers larger than {self.settings.max_header_bytes} bytes (max_header_bytes)"
            await self._refuse(431, msg, scope, receive, send)
            return
        headers = dict(raw_headers)
        upload = headers.get(b"content-type", b"").startswith(b"multipart/form-data")
        if upload:
            limit = self.settings.max_upload_files * self.settings.max_upload_bytes + 1024 * 1024
            too_big = f"upload larger than {limit} bytes (max_upload_files x max_upload_bytes)"
        else:
            limit = self.settings.max_request_bytes
            too_big = f"request body larger than {limit} bytes (max_request_bytes)"
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(413, too_big, scope, receive, send)
            return
        if not upload:
            chunks, seen, more = [], 0, True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    break
                chunks.append(message.get("body", b""))
                seen += len(chunks[-1])
                more = message.get("more_body", False)
                if seen > limit:
                    await self._refuse(413, too_big, scope, receive, send)
                    return
            replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

            async def replayed() -> Message:
                return replay.pop() if replay else await receive()

            await self.app(scope, replayed, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise LimitError(413, too_big)
            return message

        await self.app(scope, counted, send)


def public(message: str, settings: Settings) -> str:
    """Server-side paths outside the ingest roots and the upload folder don't reach clients."""
    allowed = [str(Path(r).resolve()) for r in [*settings.ingest_roots, settings.upload_dir]]

    def hide(m: re.Match[str]) -> str:
        p = m.group(0)
        return p if any(p == a or p.startswith(a + os.sep) for a in allowed) else "<path>"

    return _ABS_PATH.sub(hide, message)


def public_report(report: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """An ingest report with its failures' paths made ``public``."""
    failures = report.get("failures") or []
    report["failures"] = [
        {k: public(str(v), settings) for k, v in (f.items() if isinstance(f, dict) else {"path": f}.items())}
        for f in failures
    ]
    return report


def key_ok(authorization: str, settings: Settings) -> bool:
    """``Authorization: Bearer KEY`` matches the server's ``api_key`` (constant time), or no key is set."""
    if not settings.api_key:
        return True
    scheme, _, token = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), settings.api_key.encode())


def _within(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def _candidates(raw: str, real_roots: Sequence[Path]) -> list[Path]:
    """The lexical places ``raw`` may mean ('..' and foreign absolute paths already ruled out)."""
    p = Path(raw)
    found = [Path(os.path.normpath(p))] if p.is_absolute() else [Path(os.path.normpath(r / p)) for r in real_roots]
    return [c for c in found if _within(c, real_roots)]


def confine(paths: Sequence[str], roots: Sequence[Path]) -> list[str]:
    """Resolve each requested path, symlinks included, and refuse anything outside the roots."""
    if not roots:
        raise HTTPException(403, "server-side ingest is off: the operator has configured no ingest_roots")
    real_roots = [Path(r).resolve() for r in roots]
    out = []
    for raw in paths:
        if "\x00" in raw:
            raise HTTPException(400, "invalid path")
        # no server paths in replies, and no 100,000-character echo of a client's path either
        shown = repr(raw[:80]) if not Path(raw).is_absolute() else f"path #{len(out) + 1}"
        try:
            out.append(_confine_one(raw, shown, real_roots))
        except (OSError, RuntimeError) as exc:  # ENAMETOOLONG, ELOOP, a symlink loop in resolve()
            reason = getattr(exc, "strerror", None) or "symlink loop"
            raise HTTPException(400, f"{shown}: {reason}") from None
    return out


def _confine_one(raw: str, shown: str, real_roots: Sequence[Path]) -> str:
    from askdocs.load import discover

    candidates = _candidates(raw, real_roots)  # lexical check first, then the real path (symlinks)
    if not candidates:
        raise HTTPException(403, f"{shown} is outside the ingest roots")
    chosen = next((c for c in candidates if c.exists() or c.is_symlink()), None)
    if chosen is None:
        raise HTTPException(404, f"{shown} does not exist inside the ingest roots")
    real = chosen.resolve(strict=True)
    if not _within(real, real_roots):
        raise HTTPException(403, f"{shown} is outside the ingest roots")
    # a folder may hold symlinks that leave the roots: check every file it would ingest
    for f in discover([real]).files:
        if not _within(f.path.resolve(), real_roots):
            raise HTTPException(403, f"{shown} contains a link that leaves the ingest roots")
    return str(real)


def _check_upload(name: str, content_type: str | None, data: bytes, settings: Settings) -> None:
    suffix = Path(name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        kind = suffix or "(no extension)"
        raise Rejected(415, f"{name}: unsupported type {kind}; send {', '.join(sorted(UPLOAD_SUFFIXES))}")
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype not in UPLOAD_TYPES:
        raise Rejected(415, f"{name}: content type {ctype!r} is not a document type")
    if len(data) > settings.max_upload_bytes:
        raise Rejected(413, f"{name}: larger than {settings.max_upload_bytes} bytes")
    if suffix == ".pdf" and not data.startswith(b"%PDF"):
        raise Rejected(415, f"{name}: not a PDF file")
    if suffix not in BINARY_SUFFIXES and b"\x00" in data[:8192] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise Rejected(415, f"{name}: binary content in a text document")


async def save_uploads(files: Sequence[Any], settings: Settings) -> tuple[list[str], list[dict[str, Any]]]:
    """Check each upload's name, type and size, and write the good ones whole or not at all.

    Returns the paths written and the uploads refused (``{"path", "reason", "status"}``): one bad file
    does not cost the others their upload.  Only when every file is refused is the request an error,
    with the first refusal's status.
    """
    if not files:
        raise HTTPException(400, "no files: send one or more 'files' fields")
    if len(files) > settings.max_upload_files:
        raise HTTPException(413, f"too many files: at most {settings.max_upload_files} per request")
    folder = settings.upload_dir.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    rejected: list[dict[str, Any]] = []
    for f in files:
        name = _SAFE_NAME.sub("_", Path(f.filename or "").name).strip(" .")
        try:
            if not name:
                raise Rejected(400, f"invalid file name {(f.filename or '')[:80]!r}")
            if len(name.encode()) > 255:  # NAME_MAX: the file could not be created
                raise Rejected(400, f"file name longer than 255 bytes: {name[:60]!r}...")
            data = await f.read(settings.max_upload_bytes + 1)
            _check_upload(name, f.content_type, data, settings)
        except Rejected as r:
            rejected.append({"path": (name or str(f.filename))[:255], "reason": str(r), "status": r.status})
            continue
        target = folder / name
        tmp = folder / f".upload-{uuid.uuid4().hex}.part"  # not named after the upload: stays under NAME_MAX
        tmp.write_bytes(data)
        os.replace(tmp, target)
        written.append(str(target))
    if not written:
        raise HTTPException(rejected[0]["status"], "; ".join(r["reason"] for r in rejected))
    return written, rejected
