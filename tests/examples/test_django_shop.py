"""examples/django_shop: the real Django project through django.test.Client, and its one-command launcher.

The shop's own settings module is applied with ``override_settings`` over the suite's base configuration
(tests/django_setup.py): Django re-populates the apps, URLconf and templates for it.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.test import AsyncClient, Client, override_settings

from msclkid_middleware.django import close_tracker, get_tracker
from msclkid_middleware.testing import EmulatorHandle
from tests.django_setup import configure, run_async

configure()

import examples.django_shop.settings as shop_settings  # noqa: E402 - after Django is configured

ROOT = Path(__file__).resolve().parents[2]
CLICK = "f894f652ea334e739002f7167ab8f8e3"
UA = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"}


@pytest.fixture
def shop(tmp_path: Path, ms: EmulatorHandle) -> Iterator[None]:
    values: dict[str, Any] = {name: getattr(shop_settings, name) for name in dir(shop_settings) if name.isupper()}
    assert values.pop("DATABASES") == {}  # as the base's (Django warns against overriding DATABASES)
    values.update(ms.env, MSCLKID_STORE_URL=f"sqlite:///{tmp_path / 'outbox.sqlite3'}", MSCLKID_WORKER="off")
    with override_settings(**values):
        yield
    close_tracker()


def order_id(response: Any) -> str:
    assert response.status_code == 302, response.content
    match = re.fullmatch(r"/orders/(ord_[0-9a-f]{12})", response["Location"])
    assert match is not None, response["Location"]
    return match.group(1)


@pytest.mark.usefixtures("shop")
def test_an_ad_click_survives_the_redirect_and_the_sync_checkout_reports_it(ms: EmulatorHandle) -> None:
    client = Client()
    landing = client.get(f"/go?product=blue-mug&msclkid={CLICK}", headers=UA)
    assert landing.status_code == 302
    assert landing["Location"] == "/product/blue-mug"
    assert "msclkid" in landing.cookies  # set on the redirect itself
    page = client.get("/product/blue-mug", headers=UA).content.decode()
    assert f"Ad click kept: {CLICK}" in page
    assert '<script src="/_msclkid.js" async></script>' in page
    assert 'name="msclkid-page-load-id"' in page
    oid = order_id(client.post("/checkout", {"product": "blue-mug", "email": "Ann.Lee+shop@Example.com"}))
    status = get_tracker().status(oid)
    assert status.state == "pending"
    assert status.kind == "offline"
    assert "pending" in client.get(f"/orders/{oid}").content.decode()
    report = get_tracker().flush(timeout=30)
    assert report.delivered == 1
    (received,) = ms.received("offline", outcome="accepted")
    assert received.payload["MicrosoftClickId"] == CLICK
    assert received.payload["ConversionName"] == "Purchase"
    assert received.payload["ConversionValue"] == 12.5
    assert "Ann.Lee" not in str(received.payload)  # the email went hashed
    assert get_tracker().status(oid).state == "delivered"


@pytest.mark.usefixtures("shop")
def test_the_async_checkout_records_with_arecord_offline(ms: EmulatorHandle) -> None:
    async def journey() -> str:
        client = AsyncClient()
        await client.get(f"/go?product=teapot&msclkid={CLICK}", headers=UA)
        response = await client.post("/checkout-async", {"product": "teapot", "email": "bo@example.com"})
        return order_id(response)

    oid = run_async(journey())
    assert get_tracker().status(oid).state == "pending"
    assert get_tracker().flush(timeout=30).delivered == 1
    (received,) = ms.received("offline", outcome="accepted")
    assert received.payload["MicrosoftClickId"] == CLICK
    assert received.payload["ConversionValue"] == 49.95


@pytest.mark.usefixtures("shop")
@pytest.mark.parametrize("refusal", ["banner", "gpc"])
def test_a_refusing_visitor_is_not_tracked_and_the_sale_is_never_sent(ms: EmulatorHandle, refusal: str) -> None:
    client = Client()
    headers = {**UA, "Sec-GPC": "1"} if refusal == "gpc" else UA
    client.get(f"/go?product=tea-tin&msclkid={CLICK}", headers=headers)
    if refusal == "banner":
        answer = client.post("/consent", {"choice": "denied", "next": "/product/tea-tin"})
        assert answer.status_code == 302
        assert answer["Location"] == "/product/tea-tin"
    page = client.get("/product/tea-tin", headers=headers)
    assert "Ad click kept" not in page.content.decode()
    assert 'class="banner"' not in page.content.decode() or refusal == "gpc"
    if refusal == "banner":
        assert "Max-Age=0" in page.cookies["msclkid"].output()  # the click cookie set on landing is deleted
    else:
        assert "msclkid" not in client.cookies  # nothing was ever stored
    oid = order_id(client.post("/checkout", {"product": "tea-tin", "email": "cy@example.com"}, headers=headers))
    assert get_tracker().status(oid).state == "suppressed"
    get_tracker().flush(timeout=30)
    assert ms.received("offline") == []


@pytest.mark.usefixtures("shop")
def test_a_visitor_without_a_click_is_matched_by_hashed_email_and_bad_input_is_refused() -> None:
    client = Client()
    oid = order_id(client.post("/checkout", {"product": "blue-mug", "email": "dee@example.com"}))
    assert get_tracker().status(oid).state == "pending"
    assert client.post("/checkout", {"product": "blue-mug", "email": ""}).status_code == 400
    assert client.get("/checkout").status_code == 405
    assert client.get("/orders/ord_000000000000").status_code == 404
    assert client.get("/product/nothing").status_code == 404
    # An off-site "next" after the banner goes home instead.
    assert client.post("/consent", {"choice": "granted", "next": "https://evil.example/"})["Location"] == "/"


@pytest.mark.usefixtures("shop")
def test_the_shop_passes_the_system_checks() -> None:
    from django.core import checks

    assert [m.id for m in checks.run_checks(tags=["msclkid"])] == []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_one_command_runs_the_shop_with_the_emulator(tmp_path: Path) -> None:
    """``python -m examples.django_shop``: runserver on loopback, the emulator, a delivery thread."""
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MSCLKID_", "MSADS_", "UET_", "DJANGO_"))},
        "MSCLKID_DJANGO_SHOP_PORT": str(port),
        "MSCLKID_DJANGO_SHOP_DIR": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "examples.django_shop"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                landing = requests.get(f"{base}/go?product=blue-mug&msclkid={CLICK}", timeout=5, allow_redirects=False)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the shop did not start"
                time.sleep(0.2)
        assert landing.status_code == 302
        assert "msclkid=" in landing.headers["Set-Cookie"]
        page = requests.get(f"{base}/product/blue-mug", cookies=landing.cookies, timeout=5)
        assert f"Ad click kept: {CLICK}" in page.text
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=15)
    assert f"Shop URL: http://127.0.0.1:{port}/" in out
    assert "Emulator dashboard URL: http://127.0.0.1:" in out
