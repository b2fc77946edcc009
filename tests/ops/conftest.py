"""Fixtures of the ``ops/`` tests: the outbox suite's stores (SQLite and PostgreSQL), rows and the emulator."""

from __future__ import annotations

from tests.outbox import conftest as outbox

# Fixtures are found by name in a conftest's namespace: these share the outbox suite's definitions (the store of
# each backend, the emulator) instead of copying them; the test modules import the helpers from here.
pg_schemas = outbox.pg_schemas
store_url = outbox.store_url
make_store = outbox.make_store
store = outbox.store
ms = outbox.ms
T0 = outbox.T0
FakeClock = outbox.FakeClock
click_id = outbox.click_id
make_tracker = outbox.make_tracker
new_row = outbox.new_row
