"""The shop's views: an ad landing that redirects, products, a consent banner, and two checkouts.

``request.msclkid`` is the Microsoft Ads click (or ``None``) and ``get_consent(request)`` the visitor's consent,
both decided by ``MsclkidMiddleware`` before the view runs.  The sync checkout records the sale with
``tracker.record_offline``; the async one with ``await tracker.arecord_offline`` (same keywords; the durable
write runs in a worker thread, so the event loop keeps serving).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from examples.django_shop.catalog import BY_SLUG, PRODUCTS, Product
from msclkid_middleware import get_consent
from msclkid_middleware.django import get_tracker
from msclkid_middleware.errors import UnknownEvent

GOAL = "Purchase"
CONSENT_COOKIE = "shop_consent"
_YEAR = 365 * 24 * 3600


def index(request: HttpRequest) -> HttpResponse:
    return render(request, "django_shop/index.html", {"products": PRODUCTS})


def ad_landing(request: HttpRequest) -> HttpResponseRedirect:
    """The ad's final URL (``/go?product=...&msclkid=...``): the click is kept before this redirect drops it."""
    slug = request.GET.get("product", "")
    return HttpResponseRedirect(reverse("product", args=[slug]) if slug in BY_SLUG else reverse("index"))


def product(request: HttpRequest, slug: str) -> HttpResponse:
    item = BY_SLUG.get(slug)
    if item is None:
        raise Http404("no such product")
    return render(request, "django_shop/product.html", {"product": item})


def consent(request: HttpRequest) -> HttpResponse:
    """The banner's answer, kept in the cookie the middleware reads (``MSCLKID_CONSENT_COOKIE``)."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    choice = "granted" if request.POST.get("choice") == "granted" else "denied"
    target = request.POST.get("next") or "/"
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = "/"
    response = HttpResponseRedirect(target)
    response.set_cookie(CONSENT_COOKIE, choice, max_age=_YEAR, samesite="Lax", secure=request.is_secure())
    return response


def _order(request: HttpRequest) -> tuple[Product, str] | None:
    item = BY_SLUG.get(request.POST.get("product", ""))
    email = request.POST.get("email", "").strip()
    return (item, email) if item is not None and "@" in email else None


def _conversion(request: HttpRequest, item: Product, email: str) -> dict[str, Any]:
    # The click and the consent decision travel with the event; a refusing visitor's sale is kept in the
    # outbox as suppressed (never sent), so the shop's own numbers still add up.
    return {
        "event_id": f"ord_{secrets.token_hex(6)}",
        "conversion_name": GOAL,
        "conversion_time": datetime.now(UTC),
        "value": item.price,
        "currency": "USD",
        "click": request.msclkid,  # type: ignore[attr-defined]
        "email": email,  # hashed by the tracker, never stored
        "consent": get_consent(request),
    }


def checkout(request: HttpRequest) -> HttpResponse:
    """Sync checkout: ``tracker.record_offline`` commits the conversion to the outbox, then we redirect."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    order = _order(request)
    if order is None:
        return render(request, "django_shop/product.html", {"product": PRODUCTS[0], "error": True}, status=400)
    status = get_tracker().record_offline(**_conversion(request, *order))
    return HttpResponseRedirect(reverse("order", args=[status.event_id]))


async def checkout_async(request: HttpRequest) -> HttpResponse:
    """Async checkout: ``await tracker.arecord_offline`` runs the same durable write off the event loop."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    order = _order(request)
    if order is None:
        return HttpResponse("an email and a product, please", status=400, content_type="text/plain")
    status = await get_tracker().arecord_offline(**_conversion(request, *order))
    return HttpResponseRedirect(reverse("order", args=[status.event_id]))


def order(request: HttpRequest, order_id: str) -> HttpResponse:
    try:
        status = get_tracker().status(order_id)
    except UnknownEvent:
        raise Http404("no such order") from None
    return render(request, "django_shop/order.html", {"order_id": order_id, "status": status})
