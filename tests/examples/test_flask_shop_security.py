"""The demo shop under hostile input (issue 19 item 12): the banner's ``next`` and CSRF on every form.

Redirect targets are judged as a browser judges them: Ada (``ada_url``), a WHATWG URL parser (the one in Node.js),
resolves each ``Location`` against the shop's origin, and it must stay the shop's origin.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import unquote

import pytest
from ada_url import URL
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from examples.flask_shop import CONSENT_COOKIE, msclkid
from examples.flask_shop.redirects import FALLBACK, safe_next

ORIGIN = "http://127.0.0.1:8000"
CLICK = "3f2a9c1be0d84c47a5e6b7c8d9e0f1a2"
BUYER = {"email": "ana@example.com", "phone": "+14255551234", "quantity": "1"}
CROSS_SITE = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site", "Referer": "http://evil.example/x"}


def csrf_token(client: FlaskClient, path: str = "/checkout/blue-mug") -> str:
    """The session's token, as a page hands it to its forms."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert match is not None, "the page has no form with a CSRF token"
    return match.group(1)


def browser_target(location: str) -> URL:
    """Where a browser on the shop goes for this ``Location``."""
    return URL(location, ORIGIN + "/products/blue-mug")


def same_origin(location: str) -> bool:
    return str(browser_target(location).origin) == ORIGIN


# -- next: the open redirect and the 500 ------------------------------------------------------------------

HOSTILE = [
    "/\t/evil.example/",  # the reported one: the browser deletes the tab, leaving //evil.example/
    "/\n/evil.example/",
    "/\r/evil.example/",
    "/\\evil.example/",  # a backslash is a slash in http(s) URLs
    "\\\\evil.example/",
    "\\/evil.example/",
    "//evil.example/",
    "///evil.example/",
    " //evil.example/",  # leading spaces and C0 controls are trimmed by the parser
    "\x00//evil.example/",
    "\x1f/\\evil.example",
    "https://evil.example/",
    "https:evil.example",
    "http:/evil.example",
    "HTTP://evil.example",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "evil.example",
    "./evil",
    "?next=//evil.example",
    "",
    "/x\r\nSet-Cookie: session=attacker",  # was a 500; never a header
    "/x\nLocation: //evil.example",
    "/" + "a" * 5000,
]


@pytest.mark.parametrize("target", HOSTILE)
def test_hostile_next_goes_home(shop: Flask, target: str) -> None:
    client = shop.test_client()
    answer = client.post("/consent", data={"choice": "granted", "next": target, "csrf_token": csrf_token(client)})
    assert answer.status_code == 303
    assert answer.headers["Location"] == FALLBACK
    assert "session=attacker" not in answer.headers.get("Set-Cookie", "")
    assert answer.headers.getlist("Set-Cookie")  # the choice itself still counts


@pytest.mark.parametrize(
    ("target", "location"),
    [
        ("/products/blue-mug", "/products/blue-mug"),
        (f"/products/blue-mug?msclkid={CLICK}", f"/products/blue-mug?msclkid={CLICK}"),
        ("/orders#latest", "/orders#latest"),
        ("/%2F%2Fevil.example", "/%2F%2Fevil.example"),  # an escaped slash stays a path on this site
        ("/..//evil.example", "/..//evil.example"),  # the browser resolves it to //evil.example as a *path*
        ("/caf\u00e9", "/caf%C3%A9"),  # non-ASCII is sent percent-encoded, as the browser would send it
    ],
)
def test_same_site_paths_are_kept(shop: Flask, target: str, location: str) -> None:
    client = shop.test_client()
    answer = client.post("/consent", data={"choice": "denied", "next": target, "csrf_token": csrf_token(client)})
    assert answer.status_code == 303
    assert answer.headers["Location"] == location
    assert same_origin(location)


# Pieces a browser treats specially, mixed with ordinary path text.
_PIECES = st.sampled_from(
    ["/", "//", "\\", "\t", "\n", "\r", " ", "\x00", "\x0b", "\x7f", ":", "@", "%2F", "%5C", "%09", "..", ".",
     "?", "#", "evil.example", "http", "https:", "javascript:", "\u3002", "\uff0f", "\u2215", "\u00a0", "\ud800"]
)  # fmt: skip
NEXT = st.one_of(st.text(max_size=60), st.lists(st.one_of(_PIECES, st.text(max_size=4)), max_size=12).map("".join))


@settings(max_examples=3000, deadline=None)
@given(NEXT)
def test_safe_next_never_leaves_the_origin_as_a_browser_reads_it(target: str) -> None:
    location = safe_next(target)
    # What we emit is plain visible ASCII (nothing the parser strips, no header break) and stays on the shop ...
    assert all("\x21" <= ch <= "\x7e" for ch in location), repr(location)
    assert "\\" not in location
    assert same_origin(location), (target, location)
    if location != FALLBACK:
        # ... and we never accept what the browser itself would have read as another origin.
        assert same_origin(target.replace("\ud800", "")), target
        assert location.startswith("/")
        assert not location.startswith("//")


@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="\\"), max_size=40))
def test_plain_paths_pass_unchanged(rest: str) -> None:
    target = "/" + rest
    if rest.startswith("/"):
        assert safe_next(target) == FALLBACK
    else:
        # Kept, at most percent-encoded ("<" -> "%3C") or without an empty "?": the same place for the browser.
        kept, given_ = browser_target(safe_next(target)), browser_target(target)
        for part in ("pathname", "search", "hash"):
            assert unquote(getattr(kept, part)) == unquote(getattr(given_, part)), part


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=NEXT.map(lambda text: text.replace("\ud800", "")))  # a form cannot carry a lone surrogate
def test_the_consent_route_answers_any_next_with_a_same_site_redirect(shop: Flask, target: str) -> None:
    client = shop.test_client()
    answer = client.post("/consent", data={"choice": "granted", "next": target, "csrf_token": csrf_token(client)})
    assert answer.status_code == 303
    assert same_origin(answer.headers["Location"])


# -- CSRF: every form ---------------------------------------------------------------------------------------


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, str | None]] = []
        self.tokens: list[int] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "form":
            self.forms.append(found)
            self.tokens.append(0)
        elif tag == "input" and found.get("name") == "csrf_token" and self.forms:
            self.tokens[-1] += 1


def place_order(client: FlaskClient) -> str:
    placed = client.post("/checkout/tea-tin", data={**BUYER, "csrf_token": csrf_token(client)})
    assert placed.status_code == 303
    return str(placed.headers["Location"]).rsplit("/", 1)[1]


def test_every_post_form_on_every_page_carries_a_token(shop: Flask) -> None:
    client = shop.test_client()
    order_id = place_order(client)
    pages = ["/", "/products/blue-mug", "/checkout/blue-mug", "/orders", f"/orders/{order_id}", "/report"]
    seen = set()
    for path in pages:
        parser = _Forms()
        parser.feed(client.get(path).get_data(as_text=True))
        for form, tokens in zip(parser.forms, parser.tokens, strict=True):
            assert (form.get("method") or "get").lower() == "post", (path, form)
            assert tokens == 1, f"{path}: form {form.get('action')} has no CSRF token"
            seen.add(re.sub(r"ord_[0-9a-f]{12}", "ORDER", form.get("action") or ""))
    assert seen == {"/consent", "/checkout/blue-mug", "/orders/ORDER/refund", "/orders/ORDER/cancel"}


def test_cross_site_posts_without_a_token_change_nothing(shop: Flask) -> None:
    victim = shop.test_client()
    order_id = place_order(victim)
    tracker = msclkid.state(shop).tracker
    before = tracker.status(order_id)
    attacks = [
        ("/consent", {"choice": "granted", "next": "/"}),
        ("/checkout/blue-mug", BUYER),
        (f"/orders/{order_id}/refund", {"amount": "20"}),
        (f"/orders/{order_id}/cancel", {}),
    ]
    for path, data in attacks:
        refused = victim.post(path, data=data, headers=CROSS_SITE)
        assert refused.status_code == 400, path
        assert "Nothing was changed" in refused.get_data(as_text=True)
        assert "Set-Cookie" not in refused.headers or CONSENT_COOKIE not in refused.headers["Set-Cookie"]
        # A token from another visitor's session is no better than none.
        stranger = csrf_token(shop.test_client())
        assert victim.post(path, data={**data, "csrf_token": stranger}, headers=CROSS_SITE).status_code == 400
        assert victim.post(path, data={**data, "csrf_token": "forged"}).status_code == 400
    assert victim.get_cookie(CONSENT_COOKIE) is None
    after = tracker.status(order_id)
    assert after.adjustments == before.adjustments == ()
    orders = victim.get("/orders").get_data(as_text=True)
    assert orders.count('class="order"') == 1
    assert ">paid<" in orders


def test_the_same_forms_with_the_pages_token_are_accepted(shop: Flask) -> None:
    client = shop.test_client()
    token = csrf_token(client)
    consent = client.post("/consent", data={"choice": "granted", "next": "/orders", "csrf_token": token})
    assert (consent.status_code, consent.headers["Location"]) == (303, "/orders")
    assert client.get_cookie(CONSENT_COOKIE) is not None
    order_id = place_order(client)
    refund = client.post(f"/orders/{order_id}/refund", data={"amount": "4.50", "csrf_token": token})
    assert refund.status_code == 303
    cancel = client.post(f"/orders/{order_id}/cancel", data={"csrf_token": token})
    assert cancel.status_code == 303
    kinds = [a.kind for a in msclkid.state(shop).tracker.status(order_id).adjustments]
    assert kinds == ["offline_adjustment", "offline_adjustment"]


def test_the_session_cookie_holding_the_token_is_same_site_lax(shop: Flask) -> None:
    client = shop.test_client()
    page = client.get("/")
    session_cookie = next(h for h in page.headers.getlist("Set-Cookie") if h.startswith("session="))
    assert "SameSite=Lax" in session_cookie
    assert "HttpOnly" in session_cookie
