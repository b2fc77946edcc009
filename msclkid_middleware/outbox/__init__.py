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
from msclkid_middleware.outbox import base
from msclkid_middleware.outbox.base import CAMPAIGN_KINDS as CAMPAIGN_KINDS
from msclkid_middleware.outbox.base import KINDS as KINDS
from msclkid_middleware.outbox.base import OPEN_STATES as OPEN_STATES
from msclkid_middleware.outbox.base import STATES as STATES
from msclkid_middleware.outbox.base import TERMINAL_STATES as TERMINAL_STATES
from msclkid_middleware.outbox.base import EncodedRow as EncodedRow
from msclkid_middleware.outbox.base import EnqueueResult as EnqueueResult
from msclkid_middleware.outbox.base import Kind as Kind
from msclkid_middleware.outbox.base import NewRow as NewRow
from msclkid_middleware.outbox.base import OutboxRow as OutboxRow
from msclkid_middleware.outbox.base import OutboxStore as OutboxStore
from msclkid_middleware.outbox.base import Outcome as Outcome
from msclkid_middleware.outbox.base import State as State
from msclkid_middleware.outbox.base import StateCount as StateCount
from msclkid_middleware.outbox.base import TokenRecord as TokenRecord

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.outbox.postgres_profiles import PostgresProfileStore as PostgresProfileStore
    from msclkid_middleware.outbox.sqlite_profiles import SqliteProfileStore as SqliteProfileStore

# The package's public names: those of base imported above (``X as X``: what mypy --strict re-exports), listed
# once there, and open_store.  The profile stores stay out of __all__: ``import *`` must work without the
# postgres extra and without importing sqlite3.
__all__ = [*(name for name in base.__all__ if name in globals()), "open_store"]


def __getattr__(name: str) -> object:
    # The profile stores, imported on first use: only then is sqlite3 (or the postgres extra) loaded.
    if name == "SqliteProfileStore":
        from msclkid_middleware.outbox.sqlite_profiles import SqliteProfileStore

        return SqliteProfileStore
    if name == "PostgresProfileStore":
        from msclkid_middleware.outbox.postgres_profiles import PostgresProfileStore

        return PostgresProfileStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
