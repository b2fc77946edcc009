"""examples/django_wsgi.py: the wrapper around Django's WSGI app and ``get_click(request.META)`` in views.

Django is not a dependency of this project (and is not installed in its test environment), so the wrapper
is exercised with a minimal stand-in of Django's ``WSGIHandler``: it builds a request whose ``META`` is the
WSGI environ (exactly what Django does) and calls the view for the path, through the real middleware.
When Django is installed, the real one-file project of the example is run as well.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from werkzeug.test import Client

ROOT = Path(__file__).resolve().parent.parent
CLICK = "f894f652ea334e739002f7167ab8f8e3"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("django_wsgi_example", ROOT / "examples" / "django_wsgi.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeRequest:
    """The part of ``django.http.HttpRequest`` the example's views use."""

    def __init__(self, environ: dict[str, Any]) -> None:
        self.META = environ
        self.path = environ.get("PATH_INFO", "/")


class StandInDjango:
    """A WSGI app shaped like Django's ``WSGIHandler``: environ -> request(META=environ) -> view -> response."""

    def __init__(self, views: dict[str, Callable[[FakeRequest], tuple[str, list[tuple[str, str]], str]]]) -> None:
        self.views = views
        self.metas: list[dict[str, Any]] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = FakeRequest(environ)
        self.metas.append(request.META)
        view = self.views.get(request.path)
        if view is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        status, headers, body = view(request)
        start_response(status, headers)
        return [body.encode()]


def standin(example: ModuleType) -> StandInDjango:
    def landing(request: FakeRequest) -> tuple[str, list[tuple[str, str]], str]:
        return "302 Found", [("Location", "/product")], ""

    def product(request: FakeRequest) -> tuple[str, list[tuple[str, str]], str]:
        return "200 OK", [("Content-Type", "text/plain")], example.click_summary(request)

    return StandInDjango({"/": landing, "/product": product})


def test_wrapped_django_app_keeps_the_click_across_the_redirect() -> None:
    example = load_example()
    django_app = standin(example)
    client = Client(example.wrap(django_app, environ={"MSCLKID_COOKIE_SECURE": "false"}, secret_key="django-key"))
    landing = client.get(f"/?msclkid={CLICK}")
    assert landing.status_code == 302
    assert landing.headers["Set-Cookie"].startswith(f"msclkid=1.{CLICK}.")
    page = client.get("/product").get_data(as_text=True)
    assert page == f"click {CLICK} from cookie (consent granted)"
    # The view saw the middleware's state in request.META, i.e. the same environ.
    assert "msclkid.state" in django_app.metas[-1]


def test_secret_keys_from_the_environment_win_and_consent_is_honoured() -> None:
    example = load_example()
    env = {"MSCLKID_COOKIE_SECURE": "false", "MSCLKID_SECRET_KEYS": "env-key", "MSCLKID_CONSENT_COOKIE": "c"}
    wrapped = example.wrap(standin(example), environ=env, secret_key="django-key")
    client = Client(wrapped)
    client.get(f"/?msclkid={CLICK}")
    # Signed with MSCLKID_SECRET_KEYS, not Django's key: another wrapper with only Django's key rejects it.
    other = Client(example.wrap(standin(example), environ={"MSCLKID_COOKIE_SECURE": "false"}, secret_key="django-key"))
    cookie = client.get_cookie("msclkid")
    assert cookie is not None
    other.set_cookie("msclkid", cookie.value)
    assert other.get("/product").get_data(as_text=True) == "no click (consent granted)"
    client.set_cookie("c", "denied")
    assert client.get("/product").get_data(as_text=True) == "no click (consent denied)"


def test_without_a_secret_the_wrapper_asks_django_and_the_example_never_imports_django_eagerly() -> None:
    example = load_example()
    assert "django" not in sys.modules or importlib.util.find_spec("django") is not None
    if importlib.util.find_spec("django") is None:
        with pytest.raises(ModuleNotFoundError, match="django"):
            example.wrap(standin(example), environ={})
        return
    # Django installed: run the example's real one-file project and land through it.
    port_env = {**os.environ, "PYTHONPATH": str(ROOT), "MSCLKID_COOKIE_SECURE": "false"}
    code = (
        "import importlib.util, sys;"
        f"spec = importlib.util.spec_from_file_location('__main__', {str(ROOT / 'examples' / 'django_wsgi.py')!r});"
        "m = importlib.util.module_from_spec(spec); sys.modules['__main__'] = m; spec.loader.exec_module(m);"
        "from werkzeug.test import Client;"
        "c = Client(m.wrap(m._django_application(), environ={'MSCLKID_COOKIE_SECURE': 'false'}));"
        f"r = c.get('/?msclkid={CLICK}', headers={{'Host': '127.0.0.1'}});"
        "print(c.get('/product', headers={'Host': '127.0.0.1'}).get_data(as_text=True))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=port_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"click {CLICK} from cookie (consent granted)"
