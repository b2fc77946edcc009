"""The :class:`~msclkid_middleware.capture.engine.Capture` keywords that ``MSCLKID_*`` settings describe.

Every framework adapter (WSGI, ASGI, Django) builds its engine from :class:`~msclkid_middleware.config.Settings`
the same way; this is that one recipe, so the adapters cannot drift apart on a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from msclkid_middleware.config import Settings

__all__ = ["settings_options"]


def settings_options(settings: Settings, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The engine's keywords from ``settings`` (the consent policy too), then ``overrides``, which win."""
    options: dict[str, Any] = {
        "secret_keys": settings.secret_keys,
        "cookie_domain": settings.cookie_domain,
        "cookie_secure": settings.cookie_secure,
        "max_age": settings.cookie_max_age,
        "capture_path": settings.capture_path or None,
        "snippet_path": settings.snippet_path or None,
    }
    if settings.cookie_name != "__Host-msclkid":
        options["cookie_name"] = settings.cookie_name
    if "consent" not in overrides:
        from msclkid_middleware.capture.consent import ConsentPolicy

        options["consent"] = ConsentPolicy.from_settings(settings)
    options.update(overrides)
    return options
