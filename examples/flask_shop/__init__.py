"""The demo shop: a small but real Flask shop wired to msclkid-middleware (``make demo``).

The journey it shows, end to end:

1. An ad click lands on ``/go?product=blue-mug&msclkid=...``, which redirects (302, query dropped) to
   the product page: the middleware has already kept the click in its signed cookie, on the redirect.
2. A consent banner (accept/decline) writes the site's consent cookie and tells the snippet.
3. The checkout form (email, phone) creates the order; its confirmation records the offline
   conversion and a UET ``checkout_complete`` event whose ``event_id`` the page also pushes to UET.
4. "My orders" offers a partial refund (Restate) and a cancellation (Retract).

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

from flask import Flask, abort, current_app, flash, g, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from msclkid_middleware.conversions.identity import normalize_email, normalize_phone
from msclkid_middleware.errors import AdjustmentError, MsclkidError, ValidationError
from msclkid_middleware.flask import Msclkid, current_click, current_consent

__all__ = ["CONSENT_COOKIE", "PRODUCTS", "create_app", "msclkid"]

#: The site's own consent cookie, read by the consent policy (MSCLKID_CONSENT_COOKIE).
CONSENT_COOKIE = "shop_consent"
CONVERSION_GOAL = "Purchase"
UET_EVENT = "checkout_complete"
_EVENT_ID = re.compile(r"^[\w-]{1,100}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_PREFIXES = ("MSCLKID_", "MSADS_", "UET_")

# Development mode: plain-http cookies on 127.0.0.1 must be asked for in code, never by configuration alone.
msclkid = Msclkid(allow_insecure_cookie=True)


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
        MSCLKID_CONSENT_DEFAULT="granted",
        MSADS_CONVERSION_GOALS=CONVERSION_GOAL,
    )
    app.config.update({k: v for k, v in os.environ.items() if k.startswith(_PREFIXES)})
    if test_config:
        app.config.update(test_config)
    os.makedirs(app.instance_path, exist_ok=True)
    msclkid.init_app(app)
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
)
"""


def _db() -> sqlite3.Connection:
    conn: sqlite3.Connection | None = g.get("shop_db")
    if conn is None:
        conn = sqlite3.connect(os.path.join(current_app.instance_path, "shop.sqlite3"), timeout=10)
        conn.row_factory = sqlite3.Row
        conn.execute(_SCHEMA)
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
    if nonce and response.mimetype == "text/html":
        # A strict policy: the snippet and the shop's script run with the nonce, nothing inline.
        response.headers["Content-Security-Policy"] = (
            f"default-src 'self'; script-src 'nonce-{nonce}'; connect-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'"
        )
    return response


def _consent_choice() -> str | None:
    value = request.cookies.get(CONSENT_COOKIE)
    return value if value in ("granted", "denied") else None


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
    app.context_processor(
        lambda: {"consent_choice": _consent_choice(), "products": PRODUCTS, "page_load_id": g.get("page_load_id")}
    )


def index() -> str:
    return render_template("index.html")


def go() -> Response:
    """The ad's landing URL: a tracking redirect that drops the query string, as many do.

    The middleware has read ``msclkid`` before this view runs; its Set-Cookie rides on the 302.
    """
    slug = request.args.get("product", "blue-mug")
    if slug not in PRODUCTS:
        slug = "blue-mug"
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
    # Record, never send, in the request: the worker delivers (and retries) later.
    click, consent_now = current_click(), current_consent()
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
            consent=consent_now,
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
                consent=consent_now,
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
    statuses = {}
    for row in rows:
        try:
            statuses[row["id"]] = msclkid.tracker.status(row["id"])
        except MsclkidError:
            statuses[row["id"]] = None
    return render_template("orders.html", orders=rows, statuses=statuses, products=PRODUCTS)


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
        msclkid.tracker.restate(order_id, value=float(remaining))
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
        msclkid.tracker.retract(order_id)
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
    target = request.form.get("next", "/")
    if not target.startswith("/") or target.startswith("//"):
        target = "/"
    response = redirect(target, code=303)
    if choice in ("granted", "denied"):
        response.set_cookie(CONSENT_COOKIE, choice, max_age=180 * 24 * 3600, samesite="Lax", path="/")
    return response
