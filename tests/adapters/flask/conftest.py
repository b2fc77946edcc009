from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask_helpers import AppFactory

from msclkid_middleware.flask import Msclkid
from msclkid_middleware.testing import EmulatorHandle, run_emulator


@pytest.fixture
def ms() -> Iterator[EmulatorHandle]:
    with run_emulator() as handle:
        yield handle


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[AppFactory]:
    """``make_app(config, ext=None, **middleware_options)``: a Flask app (own instance folder) with Msclkid.

    Every app's tracker is closed afterwards (it may run a worker thread)."""
    made: list[tuple[Msclkid, Flask]] = []

    def factory(config: dict[str, Any] | None = None, *, ext: Msclkid | None = None, **options: Any) -> Flask:
        instance = tmp_path / f"instance{len(made)}"
        app = Flask(f"shop{len(made)}", instance_path=str(instance))
        app.config.update({"SECRET_KEY": "flask-secret", "TESTING": True, **(config or {})})
        extension = ext if ext is not None else Msclkid(allow_insecure_cookie=True, **options)
        extension.init_app(app)
        made.append((extension, app))
        return app

    yield factory
    for extension, app in made:
        extension.close(app)
