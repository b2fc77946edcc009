"""S6: secrets stay out of logs, errors, reprs, outbox rows and CLI output.

The autouse ``secret_canary`` fixture (``tests/conftest.py``) checks every test of the suite; the
tests here drive the paths most likely to leak (every failure kind of dispatch and refresh, the
emulator's dropped connections, the CLI) and prove that the canary itself notices a leak.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from msclkid_middleware.cli import cli
from msclkid_middleware.config import PRODUCTION_SCOPE
from msclkid_middleware.testing import run_emulator

from .conftest import FakeClock, make_tracker, record

pytestmark = pytest.mark.reliability


def test_dropped_token_requests_never_echo_the_body_into_the_log(secret_canary: Any) -> None:
    # Regression: a dropped connection left the form body (client_secret, refresh_token) in the
    # server's read buffer; it was parsed as the next request and logged as "Bad request syntax".
    with run_emulator() as ms:
        ms.inject_fault("token", "drop", times=20)
        form = {
            "grant_type": "refresh_token",
            "client_id": ms.env["MSADS_CLIENT_ID"],
            "client_secret": ms.env["MSADS_CLIENT_SECRET"],
            "refresh_token": ms.env["MSADS_REFRESH_TOKEN"],
            "scope": PRODUCTION_SCOPE,
        }
        with requests.Session() as session:
            for _ in range(20):
                with pytest.raises(requests.ConnectionError):
                    session.post(ms.token_url, data=form, timeout=5)
            answer = session.post(ms.token_url, data=form, timeout=5)
        assert answer.status_code == 200, answer.text
    bad = [r for r in secret_canary.handler.records if "Bad request" in r.getMessage()]
    assert bad == []


def test_every_dispatch_failure_path_keeps_secrets_out(store_url: str, secret_canary: Any) -> None:
    with run_emulator() as ms:
        clock = FakeClock()
        tracker = make_tracker(ms, store_url, clock, batch_size=5)
        for n in range(30):
            record(tracker, n)
        for kind, options in [
            ("drop", {}),
            ("http", {"status": 500}),
            ("malformed", {}),
            ("throttle", {"retry_after": 1}),
            ("expired_token", {}),
            ("partial_errors", {"indexes": [0], "code": 5604}),
        ]:
            ms.inject_fault("offline", kind, times=1, **options)
        ms.inject_fault("token", "http", status=503, times=1)
        for _ in range(12):
            tracker.dispatcher.step()
            clock.advance(120)
        ms.revoke_refresh_tokens()
        ms.expire_access_tokens()
        for n in range(30, 35):
            record(tracker, n)
        for _ in range(3):
            tracker.dispatcher.step()  # invalid_grant: paused for re-consent
            clock.advance(120)
        assert {r.state for n in range(30, 35) for r in tracker.store.find(f"ord_{n}")} == {"paused"}
        tracker.close()
        secret_canary.add(*ms.emulator.world.refresh_tokens)
    # The canary verifies logs, errors, reprs and the outbox rows at teardown.


def test_cli_output_carries_no_secret(store_url: str, secret_canary: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with run_emulator() as ms:
        tracker = make_tracker(ms, store_url)
        record(tracker, 1)
        record(tracker, 2)
        tracker.close()
        ms.inject_fault("offline", "partial_errors", indexes=[1], code=5604, times=1)  # ord_2: rejected
        for name, value in {**ms.env, "MSCLKID_STORE_URL": store_url}.items():
            monkeypatch.setenv(name, value)
        runner = CliRunner()
        for args in (["flush"], ["status"], ["status", "ord_1"], ["status", "ord_2"], ["retry-dead"], ["status"]):
            result = runner.invoke(cli, args)
            assert result.exit_code == 0, result.output
            secret_canary.check(result.output, f"msclkid {' '.join(args)}")


def test_the_canary_notices_a_leak(secret_canary: Any) -> None:
    logger = logging.getLogger("reliability.leaky")
    canary = type(secret_canary)()
    canary.handler.records.append(
        logger.makeRecord("x", logging.ERROR, __file__, 1, "token=%s", (canary.uet_token,), None)
    )
    with pytest.raises(AssertionError, match="leaked into a log record"):
        canary.verify()
    url_encoded = type(secret_canary)()
    url_encoded.add("secret with spaces/and+plus")
    with pytest.raises(AssertionError, match="leaked into CLI"):
        url_encoded.check("?s=secret%20with%20spaces%2Fand%2Bplus", "CLI output")


@pytest.mark.secret_canary_allow("shown-on-purpose-value")
def test_a_test_may_show_a_value_on_purpose(secret_canary: Any) -> None:
    secret_canary.add("shown-on-purpose-value")
    print("shown-on-purpose-value")  # a probe that prints its settings, say
    secret_canary.check("shown-on-purpose-value", "stdout")
