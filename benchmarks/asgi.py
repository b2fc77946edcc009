"""Per-request overhead of MsclkidASGIMiddleware, against the bare ASGI app and Starlette's TrustedHostMiddleware.

Run: ``python benchmarks/asgi.py`` (``make bench`` runs every benchmark).  Each case awaits the ASGI callable
directly on one event loop with a prebuilt scope (copied per call, as a server builds a fresh one), a no-op
``receive`` and ``send``; a round times ``NUMBER`` calls in this thread's CPU time (a busy machine's other
processes do not count), and each figure is the median of ``ROUNDS`` rounds (cases interleaved round by round, so
a noisy moment hits them all alike); overhead = wrapped - bare.  The goal
(issue 18): a plain request (no msclkid, no click cookie) costs no more than TrustedHostMiddleware does around the
same app, measured in the same run.  A landing request and a valid-cookie request are reported beside it.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from starlette.middleware.trustedhost import TrustedHostMiddleware

from msclkid_middleware import ConsentPolicy, get_click
from msclkid_middleware.asgi import MsclkidASGIMiddleware
from msclkid_middleware.capture.cookie import ClickCookie

SECRET = "benchmark-secret"
HEX = "b4458f42c1b214060f81e89d7a9da3bb"
NUMBER = 10_000
ROUNDS = 9

Scope = MutableMapping[str, Any]
ASGI = Callable[[Scope, Any, Any], Awaitable[None]]
START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
BODY = {"type": "http.response.body", "body": b"ok", "more_body": False}


async def app(scope: Scope, receive: Any, send: Any) -> None:
    await send(START)
    await send(BODY)


async def app_with_click(scope: Scope, receive: Any, send: Any) -> None:
    get_click(scope)
    await send(START)
    await send(BODY)


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: MutableMapping[str, Any]) -> None:
    return None


def scope(query: str = "", cookie: str | None = None) -> Scope:
    headers = [
        (b"host", b"shop.example"),
        (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) bench"),
        (b"accept", b"text/html,application/xhtml+xml"),
        (b"accept-language", b"en-US,en;q=0.9"),
        (b"accept-encoding", b"gzip, deflate, br"),
        (b"x-forwarded-for", b"203.0.113.9"),
    ]
    if cookie is not None:
        headers.append((b"cookie", cookie.encode("latin-1")))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": "/products/blue-mug",
        "raw_path": b"/products/blue-mug",
        "query_string": query.encode("latin-1"),
        "root_path": "",
        "headers": headers,
        "client": ("10.0.0.1", 50000),
        "server": ("10.0.0.2", 443),
        "state": {},
    }


async def round_ns(asgi: ASGI, template: Scope) -> float:
    copy = dict.copy
    started = time.thread_time_ns()
    for _ in range(NUMBER):
        fresh = copy(template)  # type: ignore[arg-type]
        fresh["state"] = {}  # uvicorn hands each request its own copy of the lifespan state
        await asgi(fresh, receive, send)
    return (time.thread_time_ns() - started) / NUMBER


async def measure(cases: dict[str, tuple[ASGI, Scope]]) -> dict[str, float]:
    rounds: dict[str, list[float]] = {name: [] for name in cases}
    for asgi, template in cases.values():  # warm-up: caches, the bot-pattern memo, the allocator
        await round_ns(asgi, template)
    for _ in range(ROUNDS):
        for name, (asgi, template) in cases.items():
            rounds[name].append(await round_ns(asgi, template))
    return {name: statistics.median(values) for name, values in rounds.items()}


def main() -> int:
    ours = MsclkidASGIMiddleware(app, secret_keys=[SECRET], consent=ConsentPolicy())
    ours_click = MsclkidASGIMiddleware(app_with_click, secret_keys=[SECRET], consent=ConsentPolicy())
    trusted = TrustedHostMiddleware(app, allowed_hosts=["shop.example", "*.shop.example"])
    signed = ClickCookie([SECRET]).encode(HEX, time.time() - 3600)
    cookie_header = f"_ga=GA1.2.3.4; session=abcdef0123456789; __Host-msclkid={signed}; _uetsid=438f7b2007ba11f0"
    plain = scope("utm_source=newsletter&page=2", "_ga=GA1.2.3.4; session=abcdef0123456789")
    landing = scope(f"utm_source=bing&msclkid={HEX}&utm_campaign=spring")
    with_cookie = scope("page=2", cookie_header)

    medians = asyncio.run(
        measure(
            {
                "bare": (app, plain),
                "bare_click": (app_with_click, with_cookie),
                "trusted": (trusted, plain),
                "plain": (ours, plain),
                "landing": (ours, landing),
                "cookie": (ours_click, with_cookie),
            }
        )
    )
    bare, bare_click = medians["bare"], medians["bare_click"]
    trusted_overhead = medians["trusted"] - bare
    rows = [
        ("plain request (no msclkid, no click cookie)", medians["plain"] - bare, bare),
        ("landing request (validate, sign, Set-Cookie)", medians["landing"] - bare, bare),
        ("valid click cookie + get_click(scope)", medians["cookie"] - bare_click, bare_click),
    ]
    print(
        f"bare ASGI app: {bare:,.0f} ns/request; Starlette TrustedHostMiddleware overhead: "
        f"{trusted_overhead:,.0f} ns/request (median of {ROUNDS} rounds of {NUMBER:,})"
    )
    print(f"{'case':<48} {'overhead ns':>12} {'x bare app':>11} {'x TrustedHost':>14}")
    for label, overhead, base in rows:
        print(f"{label:<48} {overhead:>12,.0f} {overhead / base:>11.2f} {overhead / trusted_overhead:>14.2f}")
    ratio = rows[0][1] / trusted_overhead
    verdict = "met" if ratio <= 1.0 else "NOT met"
    print(f"goal (plain request overhead <= 1.0x TrustedHostMiddleware overhead): {verdict} ({ratio:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
