"""Per-request overhead of MsclkidMiddleware, against the bare app and werkzeug's ProxyFix.

Run: ``python benchmarks/middleware.py`` (``make bench`` runs every benchmark).  Each case calls
the WSGI callable directly with a prebuilt environ (copied per call, as a server builds a fresh
one), timeit-style, best of several repeats; overhead = wrapped - bare.  The goal: a request
without msclkid costs no more than ProxyFix does around the same app.
"""

from __future__ import annotations

import sys
import timeit
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from werkzeug.middleware.proxy_fix import ProxyFix

from msclkid_middleware import ConsentPolicy, MsclkidMiddleware, get_click
from msclkid_middleware.capture.cookie import ClickCookie

SECRET = "benchmark-secret"
HEX = "b4458f42c1b214060f81e89d7a9da3bb"
NUMBER = 20_000
REPEAT = 7


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def app_with_click(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    get_click(environ)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
    return _write


def _write(data: bytes) -> None:
    return None


def environ(query: str = "", cookie: str | None = None) -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/products/blue-mug",
        "QUERY_STRING": query,
        "SERVER_NAME": "shop.example",
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "10.0.0.1",
        "HTTP_HOST": "shop.example",
        "HTTP_USER_AGENT": "Mozilla/5.0 (X11; Linux x86_64) bench",
        "HTTP_ACCEPT": "text/html,application/xhtml+xml",
        "HTTP_X_FORWARDED_FOR": "203.0.113.9",
        "HTTP_X_FORWARDED_PROTO": "https",
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if cookie is not None:
        env["HTTP_COOKIE"] = cookie
    return env


def per_call_ns(wsgi: Callable[..., Iterable[bytes]], env: dict[str, Any]) -> float:
    def once() -> None:
        for _ in wsgi(env.copy(), start_response):
            pass

    best = min(timeit.repeat(once, number=NUMBER, repeat=REPEAT))
    return best / NUMBER * 1e9


def main() -> int:
    ours = MsclkidMiddleware(app, secret_keys=[SECRET], consent=ConsentPolicy())
    ours_click = MsclkidMiddleware(app_with_click, secret_keys=[SECRET], consent=ConsentPolicy())
    proxy_fix = ProxyFix(app, x_for=1, x_proto=1)
    signed = ClickCookie([SECRET]).encode(HEX, __import__("time").time() - 3600)
    cookie_header = f"_ga=GA1.2.3.4; session=abcdef0123456789; __Host-msclkid={signed}; _uetsid=438f7b2007ba11f0"

    plain_env = environ("utm_source=newsletter&page=2", "_ga=GA1.2.3.4; session=abcdef0123456789")
    landing_env = environ(f"utm_source=bing&msclkid={HEX}&utm_campaign=spring")
    cookie_env = environ("page=2", cookie_header)

    bare = per_call_ns(app, plain_env)
    bare_click = per_call_ns(app_with_click, plain_env)
    proxy = per_call_ns(proxy_fix, plain_env) - bare
    rows = [
        ("plain request (no msclkid, no click cookie)", per_call_ns(ours, plain_env) - bare, bare),
        ("landing request (validate, sign, Set-Cookie)", per_call_ns(ours, landing_env) - bare, bare),
        ("valid click cookie + get_click", per_call_ns(ours_click, cookie_env) - bare_click, bare_click),
    ]
    print(f"bare app: {bare:,.0f} ns/request; werkzeug ProxyFix(x_for=1, x_proto=1) overhead: {proxy:,.0f} ns/request")
    print(f"{'case':<48} {'overhead ns':>12} {'x bare app':>11} {'x ProxyFix':>11}")
    for label, overhead, base in rows:
        print(f"{label:<48} {overhead:>12,.0f} {overhead / base:>11.2f} {overhead / proxy:>11.2f}")
    plain_overhead = rows[0][1]
    verdict = "met" if plain_overhead <= proxy else "NOT met"
    print(f"goal (plain request overhead <= ProxyFix overhead): {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
