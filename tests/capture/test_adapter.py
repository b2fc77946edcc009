"""capture/adapter.py: every adapter builds its engine from MSCLKID_* settings the same way."""

from __future__ import annotations

from typing import Any

import pytest

from msclkid_middleware.asgi import MsclkidASGIMiddleware
from msclkid_middleware.capture.adapter import settings_options
from msclkid_middleware.config import Settings
from msclkid_middleware.middleware import MsclkidMiddleware

SETTINGS = {
    "MSCLKID_SECRET_KEYS": "old,new",
    "MSCLKID_ALLOWED_HOSTS": "shop.test, .shop.example",
    "MSCLKID_CAPTURE_RATE": "2.5",
    "MSCLKID_CAPTURE_BURST": "7",
    "MSCLKID_COOKIE_NAME": "msclkid",
}


async def asgi_app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover - never called
    raise AssertionError("not called")


def wsgi_app(environ: Any, start_response: Any) -> Any:  # pragma: no cover - never called
    raise AssertionError("not called")


@pytest.mark.parametrize(
    "build",
    [
        lambda s: MsclkidMiddleware.from_settings(wsgi_app, s),
        lambda s: MsclkidASGIMiddleware.from_settings(asgi_app, s),
    ],
    ids=["wsgi", "asgi"],
)
def test_the_adapters_read_the_same_settings(build: Any) -> None:
    settings = Settings.from_env(SETTINGS)
    capture = build(settings).capture
    assert capture.allowed_hosts == ("shop.test", ".shop.example")
    assert capture.cookie.name == "msclkid"
    limiter = capture.endpoint.limiter
    assert limiter is not None
    assert (limiter.rate, limiter.burst) == (2.5, 7)


def test_overrides_win_and_consent_comes_from_the_settings() -> None:
    settings = Settings.from_env({**SETTINGS, "MSCLKID_CONSENT_DEFAULT": "denied"})
    options = settings_options(settings, {"capture_burst": 3})
    assert options["capture_burst"] == 3
    assert options["consent"].default == "denied"
    assert options["secret_keys"] == ("old", "new")
