"""The Microsoft refresh token kept in the outbox database (the clients' ``TokenStore`` protocol).

Keeping the token next to the outbox means a rotated refresh token survives restarts and is shared
by every process that uses the same store, with no extra file to provision.  Works with any
:class:`~msclkid_middleware.outbox.OutboxStore` (SQLite, PostgreSQL).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from msclkid_middleware.outbox.base import OutboxStore, TokenRecord, from_timestamp
from msclkid_middleware.redact import RedactingFilter
from msclkid_middleware.tokens import StoredToken

__all__ = ["OutboxTokenStore"]


class OutboxTokenStore:
    """:class:`~msclkid_middleware.tokens.TokenStore` on an outbox store's ``tokens`` table.

    ``save`` never regresses: a token is written only if it is newer by ``(serial, issued_at)``.
    ``lock()`` is the store's cross-process token lock, re-entrant within a thread.  ``redactor``
    learns every refresh and access token that passes through, so rotated tokens are masked in logs.
    """

    def __init__(self, store: OutboxStore, name: str = "microsoft", *, redactor: RedactingFilter | None = None) -> None:
        self.store = store
        self.name = name
        self.redactor = redactor
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"OutboxTokenStore({self.store.url!r}, name={self.name!r})"

    def load(self) -> StoredToken | None:
        record = self.store.load_token(self.name)
        if record is None:
            return None
        data = dict(record.data)
        data["refresh_token"] = record.refresh_token
        # The exact float the provider wrote (the column may round it to microseconds).
        data.setdefault("issued_at", record.issued_at.timestamp())
        data["serial"] = record.serial
        token = StoredToken.from_json(data)
        self._learn(token)
        return token

    def _learn(self, token: StoredToken) -> None:
        if self.redactor is not None:
            self.redactor.add(token.refresh_token, token.access_token)

    def save(self, token: StoredToken) -> bool:
        self._learn(token)
        data = token.to_json()
        data.pop("refresh_token")
        issued = from_timestamp(token.issued_at)
        assert issued is not None  # noqa: S101 - a float always converts
        return self.store.save_token(self.name, TokenRecord(token.refresh_token, issued, token.serial, data))

    @contextmanager
    def lock(self) -> Iterator[None]:
        depth = getattr(self._local, "depth", 0)
        if depth:
            # Re-entrant: the thread already holds the cross-process lock.
            self._local.depth = depth + 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        with self.store.token_lock(self.name):
            self._local.depth = 1
            try:
                yield
            finally:
                self._local.depth = 0
