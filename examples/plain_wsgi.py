"""A tiny framework-free shop wrapped in MsclkidMiddleware.

Run it with ``python examples/plain_wsgi.py`` and open the landing URL it prints (``make demo`` runs the
Flask demo shop instead: ``examples/flask_shop/``).
The landing page redirects at once, as many real landing pages do; the click survives because the
middleware reads ``msclkid`` before the app runs and its Set-Cookie rides on the redirect.

The demo serves plain http on 127.0.0.1, so it uses the explicit development mode
(``cookie_secure=False, allow_insecure_cookie=True``).  Never use that mode in production.
"""

from __future__ import annotations

import html
import os
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from msclkid_middleware import ConsentPolicy, MsclkidMiddleware, get_click, get_consent
from msclkid_middleware.capture.endpoint import is_same_origin
from msclkid_middleware.capture.request import RequestFacts

if TYPE_CHECKING:
    from msclkid_middleware.dispatch.tracker import ConversionTracker

HOST, DEFAULT_PORT = "127.0.0.1", 8000
TEST_CLICK_ID = "Example-123"  # Microsoft's own test value; real IDs are 32 hex characters
CONSENT_COOKIE = "site_consent"

PRODUCT_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Demo shop: blue mug</title>
<script src="/_msclkid.js" data-consent="{consent}" async></script>
</head>
<body>
<h1>Blue mug, $12.00</h1>
<p>Click: <code>{click}</code> (source: <code>{source}</code>, captured at <code>{captured}</code>)</p>
<p>Consent: <code>{consent}</code> (basis: <code>{basis}</code>)</p>
<p><a href="/consent?state=granted">Grant consent</a> &middot; <a href="/consent?state=denied">Deny consent</a>
&middot; <a href="/?msclkid={test_id}">Land again with a test click</a></p>
<form method="post" action="/buy"><label>Email <input name="email" type="email" required></label>
<button>Buy</button></form>
</body>
</html>
"""


def buy(environ: dict[str, Any], start_response: Callable[..., Any], tracker: ConversionTracker) -> Iterable[bytes]:
    """Record the sale for Microsoft.  No ``consent=``: inside the request the tracker uses this request's own
    decision, so a visitor who sent ``Sec-GPC: 1`` or denied consent has no click or email sent."""
    if environ.get("REQUEST_METHOD") != "POST" or not is_same_origin(RequestFacts.from_environ(environ)):
        # A form that records a sale must not be submitted by another site's page.
        start_response("403 Forbidden", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return [b"forbidden\n"]
    try:
        size = min(int(environ.get("CONTENT_LENGTH") or 0), 4096)
    except ValueError:
        size = 0
    form = parse_qs(environ["wsgi.input"].read(size).decode("utf-8", "replace")) if size else {}
    email = (form.get("email") or [""])[0].strip() or None
    status = tracker.record_offline(
        event_id=f"order-{uuid.uuid4()}",
        conversion_name="Purchase",
        conversion_time=datetime.now(UTC),
        value=12.0,
        currency="USD",
        click=get_click(environ),
        email=email,
    )
    page = f"<!doctype html><p>Order recorded; its report to Microsoft: {html.escape(status.state)}.</p>".encode()
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(page)))])
    return [page]


def shop(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    if path == "/":
        # The landing page redirects at once (and drops the query string, as many do).
        start_response("302 Found", [("Location", "/product"), ("Content-Length", "0")])
        return [b""]
    if path == "/consent":
        state = "denied" if "state=denied" in environ.get("QUERY_STRING", "") else "granted"
        start_response(
            "303 See Other",
            [
                ("Location", "/product"),
                ("Set-Cookie", f"{CONSENT_COOKIE}={state}; Path=/; Max-Age=31536000; SameSite=Lax"),
                ("Content-Length", "0"),
            ],
        )
        return [b""]
    if path == "/product":
        click = get_click(environ)
        consent = get_consent(environ)
        page = PRODUCT_PAGE.format(
            click=html.escape(click.msclkid) if click else "none",
            source=click.source if click else "-",
            captured=click.captured_at.isoformat() if click else "-",
            consent=consent.state if consent else "unknown",
            basis=consent.basis if consent else "-",
            test_id=TEST_CLICK_ID,
        ).encode()
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(page)))])
        return [page]
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "10")])
    return [b"not found\n"]


def create_app(secret_key: str | None = None, tracker: ConversionTracker | None = None) -> MsclkidMiddleware:
    """The shop wrapped in the middleware; ``tracker`` records sales (default: one from the ``MSCLKID_*`` /
    ``MSADS_*`` environment, built on the first sale, with its outbox in ``msclkid-outbox.sqlite3``)."""
    # A fixed development key keeps cookies valid across restarts of the demo; set
    # MSCLKID_SECRET_KEYS to your own value for anything but local play.
    key = secret_key or os.environ.get("MSCLKID_SECRET_KEYS") or "demo-only-secret-do-not-deploy"
    trackers: list[ConversionTracker] = [tracker] if tracker is not None else []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/buy":
            return shop(environ, start_response)
        if not trackers:
            from msclkid_middleware.dispatch.tracker import ConversionTracker

            trackers.append(ConversionTracker.from_env())
        return buy(environ, start_response, trackers[0])

    return MsclkidMiddleware(
        app,
        secret_keys=[k.strip() for k in key.split(",") if k.strip()],
        consent=ConsentPolicy(default="granted", cookie_name=CONSENT_COOKIE),
        cookie_secure=False,  # plain http on 127.0.0.1 ...
        allow_insecure_cookie=True,  # ... which must be said explicitly
    )


app = create_app()


def main() -> None:
    from werkzeug.serving import run_simple

    port = int(os.environ.get("MSCLKID_DEMO_PORT", DEFAULT_PORT))
    print(f"Demo shop on http://{HOST}:{port}/")
    print(f"Open this landing URL (a test ad click): http://{HOST}:{port}/?msclkid={TEST_CLICK_ID}", flush=True)
    run_simple(HOST, port, app, use_reloader=False, use_debugger=False)


if __name__ == "__main__":
    main()
