from __future__ import annotations

from collections import Counter

import pytest

from msclkid_middleware.errors import AuthenticationError, ConfigError, TransientError
from msclkid_middleware.microsoft import RetryPolicy, UetClient
from msclkid_middleware.testing import EmulatorHandle

from .conftest import make_uet
from .ms_helpers import uet_events

TYPE_ERROR = ("InvalidEnumValue", "eventType")
TIME_ERROR = ("InvalidEventTime", "eventTime")


def expected_outcome(kind: str | None) -> tuple[str, tuple[str, str] | None]:
    if kind == "type":
        return "rejected", TYPE_ERROR
    if kind == "time":
        return "rejected", TIME_ERROR
    return "delivered", None


def check(results: list, events: list, bad: dict[int, str]) -> None:
    assert [r.index for r in results] == list(range(len(events)))
    assert [r.event_id for r in results] == [e["eventId"] for e in events]
    for result in results:
        status, error = expected_outcome(bad.get(result.index))
        assert result.status == status, result
        if error:
            assert (result.error_code, result.property_name) == error
            assert result.message
        else:
            assert result.error_code is None


@pytest.mark.parametrize("keep_going", [False, True], ids=["strict", "continue-on-validation-error"])
def test_more_than_ten_invalid_events_in_1000_each_get_their_own_outcome(ms: EmulatorHandle, keep_going: bool) -> None:
    bad = {i: ("type" if i % 2 else "time") for i in (3, 50, 51, 99, 100, 250, 333, 400, 401, 402, 500, 640, 700,
                                                        777, 800, 850, 901, 950, 998, 999, 0, 1, 2, 5, 17)}  # fmt: skip
    events = uet_events(1000, bad=bad)
    with make_uet(ms, continue_on_validation_error=keep_going) as client:
        results = client.send_events(ms.env["UET_TAG_ID"], events)
    check(results, events, bad)
    # Every valid event reached Microsoft exactly once as accepted; no invalid one did.
    accepted = Counter(r.payload["eventId"] for r in ms.received("uet") if r.outcome in ("accepted", "duplicate"))
    assert set(accepted) == {e["eventId"] for i, e in enumerate(events) if i not in bad}
    if not keep_going:
        assert set(accepted.values()) == {1}  # strict mode never resends an accepted event
    bodies = ms.requests("uet")
    assert all(r.items <= 1000 for r in bodies)


def test_strict_mode_rounds_are_bounded(ms: EmulatorHandle, uet: UetClient) -> None:
    bad = dict.fromkeys(range(0, 1000, 40), "type")  # 25 invalid events: three 400s of ten, then one 200
    results = uet.send_events(ms.env["UET_TAG_ID"], uet_events(1000, bad=bad))
    assert Counter(r.status for r in results) == {"delivered": 975, "rejected": 25}
    assert [r.status for r in ms.requests("uet")] == [400, 400, 400, 200]


def test_warnings_are_recorded_on_delivered_events(ms: EmulatorHandle, uet: UetClient) -> None:
    bad = {1: "referrer", 4: "referrer", 2: "type"}
    results = uet.send_events(ms.env["UET_TAG_ID"], uet_events(6, bad=bad))
    assert [r.status for r in results] == ["delivered", "delivered", "rejected", "delivered", "delivered", "delivered"]
    for index in (1, 4):
        assert [(w.error_code, w.property_name, w.is_warning) for w in results[index].warnings] == [
            ("InvalidUrl", "referrerUrl", True)
        ]
    assert results[0].warnings == ()


def test_a_400_naming_no_error_is_bisected(ms: EmulatorHandle, uet: UetClient) -> None:
    # Twelve warnings come first, so the 400's ten details name no error at all: the client must bisect.
    bad = dict.fromkeys(range(12), "referrer") | {37: "type"}
    events = uet_events(40, bad=bad)
    results = uet.send_events(ms.env["UET_TAG_ID"], events)
    check(results, events, {37: "type"})
    # Warnings past Microsoft's ten-detail cap are never shown for a delivered event: only 0-9 are known.
    assert all(results[i].warnings for i in range(10))
    assert len(ms.requests("uet")) > 2


def test_batches_of_at_most_1000(ms: EmulatorHandle, uet: UetClient) -> None:
    results = uet.send_events(ms.env["UET_TAG_ID"], uet_events(2100))
    assert all(r.delivered for r in results)
    assert [r.items for r in ms.requests("uet")] == [1000, 1000, 100]


def test_body_shape_and_headers(ms: EmulatorHandle) -> None:
    import json

    import requests

    sent: list[requests.PreparedRequest] = []
    with make_uet(ms, data_provider="shop-1.0") as client:
        client.session.hooks["response"].append(lambda response, **_: sent.append(response.request))
        client.send_events(ms.env["UET_TAG_ID"], uet_events(2))
    request = sent[0]
    body = json.loads(request.body)  # type: ignore[arg-type]
    assert set(body) == {"data", "dataProvider", "continueOnValidationError"}
    assert (body["dataProvider"], body["continueOnValidationError"]) == ("shop-1.0", False)
    assert request.headers["Authorization"] == f"Bearer {ms.env['UET_API_TOKEN']}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("msclkid-middleware/")
    assert request.url == f"{ms.env['UET_API_URL']}/v1/{ms.env['UET_TAG_ID']}/events"


def test_401_is_an_authentication_error(ms: EmulatorHandle) -> None:
    with make_uet(ms, api_token="wrong-token") as client, pytest.raises(AuthenticationError) as info:
        client.send_events(ms.env["UET_TAG_ID"], uet_events(3))
    assert info.value.status == 401
    assert "wrong-token" not in str(info.value)
    assert RetryPolicy().classify(info.value, 1, refreshed=True).action == "terminal"


def test_per_tag_tokens(ms: EmulatorHandle) -> None:
    ms.add_uet_tag("555000111", "second-tag-token")
    tokens = {ms.env["UET_TAG_ID"]: ms.env["UET_API_TOKEN"], "555000111": "second-tag-token"}
    with make_uet(ms, api_token=tokens) as client:
        assert all(r.delivered for r in client.send_events("555000111", uet_events(2)))
        assert all(r.delivered for r in client.send_events(int(ms.env["UET_TAG_ID"]), uet_events(2)))
        with pytest.raises(ConfigError, match="no UET API token"):
            client.send_events("777", uet_events(1))


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        ({"kind": "http", "status": 500}, 500),
        ({"kind": "http", "status": 503}, 503),
        ({"kind": "throttle", "retry_after": 9}, 429),
        ({"kind": "drop"}, None),
    ],
    ids=["500", "503", "429", "dropped"],
)
def test_transient_failures(ms: EmulatorHandle, uet: UetClient, fault: dict, status: int | None) -> None:
    ms.inject_fault("uet", times=1, **fault)
    with pytest.raises(TransientError) as info:
        uet.send_events(ms.env["UET_TAG_ID"], uet_events(3))
    assert info.value.status == status
    if status == 429:
        assert info.value.retry_after == 9.0
    assert RetryPolicy().classify(info.value, 1).action == "retry"
    assert all(r.delivered for r in uet.send_events(ms.env["UET_TAG_ID"], uet_events(3)))


def test_expired_token_fault_is_401(ms: EmulatorHandle, uet: UetClient) -> None:
    ms.inject_fault("uet", "expired_token", times=1)
    with pytest.raises(AuthenticationError):
        uet.send_events(ms.env["UET_TAG_ID"], uet_events(1))


def test_empty_input_and_bad_tag(ms: EmulatorHandle, uet: UetClient) -> None:
    assert uet.send_events(ms.env["UET_TAG_ID"], []) == []
    with pytest.raises(ConfigError):
        uet.send_events(" ", uet_events(1))
    with pytest.raises(ConfigError):
        UetClient(api_token="")


def test_a_400_that_is_not_microsofts_validation_answer_is_not_bisected(ms: EmulatorHandle, uet: UetClient) -> None:
    from msclkid_middleware.errors import ApiFault

    ms.inject_fault("uet", "malformed", status=400, times=1)  # an HTML 400 from something in between
    with pytest.raises(ApiFault) as info:
        uet.send_events(ms.env["UET_TAG_ID"], uet_events(8))
    assert info.value.status == 400
    assert len(ms.requests("uet")) == 1


def test_from_settings(ms: EmulatorHandle) -> None:
    from msclkid_middleware.config import Settings

    client = UetClient.from_settings(Settings.from_env(ms.env))
    assert all(r.delivered for r in client.send_events(ms.env["UET_TAG_ID"], uet_events(1)))
    with pytest.raises(ConfigError, match="UET_API_TOKEN"):
        UetClient.from_settings(Settings())


def test_every_event_gets_its_own_outcome_for_any_mix_of_problems() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from msclkid_middleware.testing import run_emulator

    kinds = st.sampled_from(["type", "time", "referrer"])
    with run_emulator() as ms, make_uet(ms) as client:
        tag = ms.env["UET_TAG_ID"]

        @settings(max_examples=25, deadline=None)
        @given(size=st.integers(min_value=1, max_value=120), data=st.data())
        def check_mix(size: int, data: st.DataObject) -> None:
            bad = data.draw(st.dictionaries(st.integers(min_value=0, max_value=size - 1), kinds, max_size=size))
            events = uet_events(size, bad=bad)
            errors_only = {i: k for i, k in bad.items() if k != "referrer"}
            before = len(ms.requests("uet"))
            results = client.send_events(tag, events)
            check(results, events, errors_only)
            # Bounded: one round per ten errors plus bisection, never more than ~3 requests per event.
            assert len(ms.requests("uet")) - before <= 3 * size + 2

        check_mix()
