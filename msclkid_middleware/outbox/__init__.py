"""The durable outbox between ``record_*`` and Microsoft: a protocol and its stores.

``open_store(url)`` picks the store from the URL scheme: ``sqlite:///path`` (the default, in the
standard library) or ``postgresql://...`` (the ``postgres`` extra, imported only when used).

The database-backed click profile stores live here too, resolved lazily for the same reason:
``from msclkid_middleware.outbox import SqliteProfileStore`` (``sqlite3``) or ``PostgresProfileStore``
(the ``postgres`` extra).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from msclkid_middleware.errors import ConfigError
from msclkid_middleware.outbox.base import (
    CAMPAIGN_KINDS,
    KINDS,
    OPEN_STATES,
    STATES,
    TERMINAL_STATES,
    EncodedRow,
    EnqueueResult,
    Kind,
    NewRow,
    OutboxRow,
    OutboxStore,
    Outcome,
    State,
    StateCount,
    TokenRecord,
)

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.outbox.postgres_profiles import PostgresProfileStore as PostgresProfileStore
    from msclkid_middleware.outbox.sqlite_profiles import SqliteProfileStore as SqliteProfileStore

# The outbox's public names, re-exported from outbox.base: the list repeats base.__all__ on purpose (mypy --strict
# re-exports only names a literal __all__ lists; this package exports fewer names than base).
# The profile stores stay out of __all__: ``import *`` must work without the postgres extra and
# without importing sqlite3.
__all__ = [
    "CAMPAIGN_KINDS",
    "KINDS",
    "OPEN_STATES",
    "STATES",
    "TERMINAL_STATES",
    "EncodedRow",
    "EnqueueResult",
    "Kind",
    "NewRow",
    "OutboxRow",
    "OutboxStore",
    "Outcome",
    "State",
    "StateCount",
    "TokenRecord",
    "open_store",
]


#: Names resolved on first use: the module that holds each (its driver is imported only then).
_LAZY = {
    "SqliteProfileStore": "msclkid_middleware.outbox.sqlite_profiles",
    "PostgresProfileStore": "msclkid_middleware.outbox.postgres_profiles",
}


# Like the package root's lazy __getattr__ but without caching: a store class is looked up rarely.
def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def open_store(url: str, **options: Any) -> OutboxStore:
    """Open (and migrate) the outbox at ``url``.

    ``options`` go to the store: ``durability`` (``"crash"`` or ``"power_loss"``), ``max_pending``,
    ``busy_timeout`` for SQLite; see ``docs/dispatch.md``.
    """
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from msclkid_middleware.outbox.sqlite import SqliteOutbox

        return SqliteOutbox.from_url(url, **options)
    if scheme in ("postgresql", "postgres"):
        try:
            module = importlib.import_module(".postgres", __name__)
        except ModuleNotFoundError as exc:
            raise ConfigError(
                "a PostgreSQL outbox needs the 'postgres' extra (pip install 'msclkid-middleware[postgres]');"
                f" missing module: {exc.name}",
                setting="MSCLKID_STORE_URL",
            ) from None
        store: OutboxStore = module.PostgresOutbox.from_url(url, **options)
        return store
    raise ConfigError("MSCLKID_STORE_URL must start with sqlite:/// or postgresql://", setting="MSCLKID_STORE_URL")
