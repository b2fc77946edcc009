"""OutboxTokenStore: the clients' TokenStore on an outbox's tokens table (both stores)."""

from __future__ import annotations

import logging

from msclkid_middleware.outbox import OutboxStore
from msclkid_middleware.outbox.tokens import OutboxTokenStore
from msclkid_middleware.redact import RedactingFilter
from msclkid_middleware.tokens import StoredToken

from .conftest import T0, StoreFactory


def test_a_saved_token_loads_back_on_another_handle_and_never_regresses(
    store: OutboxStore, make_store: StoreFactory
) -> None:
    tokens = OutboxTokenStore(store)
    assert tokens.load() is None
    newer = StoredToken("refresh-2", issued_at=T0.timestamp() + 0.25, serial=2, access_token="access-2")
    assert tokens.save(newer) is True
    assert tokens.save(StoredToken("refresh-1", issued_at=T0.timestamp(), serial=1)) is False
    loaded = OutboxTokenStore(make_store()).load()
    assert loaded is not None
    assert (loaded.refresh_token, loaded.serial, loaded.access_token) == ("refresh-2", 2, "access-2")
    assert loaded.issued_at == newer.issued_at  # the exact float, not the column's rounding


def test_the_lock_is_reentrant_within_a_thread(store: OutboxStore) -> None:
    tokens = OutboxTokenStore(store, name="uet")
    with tokens.lock(), tokens.lock():
        assert tokens.save(StoredToken("r", issued_at=T0.timestamp(), serial=1)) is True
    with tokens.lock():  # released: taken again at once
        pass


def test_every_token_that_passes_is_taught_to_the_redactor(store: OutboxStore) -> None:
    redactor = RedactingFilter()
    tokens = OutboxTokenStore(store, redactor=redactor)
    tokens.save(StoredToken("refresh-secret-value", issued_at=T0.timestamp(), serial=1, access_token="access-secret"))
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "got refresh-secret-value and access-secret", (), None)
    redactor.filter(record)
    assert "secret" not in record.getMessage()
