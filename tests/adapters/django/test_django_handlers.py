"""Under Django's real ASGIHandler (raw ASGI messages, as uvicorn would send them), and details of the cookies."""

from __future__ import annotations

import asyncio
import pickle
from typing import Any

from django.core.handlers.asgi import ASGIHandler
from django.test import Client, override_settings

from msclkid_middleware.capture.pageview import PageView
from msclkid_middleware.django import get_tracker
from tests.django_setup import run_async

CLICK = "Example-123"
UA = (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")


def scope(
    path: str, query: bytes = b"", method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"testserver"), UA, *(headers or [])],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


def serve(request_scope: dict[str, Any], body: bytes = b"", log: list[str] | None = None) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []

    async def run() -> None:
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client never disconnects
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            messages.append(message)
            if log is not None:
                log.append(message["type"] + ("" if message.get("more_body") else ".last"))

        await ASGIHandler()(request_scope, receive, send)

    run_async(run())
    return messages


def set_cookies(messages: list[dict[str, Any]]) -> list[bytes]:
    start = messages[0]
    assert start["type"] == "http.response.start"
    return [value for name, value in start["headers"] if name.lower() == b"set-cookie"]


def test_the_asgi_handler_sends_our_cookie_and_the_body_unchanged() -> None:
    messages = serve(scope("/page", b"msclkid=" + CLICK.encode()))
    (cookie,) = set_cookies(messages)
    assert cookie.startswith(b"msclkid=1.Example-123.")
    assert b"; HttpOnly" in cookie
    body = b"".join(m.get("body", b"") for m in messages[1:])
    assert body == b"<html><body>click=Example-123/url</body></html>"


def test_a_streamed_async_body_under_the_asgi_handler_reports_its_page_view_after_the_last_byte() -> None:
    log: list[str] = []

    def hook(view: PageView) -> None:
        log.append(f"page view {view.url}")

    with override_settings(MSCLKID_MIDDLEWARE_OPTIONS={"allow_insecure_cookie": True, "on_page_view": hook}):
        messages = serve(scope("/async-stream", b"msclkid=" + CLICK.encode()), log=log)
    assert len(set_cookies(messages)) == 2  # the click cookie and the visitor cookie
    assert log.index("page view http://testserver/async-stream?msclkid=Example-123") > log.index(
        "http.response.body.last"
    )


def test_the_capture_endpoint_reads_a_body_without_content_length_under_asgi() -> None:
    headers = [(b"sec-fetch-site", b"same-origin"), (b"content-type", b"application/x-www-form-urlencoded")]
    messages = serve(scope("/_msclkid", method="POST", headers=headers), body=b"msclkid=" + CLICK.encode())
    assert messages[0]["status"] == 204
    (cookie,) = set_cookies(messages)
    assert cookie.startswith(b"msclkid=1.Example-123.")


def test_our_cookie_survives_pickling_as_the_cache_framework_does() -> None:
    response = Client().get(f"/page?msclkid={CLICK}")
    morsel = response.cookies["msclkid"]
    exact = morsel.output(header="").strip()
    restored = pickle.loads(pickle.dumps(morsel))  # noqa: S301 - our own object
    assert restored.value == morsel.value
    assert restored.output(header="").strip().split(";")[0] == exact.split(";")[0]


def test_changing_a_setting_forgets_the_shared_tracker() -> None:
    tracker = get_tracker()
    assert get_tracker() is tracker
    with override_settings(MSADS_CONVERSION_GOALS=["Lead"]):
        changed = get_tracker()
        assert changed is not tracker
        assert changed.goals == ("Lead",)
