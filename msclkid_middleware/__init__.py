"""msclkid-middleware: Microsoft Advertising conversion tracking from your own server.

Importing the package is cheap and has no side effects.  Names above the capture layer are
resolved lazily, so ``from msclkid_middleware import MsclkidMiddleware`` never loads
``requests`` or the outbox.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from msclkid_middleware.capture.clickid import Click as Click
from msclkid_middleware.capture.consent import Consent as Consent
from msclkid_middleware.capture.consent import ConsentPolicy as ConsentPolicy
from msclkid_middleware.errors import ConfigError as ConfigError
from msclkid_middleware.errors import MsclkidError as MsclkidError
from msclkid_middleware.errors import ValidationError as ValidationError
from msclkid_middleware.middleware import MsclkidMiddleware as MsclkidMiddleware
from msclkid_middleware.middleware import get_anonymous_id as get_anonymous_id
from msclkid_middleware.middleware import get_click as get_click
from msclkid_middleware.middleware import get_consent as get_consent
from msclkid_middleware.middleware import get_page_load_id as get_page_load_id

if TYPE_CHECKING:  # pragma: no cover
    pass

__all__ = [
    "Click",
    "ConfigError",
    "Consent",
    "ConsentPolicy",
    "MsclkidError",
    "MsclkidMiddleware",
    "ValidationError",
    "get_anonymous_id",
    "get_click",
    "get_consent",
    "get_page_load_id",
]

#: Public names living in modules that are imported on first use.
_LAZY: dict[str, str] = {
    "ConversionTracker": "msclkid_middleware.dispatch.tracker",
    "hash_email": "msclkid_middleware.conversions.identity",
    "hash_phone": "msclkid_middleware.conversions.identity",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'msclkid_middleware' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
