"""The capture endpoint's per-client token bucket (issue 19 item 11): unit rules, the 429 answer, hostile clients."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msclkid_middleware import MsclkidMiddleware
from msclkid_middleware.capture.ratelimit import RateLimiter, client_key
from msclkid_middleware.config import Settings
from msclkid_middleware.errors import ConfigError
from tests.wsgi_helpers import HEX, Result, call, make_environ


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_rate() -> None:
    clock = Monotonic()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.acquire("198.51.100.1") for _ in range(3)] == [None, None, None]
    assert limiter.acquire("198.51.100.1") == 1  # empty: half a second to the next token, said as 1 s
    clock.now += 0.5
    assert limiter.acquire("198.51.100.1") is None
    assert limiter.acquire("198.51.100.1") == 1
    assert limiter.acquire("198.51.100.2") is None  # another client has its own bucket


def test_retry_after_is_the_wait_for_one_token() -> None:
    limiter = RateLimiter(rate=0.1, burst=1, clock=Monotonic())
    assert limiter.acquire("a") is None
    assert limiter.acquire("a") == 10


def test_a_clock_going_backwards_refills_nothing() -> None:
    clock = Monotonic()
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock)
    assert limiter.acquire("a") is None
    clock.now -= 3600
    assert limiter.acquire("a") is not None


def test_memory_is_bounded_by_max_clients() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, max_clients=100, clock=Monotonic())
    for n in range(10_000):
        limiter.acquire(f"10.0.{n // 256}.{n % 256}")
    assert len(limiter) == 100


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),  # one host, one bucket for its whole /64
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("fe80::1%eth0", "fe80::/64"),
        (None, ""),
        ("", ""),
        ("not an address" * 20, ("not an address" * 20)[:64]),
    ],
)
def test_client_keys(address: str | None, key: str) -> None:
    assert client_key(address) == key


@pytest.mark.parametrize(
    "options",
    [{"rate": -1}, {"rate": float("inf")}, {"rate": float("nan")}, {"rate": True}, {"burst": 0}, {"max_clients": 0}],
)
def test_bad_options_are_config_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        RateLimiter(**options)


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["a", "b", "2001:db8::1", "2001:db8::2"]), st.floats(0, 5, allow_nan=False)),
        max_size=200,
    ),
    rate=st.floats(0.05, 50),
    burst=st.integers(1, 30),
)
def test_property_no_client_gets_more_than_burst_plus_rate(
    steps: list[tuple[str, float]], rate: float, burst: int
) -> None:
    clock = Monotonic()
    start = clock.now
    limiter = RateLimiter(rate=rate, burst=burst, clock=clock)
    granted: dict[str, int] = {}
    for address, wait in steps:
        clock.now += wait
        answer = limiter.acquire(address)
        if answer is None:
            granted[client_key(address)] = granted.get(client_key(address), 0) + 1
        else:
            assert answer >= 1
    for count in granted.values():
        assert count <= burst + rate * (clock.now - start) + 1e-6


# -- on the endpoint ----------------------------------------------------------------------------------------


def post(mw: MsclkidMiddleware, address: str = "203.0.113.9") -> Result:
    environ = make_environ(
        "/_msclkid",
        method="POST",
        body=json.dumps({"msclkid": HEX}).encode(),
        content_type="application/json",
        headers={"Sec-Fetch-Site": "same-origin"},
    )
    environ["REMOTE_ADDR"] = address
    return call(mw, environ)


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return [b""]


def test_a_script_churning_the_endpoint_gets_429_with_retry_after() -> None:
    mw = MsclkidMiddleware(app, secret_keys=["k"], capture_rate=0.5, capture_burst=5)
    clock = Monotonic()
    limiter = mw.capture.endpoint.limiter
    assert limiter is not None
    limiter.clock = clock
    answers = [post(mw) for _ in range(50)]
    assert [a.code for a in answers[:5]] == [204] * 5
    refused = answers[5:]
    assert {a.code for a in refused} == {429}
    assert all(a.header_values("Retry-After") == ["2"] for a in refused)
    assert all(a.set_cookies == [] for a in refused)  # no cookie churn
    assert refused[0].body == b"too many requests\n"
    assert post(mw, "198.51.100.4").code == 204  # a neighbour is unaffected
    clock.now += 2
    assert post(mw).code == 204


def test_the_limit_comes_before_the_body_is_read() -> None:
    mw = MsclkidMiddleware(app, secret_keys=["k"], capture_rate=1.0, capture_burst=1)
    assert post(mw).code == 204
    environ = make_environ("/_msclkid", method="POST", headers={"Sec-Fetch-Site": "same-origin"})  # untouchable input
    environ["CONTENT_LENGTH"] = "20"
    environ["REMOTE_ADDR"] = "203.0.113.9"
    assert call(mw, environ).code == 429


def test_the_limit_can_be_turned_off_and_comes_from_settings() -> None:
    off = MsclkidMiddleware(app, secret_keys=["k"], capture_rate=None)
    assert off.capture.endpoint.limiter is None
    assert all(post(off).code == 204 for _ in range(100))
    settings = Settings.from_env(
        {"MSCLKID_SECRET_KEYS": "k", "MSCLKID_CAPTURE_RATE": "0.25", "MSCLKID_CAPTURE_BURST": "2"}
    )
    configured = MsclkidMiddleware.from_settings(app, settings)
    limiter = configured.capture.endpoint.limiter
    assert limiter is not None
    assert (limiter.rate, limiter.burst) == (0.25, 2)
    zero = MsclkidMiddleware.from_settings(
        app, Settings.from_env({"MSCLKID_SECRET_KEYS": "k", "MSCLKID_CAPTURE_RATE": "0"})
    )
    assert zero.capture.endpoint.limiter is None


@pytest.mark.parametrize("value", ["-1", "fast", "inf"])
def test_bad_rate_settings(value: str) -> None:
    with pytest.raises(ConfigError):
        Settings.from_env({"MSCLKID_CAPTURE_RATE": value})
