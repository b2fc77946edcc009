"""What every framework adapter (WSGI, ASGI, Django) does the same way, so the adapters cannot drift apart.

:func:`settings_options`: the :class:`~msclkid_middleware.capture.engine.Capture` keywords ``MSCLKID_*`` settings
describe; :func:`script_answer`: the answer of an endpoint path that is not the capture endpoint itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from msclkid_middleware.capture.endpoint import INTERNAL_ERROR, Answer
from msclkid_middleware.capture.engine import Capture
from msclkid_middleware.capture.request import RequestFacts
from msclkid_middleware.config import Settings

__all__ = ["script_answer", "settings_options"]


def settings_options(settings: Settings, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The engine's keywords from ``settings`` (the consent policy too), then ``overrides``, which win."""
    options: dict[str, Any] = {
        "secret_keys": settings.secret_keys,
        "cookie_domain": settings.cookie_domain,
        "cookie_secure": settings.cookie_secure,
        "max_age": settings.cookie_max_age,
        "capture_path": settings.capture_path or None,
        "snippet_path": settings.snippet_path or None,
        "allowed_hosts": settings.allowed_hosts,
        "capture_rate": settings.capture_rate or None,
        "capture_burst": settings.capture_burst,
    }
    if settings.cookie_name != "__Host-msclkid":
        options["cookie_name"] = settings.cookie_name
    if "consent" not in overrides:
        from msclkid_middleware.capture.consent import ConsentPolicy

        options["consent"] = ConsentPolicy.from_settings(settings)
    options.update(overrides)
    return options


def script_answer(capture: Capture, facts: RequestFacts) -> Answer:
    """The shipped script an endpoint path other than ``capture.capture_path`` serves (sync script or snippet)."""
    if facts.path == capture.sync_script_path and capture.sync_script is not None:
        return capture.sync_script.serve(facts)
    if capture.snippet is not None:
        return capture.snippet.serve(facts)
    return INTERNAL_ERROR  # pragma: no cover - endpoint_paths holds only configured paths
