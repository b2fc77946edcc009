"""The demo shop: a small but real Flask shop wired to msclkid-middleware (``make demo``).

The journey it shows, end to end:

1. An ad click lands on ``/go?product=blue-mug&msclkid=...``, which redirects (302, query dropped) to
   the product page: the middleware has already kept the click in its signed cookie, on the redirect.
   The shop runs opt-in (``MSCLKID_CONSENT_DEFAULT="denied"``): until the visitor accepts, nothing about the
   click is stored, so the redirect keeps ``msclkid`` in the product URL for the snippet to hold in memory.
2. A consent banner (accept/decline) writes the site's consent cookie and tells the snippet; the footer shows
   the server's view of the click and the consent, updated on the same page.
3. The checkout form (email, phone) creates the order; its confirmation records the offline
   conversion and a UET ``checkout_complete`` event whose ``event_id`` the page also pushes to UET.
4. "My orders" offers a partial refund (Restate) and a cancellation (Retract), and says in words what became
   of each report to Microsoft ("restated to 8.50: delivered", "not sent: visitor refused consent").
5. Every form carries a CSRF token (Flask-WTF's ``CSRFProtect``: the ``demo`` extra), and the banner's ``next``
   is a same-site path or ``/`` (see ``redirects.py``).  ``/report`` shows the package's HTML report of the
   outbox; the header links to the emulator's dashboard when ``SHOP_EMULATOR_URL`` is set (``make demo`` does).

Run the shop alone with ``flask --app examples.flask_shop run`` (configure ``MSADS_*``/``UET_*``), or
everything (emulator, shop, worker) with ``make demo`` / ``python -m examples.flask_shop``.
It serves plain http on 127.0.0.1, so it uses the explicit development cookie mode; never deploy that.
"""

from __future__ import annotations

import os
import re
import secrets
import sqlite3
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from flask import (
    Flask,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    send_from_directory,
    session,
    url_for,
)
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.wrappers import Response

from examples.flask_shop.redirects import safe_next
from examples.flask_shop.status_words import describe, event_words
from msclkid_middleware.conversions.identity import normalize_email, normalize_phone
from msclkid_middleware.errors import AdjustmentError, MsclkidError, ValidationError
from msclkid_middleware.flask import Msclkid, current_click, current_consent
from msclkid_middleware.ops.html_report import CSP as HTML_REPORT_CSP
from msclkid_middleware.ops.html_report import render_html

__all__ = ["CONSENT_COOKIE", "PRODUCTS", "create_app", "msclkid"]

#: The site's own consent cookie, read by the consent policy (MSCLKID_CONSENT_COOKIE).
CONSENT_COOKIE = "shop_consent"
CONVERSION_GOAL = "Purchase"
UET_EVENT = "checkout_complete"
_EVENT_ID = re.compile(r"^[\w-]{1,100}$")
_CLICK_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # the middleware's own rule for an msclkid
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_PREFIXES = ("MSCLKID_", "MSADS_", "UET_")

# Development mode: plain-http cookies on 127.0.0.1 must be asked for in code, never by configuration alone.
msclkid = Msclkid(allow_insecure_cookie=True)
# Every POST form (banner, checkout, refund, cancel) needs the session's token: a cross-site page cannot set a
# visitor's consent or refund an order.  The snippet's capture endpoint is the middleware's, outside Flask's
# views, and has its own same-origin rule.
csrf = CSRFProtect()


@dataclass(frozen=True, slots=True)
class Product:
    slug: str
    name: str
    price: Decimal
    blurb: str


PRODUCTS: Mapping[str, Product] = {
    p.slug: p
    for p in (
        Product("blue-mug", "Blue mug", Decimal("12.00"), "Stoneware, 350 ml, dishwasher safe."),
        Product("tea-tin", "Tea tin", Decimal("24.50"), "Airtight, keeps 200 g of leaves fresh."),
    )
}


def create_app(test_config: Mapping[str, Any] | None = None, *, instance_path: str | None = None) -> Flask:
    """The app factory.  Settings come from the defaults below, then ``MSCLKID_*``/``MSADS_*``/``UET_*``
    environment variables (how ``make demo`` points it at the emulator), then ``test_config``."""
    app = Flask(__name__, instance_path=instance_path or os.environ.get("SHOP_INSTANCE_PATH") or None)
    app.config.from_mapping(
        SECRET_KEY=os.environ.get("SHOP_SECRET_KEY", "demo-only-secret-do-not-deploy"),
        SHOP_CURRENCY="USD",
        MSCLKID_COOKIE_SECURE=False,  # plain http on 127.0.0.1 (with allow_insecure_cookie above)
        MSCLKID_CONSENT_COOKIE=CONSENT_COOKIE,
        # Opt-in, as EEA/UK/CH sites run: nothing is stored for advertising until the visitor accepts.
        MSCLKID_CONSENT_DEFAULT="denied",
        MSADS_CONVERSION_GOALS=CONVERSION_GOAL,
        # A page left open for hours still submits: the token lives as long as the session.
        WTF_CSRF_TIME_LIMIT=None,
        SESSION_COOKIE_SAMESITE="Lax",
        SHOP_EMULATOR_URL=os.environ.get("SHOP_EMULATOR_URL") or None,
    )
    app.config.update({k: v for k, v in os.environ.items() if k.startswith(_PREFIXES)})
    if test_config:
        app.config.update(test_config)
    os.makedirs(app.instance_path, exist_ok=True)
    msclkid.init_app(app)
    csrf.init_app(app)
    app.register_error_handler(CSRFError, _csrf_refused)
    app.teardown_appcontext(_close_db)
    app.before_request(_csp_nonce)
    app.after_request(_security_headers)
    _register_routes(app)
    return app


# -- storage: the shop's own orders (SQLite in the instance folder) --------------------------------------
_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY,
    product TEXT NOT NULL,
    value TEXT NOT NULL,
    currency TEXT NOT NULL,
    email_hint TEXT NOT NULL,
    status TEXT NOT NULL,
    refunded TEXT NOT NULL DEFAULT '0',
    uet_event_id TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS adjustments (
    tracker_key TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    restated_to TEXT
)
"""


def _db() -> sqlite3.Connection:
    conn: sqlite3.Connection | None = g.get("shop_db")
    if conn is None:
        conn = sqlite3.connect(os.path.join(current_app.instance_path, "shop.sqlite3"), timeout=10)
        conn.row_factory = sqlite3.Row
        conn.executescript(_SCHEMA)
        g.shop_db = conn
    return conn


def _close_db(_exc: BaseException | None) -> None:
    conn = g.pop("shop_db", None)
    if conn is not None:
        conn.close()


def _order(order_id: str) -> sqlite3.Row:
    # Only orders placed in this browser session are visible: the session is the demo's "account".
    if order_id not in session.get("orders", []):
        abort(404)
    row: sqlite3.Row | None = _db().execute("SELECT * FROM orders WHERE id = ?", (order_id,)).fetchone()
    if row is None:
        abort(404)
    return row


def _email_hint(email: str) -> str:
    # The shop shows which address it used without keeping more of it than it needs for the demo.
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


# -- request hooks ---------------------------------------------------------------------------------------
def _csp_nonce() -> None:
    g.csp_nonce = secrets.token_urlsafe(16)
    g.page_load_id = str(uuid.uuid4())


def _security_headers(response: Response) -> Response:
    nonce = g.get("csp_nonce")
    if g.get("report_csp"):
        # The HTML report is one self-contained file: its own inline style and SVG, nothing fetched, no script.
        response.headers["Content-Security-Policy"] = g.report_csp
    elif nonce and response.mimetype == "text/html":
        # A strict policy: the snippet and the shop's script run with the nonce, nothing inline.
        response.headers["Content-Security-Policy"] = (
            f"default-src 'self'; script-src 'nonce-{nonce}'; connect-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'"
        )
    return response


def _consent_choice() -> str | None:
    value = request.cookies.get(CONSENT_COOKIE)
    return value if value in ("granted", "denied") else None


def _opt_in() -> bool:
    return current_app.config.get("MSCLKID_CONSENT_DEFAULT") == "denied"


def _csrf_refused(error: CSRFError) -> tuple[str, int]:
    # Flask-WTF answers 400; say in words that nothing changed and how to go on.
    return render_template("refused.html", reason=error.description), 400


# -- views -------------------------------------------------------------------------------------------------
def _register_routes(app: Flask) -> None:
    app.add_url_rule("/", "index", index)
    app.add_url_rule("/go", "go", go)
    app.add_url_rule("/products/<slug>", "product", product)
    app.add_url_rule("/checkout/<slug>", "checkout", checkout, methods=["GET", "POST"])
    app.add_url_rule("/orders", "orders", orders)
    app.add_url_rule("/orders/<order_id>", "confirmation", confirmation)
    app.add_url_rule("/orders/<order_id>/refund", "refund", refund, methods=["POST"])
    app.add_url_rule("/orders/<order_id>/cancel", "cancel", cancel, methods=["POST"])
    app.add_url_rule("/consent", "consent", consent, methods=["POST"])
    app.add_url_rule("/consent/status", "consent_status", consent_status)
    app.add_url_rule("/report", "report", report)
    app.add_url_rule("/favicon.ico", "favicon", favicon)
    app.context_processor(
        lambda: {
            "consent_choice": _consent_choice(),
            "opt_in": _opt_in(),
            "products": PRODUCTS,
            "page_load_id": g.get("page_load_id"),
            "emulator_url": current_app.config.get("SHOP_EMULATOR_URL"),
        }
    )


def index() -> str:
    return render_template("index.html")


def go() -> Response:
    """The ad's landing URL: a tracking redirect that drops the query string, as many do.

    The middleware has read ``msclkid`` before this view runs; its Set-Cookie rides on the 302 when consent
    allows.  Opt-in and not asked yet, nothing was stored: the click goes on in the URL, where the snippet keeps
    it in the page's memory until the banner's answer (and the no-JavaScript banner sends it back here).
    """
    slug = request.args.get("product", "blue-mug")
    if slug not in PRODUCTS:
        slug = "blue-mug"
    click_id = request.args.get("msclkid", "")
    if current_click() is None and _consent_choice() is None and _CLICK_ID.fullmatch(click_id):
        return redirect(url_for("product", slug=slug, msclkid=click_id), code=302)
    return redirect(url_for("product", slug=slug), code=302)


def product(slug: str) -> str:
    item = PRODUCTS.get(slug) or abort(404)
    return render_template("product.html", product=item)


def checkout(slug: str) -> Any:
    item = PRODUCTS.get(slug) or abort(404)
    if request.method == "GET":
        return render_template("checkout.html", product=item, errors={}, form={})
    form = request.form
    email, phone = form.get("email", "").strip(), form.get("phone", "").strip()
    errors: dict[str, str] = {}
    try:
        normalize_email(email)
    except ValidationError:
        errors["email"] = "Enter an email address such as ana@example.com."
    try:
        normalize_phone(phone)
    except ValidationError:
        errors["phone"] = "Enter the phone number with its country code, such as +14255551234."
    try:
        quantity = int(form.get("quantity", "1"))
    except ValueError:
        quantity = 0
    if not 1 <= quantity <= 10:
        errors["quantity"] = "Choose 1 to 10."
    if errors:
        return render_template("checkout.html", product=item, errors=errors, form=form), 400
    # The browser's UET push and our server event must share the event ID to be deduplicated: use the
    # one the page generated with msclkid.eventId(), if it looks like one, else make our own.
    event_id = form.get("event_id", "")
    if not _EVENT_ID.fullmatch(event_id):
        event_id = f"{UET_EVENT}-{uuid.uuid4()}"
    page_load_id = form.get("page_load_id", "")
    order_id = "ord_" + secrets.token_hex(6)
    value = item.price * quantity
    currency = str(current_app.config["SHOP_CURRENCY"])
    now = datetime.now(UTC)
    db = _db()
    with db:
        db.execute(
            "INSERT INTO orders (id, product, value, currency, email_hint, status, uet_event_id, created_at)"
            " VALUES (?, ?, ?, ?, ?, 'paid', ?, ?)",
            (order_id, item.slug, str(value), currency, _email_hint(email), event_id, now.isoformat()),
        )
    session["orders"] = [*session.get("orders", []), order_id]
    # Record, never send, in the request: the worker delivers (and retries) later.  No consent= argument:
    # inside a request the tracker uses this request's own decision (a visitor who refused in the banner or
    # sent Sec-GPC stays refused: no click, email or phone leaves the shop).
    click = current_click()
    tracker = msclkid.tracker
    try:
        tracker.record_offline(
            event_id=order_id,
            conversion_name=CONVERSION_GOAL,
            conversion_time=now,
            value=float(value),
            currency=currency,
            click=click,
            email=email,
            phone=phone,
        )
        if tracker.uet_tag_id:
            tracker.record_uet_event(
                event_id=event_id,
                event_name=UET_EVENT,
                event_time=now,
                click=click,
                email=email,
                phone=phone,
                value=float(value),
                currency=currency,
                transaction_id=order_id,
                event_source_url=url_for("checkout", slug=slug, _external=True),
                page_load_id=page_load_id if _UUID.fullmatch(page_load_id) else None,
                client_user_agent=request.user_agent.string or None,
            )
    except MsclkidError as exc:
        # The sale stands whatever happens to its report; the log says what to fix (no raw email in it).
        current_app.logger.error("order %s: conversion not recorded: %s", order_id, exc)
    return redirect(url_for("confirmation", order_id=order_id), code=303)


def confirmation(order_id: str) -> str:
    order = _order(order_id)
    return render_template("confirmation.html", order=order, product=PRODUCTS[order["product"]])


def orders() -> str:
    ids = session.get("orders", [])
    rows = []
    if ids:
        marks = ",".join("?" * len(ids))
        rows = _db().execute(f"SELECT * FROM orders WHERE id IN ({marks}) ORDER BY created_at DESC", ids).fetchall()  # noqa: S608 - placeholders only
    tracker = msclkid.tracker
    statuses: dict[str, list[str]] = {}
    uet: dict[str, str] = {}
    for row in rows:
        asked = {
            a["tracker_key"]: None if a["restated_to"] is None else Decimal(a["restated_to"])
            for a in _db().execute("SELECT * FROM adjustments WHERE order_id = ?", (row["id"],))
        }
        try:
            sale = tracker.status(row["id"])
            statuses[row["id"]] = describe(sale, sale.adjustments, asked)
        except MsclkidError:
            statuses[row["id"]] = describe(None)
        if row["uet_event_id"] and tracker.uet_tag_id:
            try:
                uet[row["id"]] = event_words(tracker.status(row["uet_event_id"]))
            except MsclkidError:
                uet[row["id"]] = "not recorded"
    return render_template("orders.html", orders=rows, statuses=statuses, uet=uet, products=PRODUCTS)


def _remember_adjustment(order_id: str, tracker_key: str, restated_to: Decimal | None) -> None:
    db = _db()
    with db:
        db.execute(
            "INSERT OR REPLACE INTO adjustments (tracker_key, order_id, restated_to) VALUES (?, ?, ?)",
            (tracker_key, order_id, None if restated_to is None else str(restated_to)),
        )


def refund(order_id: str) -> Response:
    """A partial refund: the conversion's value is restated to what the customer finally paid."""
    order = _order(order_id)
    try:
        amount = Decimal(request.form.get("amount", ""))
    except ArithmeticError:
        amount = Decimal(-1)
    paid = Decimal(order["value"]) - Decimal(order["refunded"])
    if order["status"] == "cancelled" or not Decimal(0) < amount < paid:
        flash(f"A refund must be more than 0 and less than {paid} (cancel the order to refund it all).")
        return redirect(url_for("orders"), code=303)
    remaining = paid - amount
    try:
        adjustment = msclkid.tracker.restate(order_id, value=float(remaining))
        _remember_adjustment(order_id, adjustment.idempotency_key, remaining)
    except (AdjustmentError, MsclkidError) as exc:
        flash(f"Refunded, but Microsoft will not be told: {exc}")
    db = _db()
    with db:
        db.execute(
            "UPDATE orders SET refunded = ?, status = 'refunded' WHERE id = ?",
            (str(Decimal(order["refunded"]) + amount), order_id),
        )
    flash(f"Refunded {amount} {order['currency']}: the conversion is restated to {remaining}.")
    return redirect(url_for("orders"), code=303)


def cancel(order_id: str) -> Response:
    """A cancellation: the conversion is retracted."""
    order = _order(order_id)
    if order["status"] == "cancelled":
        flash("This order is already cancelled.")
        return redirect(url_for("orders"), code=303)
    try:
        adjustment = msclkid.tracker.retract(order_id)
        _remember_adjustment(order_id, adjustment.idempotency_key, None)
        flash(f"Order {order_id} cancelled: the conversion is retracted.")
    except (AdjustmentError, MsclkidError) as exc:
        flash(f"Order {order_id} cancelled; nothing to retract at Microsoft: {exc}")
    db = _db()
    with db:
        db.execute("UPDATE orders SET status = 'cancelled' WHERE id = ?", (order_id,))
    return redirect(url_for("orders"), code=303)


def consent() -> Response:
    """The banner's no-JavaScript path: store the choice in the site's consent cookie and go back."""
    choice = request.form.get("choice")
    response = redirect(safe_next(request.form.get("next")), code=303)
    if choice in ("granted", "denied"):
        response.set_cookie(CONSENT_COOKIE, choice, max_age=180 * 24 * 3600, samesite="Lax", path="/")
    return response


def consent_status() -> Response:
    """What the server sees now (the footer refreshes itself from this after the banner's answer)."""
    click, decision = current_click(), current_consent()
    response = jsonify(
        click=click.msclkid if click else None,
        consent=decision.state if decision else None,
        basis=decision.basis if decision else None,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def report() -> Any:
    """The package's self-contained HTML report of this shop's outbox (what ``msclkid report --html`` writes)."""
    g.report_csp = HTML_REPORT_CSP
    return Response(render_html(msclkid.tracker), mimetype="text/html")


def favicon() -> Response:
    return send_from_directory(
        os.path.join(current_app.root_path, "static"), "favicon.svg", mimetype="image/svg+xml", max_age=86400
    )
