"""msclkid_middleware.django.MsclkidMiddleware under real Django: the test client (WSGI-style handler, sync chain)
and the async test client (ASGI handler, async chain), sync and async views."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from asgiref.sync import iscoroutinefunction
from django.http import HttpResponse
from django.test import AsyncClient, Client, override_settings
from werkzeug.test import Client as WerkzeugClient

from msclkid_middleware import ConsentPolicy
from msclkid_middleware import MsclkidMiddleware as WsgiMiddleware
from msclkid_middleware.capture.pageview import PageView
from msclkid_middleware.capture.profiles import MemoryProfileStore
from msclkid_middleware.django import MsclkidMiddleware
from msclkid_middleware.errors import ConfigError
from msclkid_middleware.testing import make_click_cookie
from tests.django_setup import SECRET_KEY, in_own_thread, run_async

CLICK = "Example-123"
COOKIE = "msclkid"  # the insecure development cookie of the test settings


def set_cookies(response: Any) -> dict[str, str]:
    """The Set-Cookie headers Django will send, by cookie name (as the handlers write them)."""
    return {name: morsel.output(header="").strip() for name, morsel in response.cookies.items()}


def test_landing_sets_the_signed_cookie_and_request_msclkid_is_the_click() -> None:
    client = Client()
    response = client.get(f"/page?msclkid={CLICK}")
    assert response.status_code == 200
    assert response.content == b"<html><body>click=Example-123/url</body></html>"
    header = set_cookies(response)[COOKIE]
    assert header.startswith(f"{COOKIE}=")
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header
    assert "Max-Age=7776000" in header
    # The browser sends it back: the click comes from the cookie now, and nothing new is set.
    again = client.get("/page")
    assert again.content == b"<html><body>click=Example-123/cookie</body></html>"
    assert COOKIE not in again.cookies


def test_a_request_without_a_click_has_request_msclkid_none_and_no_cookie() -> None:
    response = Client().get("/page")
    assert response.content == b"<html><body>click=none</body></html>"
    assert not response.cookies


def test_get_click_and_get_consent_accept_the_django_request_and_its_meta() -> None:
    data = Client().get(f"/probe?msclkid={CLICK}").json()
    assert data == {
        "click": CLICK,
        "same": True,
        "meta_click": CLICK,
        "consent": "granted",
        "basis": "default",
        "request_consent": "granted",
    }


@pytest.mark.parametrize(
    ("path", "status"), [("/redirect", 302), ("/boom", 500), ("/stream", 200), ("/nowhere", 404)], ids=str
)
def test_the_cookie_is_added_to_redirects_errors_streams_and_not_found(path: str, status: int) -> None:
    client = Client(raise_request_exception=False)
    response = client.get(f"{path}?msclkid={CLICK}")
    assert response.status_code == status
    assert COOKIE in response.cookies
    if path == "/stream":
        assert b"".join(response.streaming_content) == b"<html><body>streamed</body></html>"
    if path == "/redirect":
        assert response["Location"] == "/page"
        assert client.get("/page").content == b"<html><body>click=Example-123/cookie</body></html>"


def test_the_body_and_the_app_headers_are_left_as_the_app_made_them() -> None:
    plain = Client().get("/page")
    landed = Client().get(f"/page?msclkid={CLICK}")
    assert plain.content.replace(b"none", b"") == landed.content.replace(b"Example-123/url", b"")
    assert dict(plain.items()).keys() == dict(landed.items()).keys()


def test_async_views_and_the_async_chain() -> None:
    async def journey() -> tuple[Any, Any, Any, Any]:
        client = AsyncClient()
        first = await client.get(f"/async-page?msclkid={CLICK}")
        second = await client.get("/async-probe")
        streamed = await AsyncClient().get(f"/async-stream?msclkid={CLICK}")
        body = b"".join([chunk async for chunk in streamed.streaming_content])
        return first, second, streamed, body

    first, second, streamed, body = run_async(journey())
    assert first.content == b"<html><body>async click=Example-123/url</body></html>"
    assert COOKIE in first.cookies
    assert second.json() == {"click": CLICK, "request_consent": "granted"}
    assert COOKIE in streamed.cookies
    assert body == b"<html><body>async streamed</body></html>"


def test_sync_views_under_the_async_client_and_async_views_under_the_sync_client() -> None:
    sync_client = in_own_thread(Client().get, f"/async-page?msclkid={CLICK}")
    assert sync_client.content.endswith(b"click=Example-123/url</body></html>")
    response = run_async(AsyncClient().get(f"/page?msclkid={CLICK}"))
    assert response.content == b"<html><body>click=Example-123/url</body></html>"
    assert COOKIE in response.cookies


def test_the_middleware_marks_itself_async_for_an_async_chain() -> None:
    async def get_response(request: Any) -> HttpResponse:
        return HttpResponse("ok")

    assert iscoroutinefunction(MsclkidMiddleware(get_response))
    assert not iscoroutinefunction(MsclkidMiddleware(lambda request: HttpResponse("ok")))
    assert MsclkidMiddleware.sync_capable
    assert MsclkidMiddleware.async_capable


# -- consent -----------------------------------------------------------------------------------------------------


def test_gpc_refusal_keeps_nothing_and_deletes_an_existing_cookie() -> None:
    client = Client()
    client.get(f"/page?msclkid={CLICK}")
    refused = client.get(f"/probe?msclkid={CLICK}", headers={"Sec-GPC": "1"})
    assert refused.json()["click"] is None
    assert refused.json()["consent"] == "denied"
    assert refused.json()["request_consent"] == "denied"
    deletion = set_cookies(refused)[COOKIE]
    assert "Max-Age=0" in deletion
    fresh = Client().get(f"/page?msclkid={CLICK}", headers={"Sec-GPC": "1"})
    assert fresh.content == b"<html><body>click=none</body></html>"
    assert not fresh.cookies


def test_opt_in_sites_capture_nothing_until_the_consent_cookie_says_granted() -> None:
    with override_settings(MSCLKID_CONSENT_DEFAULT="denied", MSCLKID_CONSENT_COOKIE="shop_consent"):
        client = Client()
        assert client.get(f"/page?msclkid={CLICK}").content.endswith(b"click=none</body></html>")
        client.cookies["shop_consent"] = "granted"
        response = client.get(f"/page?msclkid={CLICK}")
        assert response.content.endswith(b"click=Example-123/url</body></html>")
        assert COOKIE in response.cookies


def test_a_consent_resolver_from_middleware_options_gets_request_meta() -> None:
    seen: list[Any] = []

    def resolver(meta: Any) -> bool:
        seen.append(meta)
        return meta.get("HTTP_X_CONSENT") == "yes"

    options = {"allow_insecure_cookie": True, "consent": ConsentPolicy(resolver=resolver)}
    with override_settings(MSCLKID_MIDDLEWARE_OPTIONS=options):
        assert Client().get(f"/page?msclkid={CLICK}").content.endswith(b"click=none</body></html>")
        granted = Client().get(f"/page?msclkid={CLICK}", headers={"X-Consent": "yes"})
        assert granted.content.endswith(b"click=Example-123/url</body></html>")
        async_granted = run_async(AsyncClient().get(f"/async-page?msclkid={CLICK}", headers={"X-Consent": "yes"}))
        assert async_granted.content.endswith(b"click=Example-123/url</body></html>")
    assert all(isinstance(meta, dict) and "PATH_INFO" in meta for meta in seen)


def test_a_failing_resolver_fails_closed_and_the_request_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    def resolver(meta: Any) -> bool:
        raise RuntimeError("consent manager down")

    options = {"allow_insecure_cookie": True, "consent": ConsentPolicy(resolver=resolver)}
    with override_settings(MSCLKID_MIDDLEWARE_OPTIONS=options), caplog.at_level(logging.WARNING):
        response = Client().get(f"/page?msclkid={CLICK}")
    assert response.status_code == 200
    assert response.content.endswith(b"click=none</body></html>")
    assert not response.cookies


# -- configuration --------------------------------------------------------------------------------------------


def test_without_msclkid_secret_keys_django_secret_key_signs_with_its_own_salt() -> None:
    value = Client().get(f"/page?msclkid={CLICK}").cookies[COOKIE].value
    # The WSGI middleware with Django's key verifies it: one cookie format for every adapter.
    wsgi = WsgiMiddleware(
        lambda environ, start: [start("200 OK", []) or b""] and [b"ok"],
        secret_keys=[SECRET_KEY],
        cookie_secure=False,
        allow_insecure_cookie=True,
    )
    assert wsgi.cookie.decode_newest([value]) is not None
    assert value != make_click_cookie(CLICK, SECRET_KEY, cookie_name=COOKIE)  # a fresh click time each issue


def test_msclkid_secret_keys_win_and_rotation_keeps_old_cookies() -> None:
    old = make_click_cookie(CLICK, "old-key", cookie_name=COOKIE).split("=", 1)[1].split(";", 1)[0]
    with override_settings(MSCLKID_SECRET_KEYS=["old-key", "new-key"]):
        client = Client()
        client.cookies[COOKIE] = old
        response = client.get("/page")
        assert response.content.endswith(b"click=Example-123/cookie</body></html>")
        assert COOKIE in response.cookies  # re-issued under the newest key
    with override_settings(MSCLKID_SECRET_KEYS="new-key"):
        client = Client()
        client.cookies[COOKIE] = old
        assert client.get("/page").content.endswith(b"click=none</body></html>")


def test_a_cookie_issued_by_the_wsgi_middleware_verifies_under_django() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    wsgi = WsgiMiddleware(app, secret_keys=[SECRET_KEY], cookie_secure=False, allow_insecure_cookie=True)
    response = WerkzeugClient(wsgi).get(f"/?msclkid={CLICK}")
    value = response.headers["Set-Cookie"].split(";", 1)[0].split("=", 1)[1]
    client = Client()
    client.cookies[COOKIE] = value
    assert client.get("/page").content.endswith(b"click=Example-123/cookie</body></html>")


def test_default_secure_settings_issue_the_host_prefixed_cookie_over_https() -> None:
    with override_settings(MSCLKID_COOKIE_SECURE=True, MSCLKID_MIDDLEWARE_OPTIONS={}):
        response = Client().get(f"/page?msclkid={CLICK}", secure=True)
    header = set_cookies(response)["__Host-msclkid"]
    assert "Secure" in header
    assert "Path=/" in header
    assert "Domain" not in header


def test_a_bad_setting_raises_config_error_when_django_builds_the_chain() -> None:
    with override_settings(MSCLKID_CONSENT_DEFAULT="maybe"), pytest.raises(ConfigError, match="CONSENT_DEFAULT"):
        Client().get("/page")
    with override_settings(SECRET_KEY="", MSCLKID_SECRET_KEYS=None), pytest.raises(ConfigError, match="SECRET_KEY"):
        MsclkidMiddleware(lambda request: HttpResponse("ok"))


# -- the capture endpoint and the snippet -------------------------------------------------------------------


def test_the_capture_endpoint_answers_204_with_the_cookie_for_the_same_origin() -> None:
    client = Client()
    response = client.post(
        "/_msclkid",
        data=f"msclkid={CLICK}&consent=granted",
        content_type="application/x-www-form-urlencoded",
        headers={"Sec-Fetch-Site": "same-origin"},
    )
    assert response.status_code == 204
    assert response.content == b""
    assert COOKIE in response.cookies
    assert "Content-Type" not in response
    assert client.get("/page").content.endswith(b"click=Example-123/cookie</body></html>")


def test_the_capture_endpoint_refuses_other_origins_and_large_bodies() -> None:
    cross = Client().post(
        "/_msclkid", data=f"msclkid={CLICK}", content_type="text/plain", headers={"Origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    assert not cross.cookies
    big = Client().post(
        "/_msclkid", data="x" * 5000, content_type="text/plain", headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert big.status_code == 413
    origin_ok = Client().post(
        "/_msclkid",
        data=f'{{"msclkid": "{CLICK}"}}',
        content_type="application/json",
        headers={"Origin": "http://testserver"},
    )
    assert origin_ok.status_code == 204
    assert COOKIE in origin_ok.cookies


def test_the_capture_endpoint_under_the_async_chain() -> None:
    response = run_async(
        AsyncClient().post(
            "/_msclkid",
            data=f"msclkid={CLICK}",
            content_type="application/x-www-form-urlencoded",
            headers={"Sec-Fetch-Site": "same-origin"},
        )
    )
    assert response.status_code == 204
    assert COOKIE in response.cookies


def test_the_snippet_is_served_with_caching_and_revalidation() -> None:
    client = Client()
    response = client.get("/_msclkid.js")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert int(response["Content-Length"]) == len(response.content) > 100
    again = client.get("/_msclkid.js", headers={"If-None-Match": response["ETag"]})
    assert again.status_code == 304
    assert Client().head("/_msclkid.js").content == b""
    assert Client().get("/_msclkid-sync.js").status_code == 200


def test_template_tags_render_the_snippet_and_page_tags() -> None:
    body = Client().get("/tagged").content.decode()
    assert '<script src="/_msclkid.js" async></script>' in body
    assert '<script nonce="n0nce">window.msclkid=' in body
    assert '<script src="/_msclkid.js" data-consent="pending" async nonce="n0nce"></script>' in body
    assert '<meta name="msclkid-page-load-id" content="' in body
    with override_settings(MSCLKID_SNIPPET_PATH="/assets/m.js", MSCLKID_CAPTURE_PATH="/c"):
        body = Client().get("/tagged").content.decode()
    assert '<script src="/assets/m.js" data-endpoint="/c" async></script>' in body


# -- page views, profiles --------------------------------------------------------------------------------------


@pytest.fixture
def views() -> Iterator[list[PageView]]:
    seen: list[PageView] = []
    options = {"allow_insecure_cookie": True, "on_page_view": seen.append}
    with override_settings(MSCLKID_MIDDLEWARE_OPTIONS=options):
        yield seen


UA = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"}


def test_page_views_are_reported_after_the_response_is_closed(views: list[PageView]) -> None:
    response = Client().get(f"/page?msclkid={CLICK}&utm=1", headers=UA)
    assert len(views) == 1  # the test client closes the response as a server does
    view = views[0]
    assert view.url == f"http://testserver/page?msclkid={CLICK}&utm=1"
    assert view.landing
    assert view.click is not None
    assert view.click.msclkid == CLICK
    assert view.consent.granted
    assert view.anonymous_id is not None
    assert "msclkid_vid" in response.cookies  # the visitor cookie of page-view tracking
    Client().get("/probe", headers=UA)  # JSON: not a page
    Client().get("/redirect", headers=UA)  # not a 2xx page
    Client().get("/page", headers={"User-Agent": "Googlebot/2.1"})
    Client().get("/page", headers={**UA, "Sec-Purpose": "prefetch"})
    assert len(views) == 1


def test_page_view_urls_use_only_hosts_the_site_serves() -> None:
    """Issue 19 item 9 under Django: a Host Django accepts but the site does not serve (``allowed_hosts``) puts no
    page view in the UET data."""
    seen: list[PageView] = []
    options = {"allow_insecure_cookie": True, "on_page_view": seen.append, "allowed_hosts": ["shop.example"]}
    with override_settings(MSCLKID_MIDDLEWARE_OPTIONS=options):
        Client(HTTP_HOST="shop.example").get("/page", headers=UA)
        Client(HTTP_HOST="localhost", SERVER_NAME="10.0.0.5").get("/page", headers=UA)  # in ALLOWED_HOSTS, not ours
    assert [view.url for view in seen] == ["http://shop.example/page"]


def test_streamed_and_async_page_views_are_reported_once(views: list[PageView]) -> None:
    response = Client().get("/stream", headers=UA)
    assert b"".join(response.streaming_content).endswith(b"</html>")
    assert len(views) == 1

    async def visit() -> None:
        streamed = await AsyncClient().get("/async-stream", headers=UA)
        assert [chunk async for chunk in streamed.streaming_content]
        await AsyncClient().get("/async-page", headers=UA)

    run_async(visit())
    assert [v.url for v in views] == [
        "http://testserver/stream",
        "http://testserver/async-stream",
        "http://testserver/async-page",
    ]


def test_a_refusing_visitor_is_reported_as_denied_without_identifiers(views: list[PageView]) -> None:
    Client().get(f"/page?msclkid={CLICK}", headers={**UA, "Sec-GPC": "1"})
    (view,) = views
    assert not view.consent.granted
    assert view.click is None
    assert view.anonymous_id is None


def test_a_profile_store_keeps_the_click_for_a_known_visitor() -> None:
    store = MemoryProfileStore()
    options = {
        "allow_insecure_cookie": True,
        "visitor_id": lambda meta: meta.get("HTTP_X_USER"),
        "profile_store": store,
    }
    with override_settings(MSCLKID_MIDDLEWARE_OPTIONS=options):
        Client().get(f"/page?msclkid={CLICK}", headers={"X-User": "u1"})
        saved = store.get("u1")
        assert saved is not None
        assert saved.msclkid == CLICK
        # Another device, no cookie: the profile answers (sync and async chains alike).
        assert (
            Client().get("/page", headers={"X-User": "u1"}).content.endswith(b"click=Example-123/profile</body></html>")
        )
        response = run_async(AsyncClient().get("/async-page", headers={"X-User": "u1"}))
        assert response.content.endswith(b"click=Example-123/profile</body></html>")


def test_a_broken_server_value_never_breaks_the_request(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        response = Client().get("/page", HTTP_COOKIE=f"{COOKIE}=garbage; _uetmsclkid=_uet{CLICK}")
    assert response.status_code == 200
    assert response.content.endswith(b"click=Example-123/uet_cookie</body></html>")


def test_click_times_are_aware_utc() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    client = Client()
    client.get(f"/page?msclkid={CLICK}")
    value = client.cookies[COOKIE].value
    wsgi = WsgiMiddleware(lambda e, s: [], secret_keys=[SECRET_KEY], cookie_secure=False, allow_insecure_cookie=True)
    loaded = wsgi.cookie.decode_newest([value])
    assert loaded is not None
    assert loaded.captured_at >= before
    assert loaded.captured_at.tzinfo is UTC
