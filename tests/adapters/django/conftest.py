from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings

from msclkid_middleware.django import close_tracker
from tests.django_setup import configure

configure()


@pytest.fixture(autouse=True)
def own_outbox(tmp_path: Path) -> Iterator[Path]:
    """Each test's tracker (if it builds one) writes to its own SQLite outbox, and is closed afterwards."""
    store = tmp_path / "outbox.sqlite3"
    with override_settings(MSCLKID_STORE_URL=f"sqlite:///{store}"):
        yield store
    close_tracker()
