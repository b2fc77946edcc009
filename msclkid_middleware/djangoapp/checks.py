"""``manage.py check``: the middleware's configuration, validated as the middleware will validate it.

A settings mistake otherwise shows only when Django builds the middleware chain (the first request under
runserver): the check runs the same code at ``check``/``migrate``/``runserver`` start and reports each problem
as a Django error with an ID (``msclkid.E001`` secret keys, ``msclkid.E002`` consent, ``msclkid.E003`` any other
setting) and a hint, without building a tracker or touching the outbox.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings as django_settings
from django.core import checks

from msclkid_middleware.capture.engine import Capture
from msclkid_middleware.django import MIDDLEWARE_OPTIONS, capture_options, read_settings, secret_keys
from msclkid_middleware.errors import ConfigError

__all__ = ["MIDDLEWARE_PATH", "check_settings"]

#: The dotted path of the middleware in ``settings.MIDDLEWARE``.
MIDDLEWARE_PATH = "msclkid_middleware.django.MsclkidMiddleware"

_SECRET_HINT = (
    "Set MSCLKID_SECRET_KEYS (a list, oldest first) or SECRET_KEY: the click cookie is signed with it "  # noqa: S105
    "(with its own salt, so reusing SECRET_KEY is safe)."
)
_CONSENT_HINT = (
    "MSCLKID_CONSENT_DEFAULT is 'granted' (opt-out regions) or 'denied' (opt-in regions); MSCLKID_CONSENT_* "
    "name cookies and their values (docs/consent.md)."
)

_OPTIONS_HINT = "MSCLKID_MIDDLEWARE_OPTIONS holds MsclkidMiddleware keywords (docs/django.md)."


def _error_for(exc: ConfigError) -> checks.CheckMessage:
    setting = exc.setting or ""
    if setting in ("MSCLKID_SECRET_KEYS", "secret_keys"):
        return checks.Error(str(exc), hint=_SECRET_HINT, id="msclkid.E001")
    if setting.startswith("MSCLKID_CONSENT") or setting == "consent":
        return checks.Error(str(exc), hint=_CONSENT_HINT, id="msclkid.E002")
    return checks.Error(str(exc), hint=f"See docs/configuration.md for {setting or 'this setting'}.", id="msclkid.E003")


def check_settings(app_configs: Sequence[Any] | None = None, **_: Any) -> list[checks.CheckMessage]:
    """The ``msclkid`` checks (registered by the app config under the tag ``"msclkid"``)."""
    found: list[checks.CheckMessage] = []
    own = getattr(django_settings, MIDDLEWARE_OPTIONS, None)
    keys_missing = not secret_keys() and not (isinstance(own, Mapping) and own.get("secret_keys"))
    if keys_missing:
        found.append(checks.Error("no key to sign the click cookie", hint=_SECRET_HINT, id="msclkid.E001"))
    try:
        settings = read_settings()
        # Missing keys are reported above; a stand-in key lets the other settings be checked in the same run.
        Capture(**capture_options(settings, **({"secret_keys": ("stand-in",)} if keys_missing else {})))
    except ConfigError as exc:
        found.append(_error_for(exc))
    except (TypeError, ValueError) as exc:  # MSCLKID_MIDDLEWARE_OPTIONS naming a keyword that does not exist
        found.append(checks.Error(f"{MIDDLEWARE_OPTIONS}: {exc}", hint=_OPTIONS_HINT, id="msclkid.E003"))
    if MIDDLEWARE_PATH not in (getattr(django_settings, "MIDDLEWARE", None) or ()):
        found.append(
            checks.Warning(
                "msclkid_middleware.djangoapp is installed but its middleware is not in MIDDLEWARE: no click is kept.",
                hint=f"Add {MIDDLEWARE_PATH!r} to MIDDLEWARE, after SecurityMiddleware.",
                id="msclkid.W001",
            )
        )
    return found
