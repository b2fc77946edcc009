"""Logging helpers: secrets redacted by value, identifiers shortened.

Key-based scrubbers miss ``refresh_token`` or ``developer_token`` under other names, so we
redact by *value*: every registered secret, raw and URL-encoded, is replaced wherever it shows
up in a record's message, arguments or exception text.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

__all__ = ["RedactingFilter", "shorten"]

_MASK = "<redacted>"


def shorten(value: str | None, keep: int = 6) -> str:
    """A click ID or hash cut to a recognisable prefix for logs (``f894f6…``)."""
    if not value:
        return "-"
    return value if len(value) <= keep else value[:keep] + "…"


class RedactingFilter(logging.Filter):
    """A ``logging.Filter`` that masks registered secret values in every record it sees.

    Attach it to handlers (or loggers) with :meth:`install`.  Secrets can be added at any time;
    the filter keeps its own lock, so it is safe across threads.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._needles: tuple[str, ...] = ()
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        with self._lock:
            needles = set(self._needles)
            for secret in secrets:
                if secret and len(secret) >= 4:
                    needles.update({secret, quote(secret, safe=""), quote_plus(secret)})
            # Longest first so a secret containing another is masked whole.
            self._needles = tuple(sorted(needles, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for needle in self._needles:
            if needle in text:
                text = text.replace(needle, _MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._needles:
            return True
        message = record.getMessage()
        redacted = self.redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = self.redact(exc_text)
            record.exc_info = None
        if redacted != message or record.args:
            record.msg = redacted
            record.args = None
        return True

    def install(self, logger: logging.Logger | None = None) -> None:
        """Attach to ``logger`` (default: the root logger) and all of its handlers."""
        target = logger or logging.getLogger()
        if self not in target.filters:
            target.addFilter(self)
        for handler in target.handlers:
            if self not in handler.filters:
                handler.addFilter(self)
