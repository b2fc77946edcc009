"""A framework's settings as the ``str -> str`` mapping the ``msclkid`` commands read instead of ``os.environ``.

The Flask extension (``flask msclkid``) and the Django app (``manage.py msclkid``) both hand the commands their
configuration this way: the same text for a value, the same reuse of the framework's secret keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["as_text", "setting_text", "settings_environ"]


def as_text(value: str | bytes) -> str:
    """``value`` as text (bytes decoded as UTF-8, undecodable bytes kept as surrogates)."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def setting_text(value: Any) -> str:
    """A setting as an environment variable would spell it: booleans as true/false, lists comma-separated."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | bytes):
        return as_text(value)
    if isinstance(value, Iterable) and not isinstance(value, Mapping):
        return ",".join(as_text(v) if isinstance(v, str | bytes) else str(v) for v in value)
    return str(value)


def settings_environ(
    settings: Iterable[tuple[str, Any]], secret_keys: Callable[[], Iterable[str | bytes]]
) -> dict[str, str]:
    """Every setting of ``settings`` whose text is not empty (``None`` is unset), and ``MSCLKID_SECRET_KEYS`` from
    the framework's ``secret_keys()`` (asked only when the settings do not name it)."""
    environ: dict[str, str] = {}
    for key, value in settings:
        text = setting_text(value) if value is not None else ""
        if text:
            environ[key] = text
    if "MSCLKID_SECRET_KEYS" not in environ:
        keys = tuple(secret_keys())
        if keys:
            environ["MSCLKID_SECRET_KEYS"] = ",".join(as_text(k) for k in keys)
    return environ
