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
from collections.abc import Callable, Iterable
from typing import Any

from msclkid_middleware import ConsentPolicy, MsclkidMiddleware, get_click, get_consent

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
</body>
</html>
"""


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


def create_app(secret_key: str | None = None) -> MsclkidMiddleware:
    # A fixed development key keeps cookies valid across restarts of the demo; set
    # MSCLKID_SECRET_KEYS to your own value for anything but local play.
    key = secret_key or os.environ.get("MSCLKID_SECRET_KEYS") or "demo-only-secret-do-not-deploy"
    return MsclkidMiddleware(
        shop,
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
