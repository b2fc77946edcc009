"""Fixtures the example shops' tests share: a fresh emulator per test, and the Flask demo shop on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from examples.flask_shop import create_app, msclkid
from msclkid_middleware.testing import EmulatorHandle, run_emulator


@pytest.fixture
def ms() -> Iterator[EmulatorHandle]:
    with run_emulator() as handle:
        yield handle


@pytest.fixture
def shop(ms: EmulatorHandle, tmp_path: Path) -> Iterator[Flask]:
    """The Flask demo shop (its consent default as configured: opt-in), closed after the test."""
    app = create_app({**ms.env, "TESTING": True}, instance_path=str(tmp_path))
    yield app
    msclkid.close(app)
