"""Django: wrap the WSGI application Django builds, and read the click in views with ``get_click(request.META)``.

In a Django project this is ``<project>/wsgi.py``::

    from django.core.wsgi import get_wsgi_application
    application = wrap(get_wsgi_application())

Django hands the WSGI ``environ`` to views as ``request.META``, so the middleware's per-request state
is there and ``get_click(request.META)`` / ``get_consent(request.META)`` work unchanged.  Settings come
from ``MSCLKID_*`` environment variables (``docs/configuration.md``); ``MSCLKID_SECRET_KEYS`` falls
back to Django's ``SECRET_KEY`` (the click cookie signs with its own salt, so sharing the key is safe).

Run it with ``python examples/django_wsgi.py`` (Django installed): a one-file Django project with a
landing URL that redirects, a product view and a checkout view that records the offline conversion.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from msclkid_middleware import ConsentPolicy, MsclkidMiddleware, get_click, get_consent
from msclkid_middleware.config import Settings

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

HOST, DEFAULT_PORT = "127.0.0.1", 8000
DEMO_SECRET = "django-demo-secret-do-not-deploy"


def wrap(django_app: WSGIApp, *, environ: Mapping[str, str] | None = None, secret_key: str | None = None) -> WSGIApp:
    """``MsclkidMiddleware`` around Django's WSGI app, configured from ``MSCLKID_*`` variables.

    ``secret_key`` is Django's ``SECRET_KEY``, used when ``MSCLKID_SECRET_KEYS`` is not set.
    """
    settings = Settings.from_env(environ)
    if not settings.secret_keys:
        if not secret_key:
            from django.conf import settings as django_settings  # the project's own SECRET_KEY

            secret_key = str(django_settings.SECRET_KEY)
        settings = settings.replace(secret_keys=(secret_key,))
    local_http = not settings.cookie_secure  # the runnable demo below: plain http on 127.0.0.1
    return MsclkidMiddleware.from_settings(
        django_app, settings, allow_insecure_cookie=local_http, consent=ConsentPolicy.from_settings(settings)
    )


# -- views (plain functions of a Django-shaped request: only ``request.META`` is used) --------------------
def click_summary(request: Any) -> str:
    """What a checkout view would pass to ``tracker.record_offline(click=..., consent=...)``."""
    click = get_click(request.META)
    consent = get_consent(request.META)
    state = consent.state if consent else "unknown"
    if click is None:
        return f"no click (consent {state})"
    return f"click {click.msclkid} from {click.source} (consent {state})"


def _django_application() -> WSGIApp:  # pragma: no cover - needs Django installed
    import django
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application
    from django.http import HttpResponse, HttpResponseRedirect
    from django.urls import path

    def landing(request: Any) -> Any:
        return HttpResponseRedirect("/product")  # drops the query: the middleware kept the click already

    def product(request: Any) -> Any:
        return HttpResponse(click_summary(request), content_type="text/plain")

    # A one-file project: this module is its own URLconf.
    globals()["urlpatterns"] = [path("", landing), path("product", product)]
    settings.configure(
        DEBUG=False,
        SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY", DEMO_SECRET),
        ALLOWED_HOSTS=[HOST, "localhost"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
    )
    django.setup()
    return get_wsgi_application()


def main() -> None:  # pragma: no cover - needs Django installed
    from werkzeug.serving import run_simple

    env = {"MSCLKID_COOKIE_SECURE": "false", **os.environ}
    application = wrap(_django_application(), environ=env)
    port = int(os.environ.get("MSCLKID_DEMO_PORT", DEFAULT_PORT))
    print(f"Django demo on http://{HOST}:{port}/?msclkid=Example-123", flush=True)
    run_simple(HOST, port, application, use_reloader=False)


if __name__ == "__main__":
    main()
