"""Hand-built PDFs for the loader tests: the object and xref layout written once.

Why by hand: the tests need PDFs no library writes on purpose (a content stream that inflates to 1 GiB,
an array past pypdf's element limit), byte for byte the way an attacker would.
"""

from __future__ import annotations

import zlib


def pdf_of_streams(streams: list[bytes], page_extra: bytes = b"", compressed: bool = False) -> bytes:
    """A valid PDF with one page per content stream, each stored FlateDecode-compressed.

    ``page_extra`` is added to each page's dictionary; with ``compressed`` the streams are already
    zlib data (a bomb is compressed in pieces, never held inflated).
    """
    objs = [b"<</Type /Catalog /Pages 2 0 R>>", b""]
    kids = []
    for content in streams:
        z = content if compressed else zlib.compress(content, 9)
        page, stream = len(objs) + 1, len(objs) + 2
        kids.append(b"%d 0 R" % page)
        objs.append(
            b"<</Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R /Resources "
            b"<</Font <</F1 <</Type /Font /Subtype /Type1 /BaseFont /Helvetica>>>>>>%b>>" % (stream, page_extra)
        )
        objs.append(b"<</Length %d /Filter /FlateDecode>>\nstream\n" % len(z) + z + b"\nendstream")
    objs[1] = b"<</Type /Pages /Kids [" + b" ".join(kids) + b"] /Count %d>>" % len(streams)
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<</Size %d /Root 1 0 R>>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)
