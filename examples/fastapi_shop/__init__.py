"""A small FastAPI shop wired to msclkid-middleware's ASGI adapter (docs/asgi.md).

Run it with one command: ``python -m examples.fastapi_shop`` (uvicorn on http://127.0.0.1:8001/; the landing URL
it prints carries a test ad click).  The journey:

1. An ad click lands on ``/go?product=blue-mug&msclkid=...``, which redirects (302) to the product page: the
   middleware has read ``msclkid`` before the handler ran, and its Set-Cookie rides on the redirect once consent
   allows.  The shop runs opt-in (``MSCLKID_CONSENT_DEFAULT=denied``): until the visitor accepts nothing is stored,
   so the redirect keeps ``msclkid`` in the product URL for the snippet to hold in the page's memory.
2. The consent banner (``static/banner.js``, no inline script) stores the choice in the site's consent cookie and
   tells the snippet (``msclkid('consent', ...)``), which then posts the held click to ``POST /_msclkid``.  A form
   posts the same choice without JavaScript.
3. The checkout records the sale with ``await tracker.arecord_offline(...)``: the durable write runs in a worker
   thread, off the event loop, with the request's consent.  A visitor who refused (banner, or ``Sec-GPC: 1``)
   gets an order whose report keeps no click ID and no hashed email.

It serves plain http on 127.0.0.1, so it uses the explicit development cookie mode; never deploy that.
Delivery to Microsoft is ``msclkid worker``'s job (set ``MSADS_*``); without credentials events wait in the store.
"""

from __future__ import annotations

import html
import os
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from msclkid_middleware import ConversionTracker, get_click, get_consent
from msclkid_middleware.asgi import MsclkidASGIMiddleware
from msclkid_middleware.config import Settings

__all__ = ["CONSENT_COOKIE", "CONVERSION_GOAL", "PRODUCTS", "create_app", "shop_settings"]

CONSENT_COOKIE = "shop_consent"
CONVERSION_GOAL = "Purchase"
STATIC = Path(__file__).resolve().parent / "static"
_CLICK_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # the middleware's own rule for an msclkid
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}$")
_PAGE_CSP = (
    "default-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'"
)
PRODUCTS: Mapping[str, tuple[str, Decimal]] = {
    "blue-mug": ("Blue mug", Decimal("12.00")),
    "tea-tin": ("Tea tin", Decimal("24.50")),
}


def shop_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The shop's defaults under the ``MSCLKID_*``/``MSADS_*`` variables it runs with (those win)."""
    env = dict(os.environ if environ is None else environ)
    env.setdefault("MSCLKID_SECRET_KEYS", "demo-only-secret-do-not-deploy")
    env.setdefault("MSCLKID_CONSENT_DEFAULT", "denied")  # opt-in, as EEA/UK/CH sites run
    env.setdefault("MSCLKID_CONSENT_COOKIE", CONSENT_COOKIE)
    env.setdefault("MSCLKID_COOKIE_SECURE", "false")  # plain http on 127.0.0.1 (with allow_insecure_cookie below)
    env.setdefault("MSADS_CONVERSION_GOALS", CONVERSION_GOAL)
    return Settings.from_env(env)


def create_app(settings: Settings | None = None, *, tracker: ConversionTracker | None = None) -> FastAPI:
    """The app factory; ``tracker`` defaults to one on ``settings`` (closed with the app)."""
    settings = settings or shop_settings()
    owned = tracker is None
    shop_tracker = tracker or ConversionTracker(settings=settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            shop_tracker.close()

    app = FastAPI(title="msclkid FastAPI shop", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.tracker = shop_tracker
    # Development mode: plain-http cookies must be asked for in code, never by configuration alone.
    app.add_middleware(MsclkidASGIMiddleware.from_settings, settings=settings, allow_insecure_cookie=True)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _routes(app)
    return app


# -- pages --------------------------------------------------------------------------------------------------
def _page(request: Request, title: str, body: str, status_code: int = 200) -> HTMLResponse:
    choice = _choice(request)
    consent = get_consent(request.scope)
    click = get_click(request.scope)
    banner = ""
    if choice is None:
        banner = f"""<aside id="consent-banner"><p>May we keep the ad click that brought you here, for 90 days, to tell
Microsoft Advertising about your purchase? Nothing is stored or sent until you accept.</p>
<form method="post" action="/consent"><input type="hidden" name="next" value="{html.escape(_here(request))}">
<button id="accept" name="choice" value="granted">Accept</button>
<button id="decline" name="choice" value="denied">Decline</button></form></aside>"""
    snippet_consent = choice or "pending"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<script src="/static/queue.js"></script>
<script src="/_msclkid.js" data-consent="{snippet_consent}" async></script>
<script src="/static/banner.js" defer></script>
</head><body>
<header><a href="/">FastAPI shop</a></header>
<main>{body}</main>
{banner}
<footer><p>Click: <code id="click-id">{html.escape(click.msclkid) if click else "none"}</code>
 &middot; consent: <code id="consent-state">{consent.state if consent else "-"}</code></p></footer>
</body></html>"""
    response = HTMLResponse(page, status_code=status_code)
    response.headers["Content-Security-Policy"] = _PAGE_CSP
    return response


def _choice(request: Request) -> str | None:
    value = request.cookies.get(CONSENT_COOKIE)
    return value if value in ("granted", "denied") else None


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _same_site_path(value: str | None) -> str:
    """``next`` only ever names a path on this site (never ``//host`` or a scheme)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")) or any(c < " " for c in value):
        return "/"
    return value


def _same_origin(request: Request) -> bool:
    """A form post from our own pages: a cross-site page cannot buy, or answer the banner, for a visitor."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("origin")
    return origin is not None and origin == f"{request.url.scheme}://{request.url.netloc}"


async def _form(request: Request) -> dict[str, str]:
    if not _same_origin(request):
        raise HTTPException(status_code=403, detail="cross-site form refused")
    body = await request.body()
    if len(body) > 4096:
        raise HTTPException(status_code=413, detail="form too large")
    fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
    return {key: values[0] for key, values in fields.items()}


def _routes(app: FastAPI) -> None:
    @app.get("/", response_class=HTMLResponse)
    async def index(request: Request) -> HTMLResponse:
        items = "".join(
            f'<li><a href="/products/{slug}">{html.escape(name)}</a>, ${price}</li>'
            for slug, (name, price) in PRODUCTS.items()
        )
        return _page(request, "FastAPI shop", f"<h1>Products</h1><ul>{items}</ul>")

    @app.get("/go")
    async def go(request: Request, product: str = "blue-mug", msclkid: str = "") -> RedirectResponse:
        """The ad's landing URL: redirect at once, as many landings do.  The middleware has already read the click;
        while consent is unknown it is not stored, so the product URL carries it on for the snippet."""
        slug = product if product in PRODUCTS else "blue-mug"
        target = f"/products/{slug}"
        if get_click(request.scope) is None and _choice(request) is None and _CLICK_ID.fullmatch(msclkid):
            target += f"?msclkid={quote(msclkid)}"
        return RedirectResponse(target, status_code=302)

    @app.get("/products/{slug}", response_class=HTMLResponse)
    async def product(request: Request, slug: str) -> HTMLResponse:
        if slug not in PRODUCTS:
            raise HTTPException(status_code=404, detail="no such product")
        name, price = PRODUCTS[slug]
        body = f"""<h1>{html.escape(name)}</h1><p>${price}</p>
<form method="post" action="/checkout/{slug}"><label>Email <input name="email" type="email" required></label>
<button id="buy">Buy</button></form>"""
        return _page(request, name, body)

    @app.post("/consent")
    async def consent(request: Request) -> RedirectResponse:
        """The banner without JavaScript: the site's consent cookie, then back where the visitor was."""
        form = await _form(request)
        choice = "granted" if form.get("choice") == "granted" else "denied"
        response = RedirectResponse(_same_site_path(form.get("next")), status_code=303)
        response.set_cookie(CONSENT_COOKIE, choice, max_age=180 * 86400, samesite="lax", path="/")
        return response

    @app.post("/checkout/{slug}")
    async def checkout(request: Request, slug: str) -> RedirectResponse:
        if slug not in PRODUCTS:
            raise HTTPException(status_code=404, detail="no such product")
        form = await _form(request)
        email = form.get("email", "").strip()
        if not _EMAIL.fullmatch(email):
            raise HTTPException(status_code=400, detail="an email address is needed")
        order_id = "ord_" + uuid.uuid4().hex[:16]
        tracker: ConversionTracker = request.app.state.tracker
        # The durable write runs in a worker thread. No consent=: the tracker uses this request's own decision (the
        # middleware's request context travels into the thread), so a visitor who refused is never tracked.
        await tracker.arecord_offline(
            event_id=order_id,
            conversion_name=CONVERSION_GOAL,
            conversion_time=datetime.now(UTC),
            value=float(PRODUCTS[slug][1]),
            currency="USD",
            click=get_click(request.scope),
            email=email,
        )
        return RedirectResponse(f"/orders/{order_id}", status_code=303)

    @app.get("/orders/{order_id}", response_class=HTMLResponse)
    async def order(request: Request, order_id: str) -> HTMLResponse:
        tracker: ConversionTracker = request.app.state.tracker
        if not re.fullmatch(r"ord_[0-9a-f]{16}", order_id):
            raise HTTPException(status_code=404, detail="no such order")
        status = await tracker.astatus(order_id)
        words = {
            "pending": "waiting for delivery to Microsoft",
            "delivered": "delivered to Microsoft",
            "suppressed": "not sent: visitor refused consent",
        }.get(status.state, status.state)
        body = f'<h1>Thank you</h1><p>Order <code>{order_id}</code>: <span id="report">{words}</span></p>'
        return _page(request, "Thank you", body)

    @app.get("/favicon.ico")
    async def favicon() -> Response:
        return Response(status_code=204)


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    host, port = "127.0.0.1", int(os.environ.get("SHOP_PORT", "8001"))
    print(f"FastAPI shop on http://{host}:{port}/")
    print(f"Land with a test ad click: http://{host}:{port}/go?product=blue-mug&msclkid=Example-123", flush=True)
    uvicorn.run(create_app(), host=host, port=port, log_level="info")
    return 0
