"""PageLoadRecorder: page views → tracker.record_uet_event(event_type="pageLoad") → outbox → the emulator (issue 13).

Real parts only: the middleware, a ConversionTracker on a SQLite file, the emulator over loopback HTTP.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from msclkid_middleware import ConsentPolicy, MsclkidMiddleware
from msclkid_middleware.capture.clickid import Click
from msclkid_middleware.capture.consent import Consent
from msclkid_middleware.capture.pageview import PageView
from msclkid_middleware.config import Settings
from msclkid_middleware.dispatch.page_loads import PageLoadRecorder, page_load_event_id
from msclkid_middleware.dispatch.tracker import ConversionTracker
from msclkid_middleware.errors import ConfigError
from msclkid_middleware.middleware import get_page_load_id
from msclkid_middleware.testing import EmulatorHandle, run_emulator
from tests.wsgi_helpers import HEX, call, make_environ

KEYS = ["recorder-test-key-0123456789"]
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
VID = "438fd44007ba11f086535bdba1bcc1a7"


@pytest.fixture
def ms() -> Iterator[EmulatorHandle]:
    with run_emulator() as handle:
        yield handle


@pytest.fixture
def tracker(ms: EmulatorHandle, tmp_path: Path) -> Iterator[ConversionTracker]:
    t = ConversionTracker(settings=Settings.from_env(ms.env), store_url=f"sqlite:///{tmp_path / 'outbox.db'}")
    yield t
    t.close()


def shop(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/html")])
    return [f"<meta name=msclkid-page-load-id content={get_page_load_id(environ)}>".encode()]


def site(recorder: PageLoadRecorder, default: str = "granted") -> MsclkidMiddleware:
    return MsclkidMiddleware(
        shop, secret_keys=KEYS, consent=ConsentPolicy(default=default, cookie_name="consent"), on_page_view=recorder
    )


def visit(app: MsclkidMiddleware, path: str, query: str = "", cookie: str | None = None, referrer: str = "") -> str:
    headers = {"User-Agent": CHROME}
    if referrer:
        headers["Referer"] = referrer
    environ = make_environ(path, query=query, cookie=cookie, headers=headers)
    environ["REMOTE_ADDR"] = "203.0.113.9"
    result = call(app, environ)
    return str(get_page_load_id(result.environ))


def test_html_mode_records_every_page_load(ms: EmulatorHandle, tracker: ConversionTracker) -> None:
    recorder = PageLoadRecorder(tracker, mode="html")
    app = site(recorder)
    cookie = f"_uetvid={VID}"
    first = visit(app, "/", query=f"msclkid={HEX}", cookie=cookie, referrer="https://www.bing.com/")
    second = visit(
        app,
        "/mug",
        cookie=cookie + f"; __Host-msclkid={app.cookie.encode(HEX, time.time())}",
        referrer="https://shop.test/",
    )
    assert recorder.flush(10)
    recorder.close()
    assert tracker.flush().delivered == 2
    items = ms.received("uet")
    by_id = {item.payload["pageLoadId"]: item.payload for item in items}
    assert set(by_id) == {first, second}
    landing = by_id[first]
    assert landing["eventType"] == "pageLoad"
    assert landing["eventId"] == page_load_event_id(first)
    assert landing["eventSourceUrl"] == f"https://shop.test/?msclkid={HEX}"
    assert landing["referrerUrl"] == "https://www.bing.com/"
    assert landing["adStorageConsent"] == "G"
    assert landing["userData"] == {
        "anonymousId": VID,
        "msclkid": HEX,
        "clientIpAddress": "203.0.113.9",
        "clientUserAgent": CHROME,
    }
    assert "eventName" not in landing
    assert by_id[second]["userData"]["msclkid"] == HEX  # from the click cookie on a later page
    assert by_id[second]["eventSourceUrl"] == "https://shop.test/mug"
    assert all(item.outcome == "accepted" for item in items)


def test_landing_mode_records_only_ad_landings(ms: EmulatorHandle, tracker: ConversionTracker) -> None:
    recorder = PageLoadRecorder.for_mode(tracker, "landing")
    assert recorder is not None
    app = site(recorder)
    landing = visit(app, "/", query=f"msclkid={HEX}")
    visit(app, "/mug")
    visit(app, "/cart")
    assert recorder.flush(10)
    recorder.close()
    tracker.flush()
    assert [item.payload["pageLoadId"] for item in ms.received("uet")] == [landing]
    assert recorder.counts["skipped"] == 2


def test_denied_visitor_is_sent_with_d_and_a_transient_id(ms: EmulatorHandle, tracker: ConversionTracker) -> None:
    recorder = PageLoadRecorder(tracker)
    app = site(recorder, default="denied")
    visit(app, "/", query=f"msclkid={HEX}", cookie=f"_uetvid={VID}")
    visit(app, "/mug")
    assert recorder.flush(10)
    recorder.close()
    assert tracker.flush().delivered == 2
    payloads = [item.payload for item in ms.received("uet")]
    assert [p["adStorageConsent"] for p in payloads] == ["D", "D"]
    ids = [p["userData"]["anonymousId"] for p in payloads]
    assert VID not in ids
    assert ids[0] != ids[1]  # not linkable from one page to the next
    for p in payloads:
        # No click, no IP or user agent (MSCLKID_UET_DENIED_SEND_CLIENT_INFO is off), no cookie ID.
        assert set(p["userData"]) == {"anonymousId"}


def test_mode_values(tracker: ConversionTracker) -> None:
    assert PageLoadRecorder.for_mode(tracker, "off") is None
    assert PageLoadRecorder.for_mode(tracker, " OFF ") is None
    recorder = PageLoadRecorder.for_mode(tracker, "html")
    assert recorder is not None
    assert recorder.mode == "html"
    with pytest.raises(ConfigError):
        PageLoadRecorder.for_mode(tracker, "all")
    with pytest.raises(ConfigError):
        PageLoadRecorder(tracker, mode="off")  # type: ignore[arg-type]


def test_uet_tag_is_required(ms: EmulatorHandle, tmp_path: Path) -> None:
    env = {k: v for k, v in ms.env.items() if not k.startswith("UET_")}
    with (
        ConversionTracker(settings=Settings.from_env(env), store_url=f"sqlite:///{tmp_path / 'o.db'}") as t,
        pytest.raises(ConfigError, match="UET_TAG_ID"),
    ):
        PageLoadRecorder(t)


def view(**overrides: Any) -> PageView:
    fields: dict[str, Any] = {
        "url": "https://shop.test/mug",
        "page_load_id": "4f7b0c1e-7a55-4d0e-9d1b-3f2b8f1f6a10",
        "time": datetime.now(UTC),
        "consent": Consent.granted_by("cookie"),
        "anonymous_id": VID,
    }
    fields.update(overrides)
    return PageView(**fields)


def test_bad_optional_header_still_records_the_page_load(ms: EmulatorHandle, tracker: ConversionTracker) -> None:
    recorder = PageLoadRecorder(tracker)
    recorder.record(view(referrer="not a url", client_ip="999.1.1.1", click=Click(HEX, datetime.now(UTC))))
    assert tracker.flush().delivered == 1
    (item,) = ms.received("uet")
    assert "referrerUrl" not in item.payload
    assert item.payload["userData"] == {"anonymousId": VID, "msclkid": HEX}
    assert recorder.counts["recorded"] == 1


def test_the_same_view_twice_is_one_event(ms: EmulatorHandle, tracker: ConversionTracker) -> None:
    recorder = PageLoadRecorder(tracker)
    recorder.record(view())
    recorder.record(view())
    assert tracker.flush().delivered == 1
    assert len(ms.received("uet")) == 1


def test_hook_returns_at_once_while_the_outbox_is_busy(tracker: ConversionTracker) -> None:
    """The hook only queues: while the recording thread is stuck in the database, page views keep flowing."""
    recorder = PageLoadRecorder(tracker)
    gate = threading.Event()
    original = tracker.record_uet_event

    def slow_record(**fields: Any) -> Any:
        gate.wait(10)  # the outbox database is slow right now
        return original(**fields)

    tracker.record_uet_event = slow_record  # type: ignore[method-assign]
    try:
        started = time.perf_counter()
        for n in range(20):
            recorder(view(page_load_id=f"4f7b0c1e-7a55-4d0e-9d1b-{n:012x}"))
        elapsed = time.perf_counter() - started
        assert elapsed < 1.0
        assert not recorder.flush(0.05)
    finally:
        gate.set()
    assert recorder.flush(10)
    recorder.close()
    assert recorder.counts["recorded"] == 20
    assert recorder.counts["inline"] == 0


def test_full_queue_records_inline_instead_of_dropping(ms: EmulatorHandle, tracker: ConversionTracker) -> None:
    recorder = PageLoadRecorder(tracker, max_queue=1)
    gate = threading.Event()
    original = tracker.record_uet_event
    calls: list[str] = []

    def gated(**fields: Any) -> Any:
        calls.append(threading.current_thread().name)
        if threading.current_thread().name == "msclkid-uet-page-loads":
            gate.wait(10)
        return original(**fields)

    tracker.record_uet_event = gated  # type: ignore[method-assign]
    try:
        for n in range(4):
            recorder(view(page_load_id=f"4f7b0c1e-7a55-4d0e-9d1b-{n:012x}"))
    finally:
        gate.set()
    assert recorder.flush(10)
    recorder.close()
    assert recorder.counts["recorded"] == 4
    assert recorder.counts["inline"] >= 1
    assert tracker.flush().delivered == 4


def test_after_close_views_are_recorded_inline(ms: EmulatorHandle, tracker: ConversionTracker) -> None:
    recorder = PageLoadRecorder(tracker)
    assert recorder.close()
    recorder(view())
    assert recorder.counts == {"recorded": 1, "skipped": 0, "failed": 0, "inline": 1}


def test_docs_plain_wsgi_recipe_runs(ms: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The recipe in docs/uet.md, as written, against the emulator."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "uet.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    for name, value in ms.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MSCLKID_STORE_URL", f"sqlite:///{tmp_path / 'docs.db'}")
    namespace: dict[str, Any] = {}
    exec(compile(block, "docs/uet.md", "exec"), namespace)  # noqa: S102 - our own documentation
    tracker, recorder = namespace["tracker"], namespace["recorder"]
    try:
        client = Client(namespace["application"])
        client.set_cookie("site_consent", "granted", domain="shop.example")
        headers = {"User-Agent": CHROME}
        page = client.get(f"/?msclkid={HEX}", base_url="https://shop.example", headers=headers)
        html = page.get_data(as_text=True)
        page.close()  # the server closes the response after sending it: that is when the page view is reported
        assert '<meta name="msclkid-page-load-id"' in html
        vid = re.search(r'data-vid="([0-9a-f]{32})"', html)
        assert vid is not None
        assert f'data-cid="{ms.env["MSADS_CUSTOMER_ID"]}"' in html
        assert client.post("/buy", base_url="https://shop.example", headers=headers).status_code == 303
        assert recorder.flush(10)
        items = ms.wait_for_received(2, "uet")
        by_type = {item.payload["eventType"]: item.payload for item in items}
        assert by_type["pageLoad"]["eventSourceUrl"] == f"https://shop.example/?msclkid={HEX}"
        assert by_type["pageLoad"]["pageTitle"] == "Blue mug"
        for payload in by_type.values():
            assert payload["userData"]["anonymousId"] == vid.group(1)
            assert payload["userData"]["msclkid"] == HEX
    finally:
        recorder.close()
        tracker.close()
