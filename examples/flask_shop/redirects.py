"""Where a form may send the visitor back to: a path on this site, never anywhere else.

A browser reads a ``Location`` with the WHATWG URL parser, which is forgiving in ways that turn an innocent-looking
path into another site: it deletes tabs and newlines anywhere (``/\\t/evil.example`` is ``//evil.example``), reads
a backslash as a slash in http(s) URLs (``/\\evil.example``), trims leading spaces and control characters, and takes
``//host`` or ``scheme:...`` as absolute.  So the rule is strict rather than clever: a target is accepted only when
it is already, character for character, what the browser will treat as a path on the page's own origin: it starts
with exactly one ``/``, and holds no character the parser would remove or reinterpret (C0 controls, space, DEL,
backslash).  Anything else falls back to ``/``.  Non-ASCII text is percent-encoded first, as the browser would,
so the header carries exactly the checked string (and a CR/LF can never reach it: no 500, no header injection).

tests/examples/test_flask_shop_security.py checks the result against a real WHATWG parser (Ada) with Hypothesis.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from werkzeug.urls import iri_to_uri

__all__ = ["FALLBACK", "safe_next"]

FALLBACK = "/"
MAX_LENGTH = 2048
# One leading slash, then anything but a second slash/backslash first, and no character the WHATWG parser strips
# or rewrites anywhere (C0 controls incl. tab/CR/LF, space, DEL, backslash).
_PATH = re.compile(r"/(?![/\\])[^\x00-\x20\x7f\\]*")
_PROBE_ORIGIN = "http://shop.invalid"


def safe_next(target: str | None) -> str:
    """``target`` if it is a same-site path a browser will not read as another origin, else ``"/"``."""
    if not target or len(target) > MAX_LENGTH or not _PATH.fullmatch(target):
        return FALLBACK
    try:
        encoded = iri_to_uri(target)
    except (ValueError, UnicodeError):
        return FALLBACK
    if not _PATH.fullmatch(encoded) or len(encoded) > MAX_LENGTH:
        return FALLBACK
    # Belt and braces: resolved against an origin, the target must keep it (no scheme, no authority).
    resolved = urlsplit(_PROBE_ORIGIN + encoded)
    if f"{resolved.scheme}://{resolved.netloc}" != _PROBE_ORIGIN:
        return FALLBACK
    return encoded
