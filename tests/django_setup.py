"""One Django configuration for the whole test process (``settings.configure`` can run once per process).

The adapter tests (tests/adapters/django/) and the example shop's (tests/examples/test_django_shop.py) each
start from this base and change what they need with ``override_settings`` (Django re-reads the middleware for
every test client, and re-populates the apps and URLconf when those settings change).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import django
from django.conf import settings

T = TypeVar("T")

#: The test's Django SECRET_KEY (the click cookie falls back to it).
SECRET_KEY = "django-test-secret-key-0123456789"

BASE: dict[str, Any] = {
    "DEBUG": False,
    "SECRET_KEY": SECRET_KEY,
    "ALLOWED_HOSTS": ["testserver", "localhost", "127.0.0.1", "shop.example"],
    "INSTALLED_APPS": ["msclkid_middleware.djangoapp"],
    "MIDDLEWARE": [
        "django.middleware.security.SecurityMiddleware",
        "msclkid_middleware.django.MsclkidMiddleware",
        "django.middleware.common.CommonMiddleware",
    ],
    "ROOT_URLCONF": "tests.adapters.django.django_test_urls",
    "DATABASES": {},
    "TEMPLATES": [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "DIRS": [],
            "APP_DIRS": True,
            "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
        }
    ],
    "USE_TZ": True,
    # Django's own logging set-up would replace the handlers the suite's secrets canary relies on.
    "LOGGING_CONFIG": None,
    # The test client speaks plain http: the development-only insecure cookie (named "msclkid").
    "MSCLKID_COOKIE_SECURE": False,
    "MSCLKID_MIDDLEWARE_OPTIONS": {"allow_insecure_cookie": True},
}


def configure() -> None:
    """Configure Django once for this process (later calls do nothing)."""
    if not settings.configured:
        settings.configure(**BASE)
        django.setup()


def in_own_thread(call: Callable[..., T], *args: Any) -> T:
    """``call(*args)`` in a thread of its own, as a server thread runs it: a session fixture (Playwright's sync API)
    may hold a running loop in the main thread for the rest of the session, and neither ``asyncio.run`` nor
    Django's ``async_to_sync`` (a sync client calling an async view) runs in a thread with a running loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call, *args).result(timeout=60)


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` in a thread of its own (see :func:`in_own_thread`)."""
    return in_own_thread(asyncio.run, coroutine)
