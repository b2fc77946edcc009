"""Per-request overhead of MsclkidMiddleware, as ratios against werkzeug's ProxyFix in the same run (issue 21).

Run: ``python benchmarks/middleware.py [--rounds 15]`` (``make bench`` runs every benchmark).  Each case calls
the WSGI callable directly with a prebuilt environ (copied per call, as a server builds a fresh one); overhead =
wrapped - bare app.  The yardstick is ``ProxyFix(app, x_for=1, x_proto=1)`` on a request without forwarded
headers: the cheapest useful WSGI middleware.  Every case runs in each of several interleaved rounds (the best of
a few short repeats each, so a busy machine's preemptions drop out) and each ratio is the median of its
per-round ratios.  Targets (issue 21): a request carrying our cookie plus ``get_click`` <= 4x ProxyFix (goal 2x),
a landing request (``?msclkid=``: validate, sign, ``Set-Cookie``) <= 5x (goal 3x); a request carrying nothing of
ours stays below 1x.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
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
NUMBER = 200
REPEAT = 40
#: (case, target ratio, goal ratio) against ProxyFix's overhead.
TARGETS = {"cookie": (4.0, 2.0), "landing": (5.0, 3.0), "plain": (1.0, 1.0)}


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
        "wsgi.url_scheme": "https",
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if cookie is not None:
        env["HTTP_COOKIE"] = cookie
    return env


def per_call_ns(wsgi: Callable[..., Iterable[bytes]], env: dict[str, Any], number: int = NUMBER) -> float:
    def once() -> None:
        for _ in wsgi(env.copy(), start_response):
            pass

    return min(timeit.repeat(once, number=number, repeat=REPEAT)) / number * 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds; ratios are medians (default 15)")
    args = parser.parse_args(argv)
    rounds = max(1, args.rounds)

    ours = MsclkidMiddleware(app, secret_keys=[SECRET], consent=ConsentPolicy())
    ours_click = MsclkidMiddleware(app_with_click, secret_keys=[SECRET], consent=ConsentPolicy())
    proxy_fix = ProxyFix(app, x_for=1, x_proto=1)
    signed = ClickCookie([SECRET]).encode(HEX, time.time() - 3600)
    cookie_header = f"_ga=GA1.2.3.4; session=abcdef0123456789; __Host-msclkid={signed}; _uetsid=438f7b2007ba11f0"

    plain_env = environ("utm_source=newsletter&page=2", "_ga=GA1.2.3.4; session=abcdef0123456789")
    landing_env = environ(f"utm_source=bing&msclkid={HEX}&utm_campaign=spring")
    cookie_env = environ("page=2", cookie_header)
    forwarded_env = {**plain_env, "HTTP_X_FORWARDED_FOR": "203.0.113.9", "HTTP_X_FORWARDED_PROTO": "https"}

    # (key, label, wrapped app, environ, bare app it is compared with)
    cases: list[tuple[str, str, Callable[..., Iterable[bytes]], dict[str, Any], Callable[..., Iterable[bytes]]]] = [
        ("proxy", "werkzeug ProxyFix, no forwarded headers", proxy_fix, plain_env, app),
        ("proxy_fwd", "werkzeug ProxyFix, X-Forwarded-For/-Proto", proxy_fix, forwarded_env, app),
        ("plain", "plain request (nothing of ours)", ours, plain_env, app),
        ("landing", "landing request (validate, sign, Set-Cookie)", ours, landing_env, app),
        ("cookie", "request with our cookie + get_click", ours_click, cookie_env, app_with_click),
    ]
    overheads: dict[str, list[float]] = {key: [] for key, *_ in cases}
    for _ in range(rounds):
        bare = {id(app): per_call_ns(app, plain_env), id(app_with_click): per_call_ns(app_with_click, plain_env)}
        for key, _, wsgi, env, base in cases:
            overheads[key].append(per_call_ns(wsgi, env) - bare[id(base)])

    def ratio(key: str) -> float:
        return statistics.median(o / p for o, p in zip(overheads[key], overheads["proxy"], strict=True))

    print(f"{'case':<46} {'overhead ns':>12} {'x ProxyFix':>11}")
    for key, label, *_ in cases:
        print(f"{label:<46} {statistics.median(overheads[key]):>12,.0f} {ratio(key):>10.2f}x")
    print()
    print(f"ratios: median of {rounds} interleaved rounds in this run; yardstick: ProxyFix without forwarded headers")
    for key, label in (("cookie", "cookie request + get_click"), ("landing", "landing request"), ("plain", "plain")):
        target, goal = TARGETS[key]
        value = ratio(key)
        verdict = "goal met" if value <= goal else "met" if value <= target else "NOT met"
        print(f"  {label} / ProxyFix overhead: {value:.2f}x (target <= {target:g}x, goal {goal:g}x: {verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
