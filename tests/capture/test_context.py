"""capture/context.py and its wiring (issue 19 item 1): ``record_*`` without ``consent=`` inside a request uses
that request's decision; outside any request the configured default applies.

A refusing visitor (``Sec-GPC: 1``, the site's consent cookie saying no) must stay refused whether the request
carried a click (a Decision) or nothing of ours (the cheap plain path), in threads and async tasks alike.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msclkid_middleware import ConsentPolicy, MsclkidMiddleware, get_click, get_consent
from msclkid_middleware.capture.consent import Consent
from msclkid_middleware.capture.context import enter_request, leave_request, request_consent
from msclkid_middleware.config import Settings
from msclkid_middleware.dispatch.status import EventStatus
from msclkid_middleware.dispatch.tracker import ConversionTracker
from tests.wsgi_helpers import HEX, call, make_environ

EMAIL = "ana@example.com"
StartResponse = Callable[..., Any]


@pytest.fixture
def tracker(tmp_path: Path) -> Iterator[ConversionTracker]:
    # An opt-out site (default granted): exactly where a forgotten consent= used to send a refuser's data.
    settings = Settings(consent_default="granted", uet_tag_id="343001234")
    t = ConversionTracker(
        settings=settings, store_url=f"sqlite:///{tmp_path / 'outbox.db'}", microsoft=False, uet=False
    )
    yield t
    t.close()


def checkout_app(tracker: ConversionTracker, results: list[EventStatus]) -> Callable[..., Iterable[bytes]]:
    """A checkout handler as README shows it: no consent= argument."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        now = datetime.now(UTC)
        results.append(
            tracker.record_offline(
                event_id=f"ord-{len(results)}",
                conversion_name="Purchase",
                conversion_time=now - timedelta(minutes=5),
                value=10.0,
                currency="USD",
                click=get_click(environ) or HEX,
                email=EMAIL,
            )
        )
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return app


def wrap(app: Callable[..., Iterable[bytes]], **options: Any) -> MsclkidMiddleware:
    options.setdefault("consent", ConsentPolicy(default="granted", cookie_name="site_consent"))
    return MsclkidMiddleware(app, secret_keys=["k"], **options)


VISITORS = [
    pytest.param({"headers": {"Sec-GPC": "1"}}, "gpc", id="gpc"),
    pytest.param({"cookie": "site_consent=denied"}, "cookie", id="consent-cookie"),
    pytest.param({"cookie": "site_consent=no; theme=dark"}, "cookie", id="consent-cookie-among-others"),
    pytest.param({"headers": {"Sec-GPC": "1"}, "query": f"msclkid={HEX}"}, "gpc", id="gpc-landing"),
    pytest.param({"cookie": "site_consent=denied", "query": f"msclkid={HEX}"}, "cookie", id="cookie-landing"),
]


@pytest.mark.parametrize(("request_kwargs", "basis"), VISITORS)
@pytest.mark.parametrize("tracking", [False, True], ids=["plain-path", "tracking"])
def test_a_refusing_visitor_stays_refused_without_consent_argument(
    tracker: ConversionTracker, request_kwargs: dict[str, Any], basis: str, tracking: bool
) -> None:
    results: list[EventStatus] = []
    options = {"on_page_view": lambda view: None} if tracking else {}
    result = call(wrap(checkout_app(tracker, results), **options), make_environ("/checkout", **request_kwargs))
    assert result.code == 200
    [status] = results
    assert status.state == "suppressed"  # nothing to send: the click and the email were dropped
    [row] = tracker.store.find(status.event_id)
    assert row.consent["state"] == "denied"
    assert row.consent["basis"] == basis
    assert "MicrosoftClickId" not in row.payload
    assert "HashedEmailAddress" not in row.payload


def test_a_granting_visitor_records_with_the_request_basis(tracker: ConversionTracker) -> None:
    results: list[EventStatus] = []
    app = wrap(checkout_app(tracker, results))
    call(app, make_environ("/checkout", cookie="site_consent=granted", query=f"msclkid={HEX}"))
    [row] = tracker.store.find(results[0].event_id)
    assert (row.consent["state"], row.consent["basis"]) == ("granted", "cookie")
    assert row.payload["MicrosoftClickId"] == HEX


def test_an_explicit_consent_argument_still_wins(tracker: ConversionTracker) -> None:
    seen: list[EventStatus] = []

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        seen.append(
            tracker.record_offline(
                "ord-x", "Purchase", datetime.now(UTC) - timedelta(minutes=1), click=HEX, consent=Consent.granted_by()
            )
        )
        start_response("204 No Content", [])
        return []

    call(wrap(app), make_environ("/", headers={"Sec-GPC": "1"}))
    [row] = tracker.store.find(seen[0].event_id)
    assert row.consent["basis"] == "explicit"


def test_outside_any_request_the_configured_default_applies(tracker: ConversionTracker) -> None:
    assert request_consent() is None
    status = tracker.record_offline("ord-out", "Purchase", datetime.now(UTC) - timedelta(minutes=1), click=HEX)
    [row] = tracker.store.find(status.event_id)
    assert (row.consent["state"], row.consent["basis"]) == ("granted", "default")


def test_the_bracket_closes_even_when_the_app_raises(tracker: ConversionTracker) -> None:
    def broken(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        assert request_consent() == Consent.denied_by("gpc")
        raise RuntimeError("app bug")

    with pytest.raises(RuntimeError):
        call(wrap(broken), make_environ("/", headers={"Sec-GPC": "1"}))
    assert request_consent() is None  # no leak into whatever this thread handles next


def test_the_plain_path_decides_nothing_unless_asked() -> None:
    calls: list[object] = []

    def resolver(environ: object) -> None:
        calls.append(environ)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        return [b""]

    middleware = MsclkidMiddleware(app, secret_keys=["k"], consent=ConsentPolicy(resolver=resolver))
    call(middleware, make_environ("/"))
    assert calls == []  # a request whose app records nothing never runs the consent policy


def test_a_resolver_is_asked_once_for_several_records(tracker: ConversionTracker) -> None:
    calls: list[object] = []

    def resolver(environ: object) -> bool:
        calls.append(environ)
        return False

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        for n in range(3):
            tracker.record_offline(f"o{n}", "Purchase", datetime.now(UTC) - timedelta(minutes=1), click=HEX)
        start_response("200 OK", [])
        return [b""]

    call(MsclkidMiddleware(app, secret_keys=["k"], consent=ConsentPolicy(resolver=resolver)), make_environ("/"))
    assert len(calls) == 1
    assert all(r.consent["basis"] == "resolver" for r in (tracker.store.find(f"o{n}")[0] for n in range(3)))


def test_a_failing_source_is_a_refusal() -> None:
    def source() -> Consent:
        raise RuntimeError("broken")

    token = enter_request(source)
    try:
        assert request_consent() == Consent.denied_by("default")
    finally:
        leave_request(token)


def test_a_request_whose_state_key_vanished_is_refused(tracker: ConversionTracker) -> None:
    results: list[EventStatus] = []
    inner = checkout_app(tracker, results)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        environ.pop("msclkid.state", None)  # an app (or a bug) that rebuilt the environ
        return inner(environ, start_response)

    call(wrap(app), make_environ("/checkout"))
    [row] = tracker.store.find(results[0].event_id)
    assert row.consent["state"] == "denied"  # never the granting default


def test_threads_each_see_their_own_request(tracker: ConversionTracker) -> None:
    barrier = threading.Barrier(2)
    seen: dict[str, Consent | None] = {}

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        barrier.wait(5)  # both requests are inside the middleware at once
        seen[environ["PATH_INFO"]] = request_consent()
        start_response("200 OK", [])
        return [b""]

    middleware = wrap(app)
    refused = threading.Thread(target=call, args=(middleware, make_environ("/gpc", headers={"Sec-GPC": "1"})))
    granted = threading.Thread(target=call, args=(middleware, make_environ("/ok", cookie="site_consent=yes")))
    for t in (refused, granted):
        t.start()
    for t in (refused, granted):
        t.join(10)
    assert seen == {"/gpc": Consent.denied_by("gpc"), "/ok": Consent.granted_by("cookie")}


def test_async_tasks_and_worker_threads_carry_the_request(tracker: ConversionTracker) -> None:
    async def handler() -> tuple[Consent | None, str]:
        inline = request_consent()
        status = await tracker.arecord_offline("a1", "Purchase", datetime.now(UTC) - timedelta(minutes=1), click=HEX)
        return inline, status.event_id

    async def main() -> list[tuple[Consent | None, str]]:
        async def one(source: Consent) -> tuple[Consent | None, str]:
            token = enter_request(lambda: source)
            try:
                return await handler()
            finally:
                leave_request(token)

        return [await asyncio.create_task(one(Consent.denied_by("gpc")))]

    # A fresh thread: a suite that ran a synchronous browser driver first may leave a loop running in this one.
    results: list[list[tuple[Consent | None, str]]] = []
    runner = threading.Thread(target=lambda: results.append(asyncio.run(main())))
    runner.start()
    runner.join(30)
    [[(inline, event_id)]] = results
    assert inline == Consent.denied_by("gpc")
    [row] = tracker.store.find(event_id)
    assert row.consent["basis"] == "gpc"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    gpc=st.sampled_from([None, "1", " 1", "0", "", "yes"]),
    cookie=st.sampled_from([None, "site_consent=denied", "site_consent=granted", "site_consent=???", "x=1"]),
    query=st.sampled_from(["", f"msclkid={HEX}", "msclkid=%00", "MSCLKID=" + "a" * 80]),
)
def test_property_record_follows_get_consent(
    tracker: ConversionTracker, gpc: str | None, cookie: str | None, query: str
) -> None:
    """Whatever the request, an omitted consent= records exactly what get_consent says for that request."""
    seen: list[tuple[Consent | None, EventStatus]] = []

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        when = datetime.now(UTC) - timedelta(minutes=1)
        # A click of its own: Microsoft's key (click, goal, time) would make a same-second repeat a duplicate.
        status = tracker.record_offline(f"p-{uuid.uuid4()}", "Purchase", when, click=uuid.uuid4().hex)
        seen.append((get_consent(environ), status))
        start_response("200 OK", [])
        return [b""]

    headers = {"Sec-GPC": gpc} if gpc is not None else {}
    call(wrap(app), make_environ("/", headers=headers, cookie=cookie, query=query))
    [(decision, status)] = seen
    assert decision is not None
    [row] = tracker.store.find(status.event_id)
    assert (row.consent["state"], row.consent["basis"]) == (decision.state, decision.basis)
