"""No secret in any log record (requests and urllib3 included, at DEBUG), exception text or repr."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import pytest

from msclkid_middleware.errors import MsclkidError
from msclkid_middleware.microsoft import RefreshTokenProvider
from msclkid_middleware.microsoft.http import BearerAuth
from msclkid_middleware.testing import run_emulator
from msclkid_middleware.tokens import FileTokenStore, StoredToken

from .conftest import make_campaign, make_provider, make_uet
from .ms_helpers import offline_items, uet_events


def test_no_secret_in_logs_exceptions_or_reprs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: requests, urllib3 and ours
    for name in ("urllib3", "requests", "msclkid_middleware"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    texts: list[str] = []
    errors: list[BaseException] = []

    def expect_failure(call: object) -> None:
        try:
            call()  # type: ignore[operator]
        except MsclkidError as exc:
            errors.append(exc)
        else:
            raise AssertionError("expected a failure")

    with run_emulator() as ms:
        store = FileTokenStore(tmp_path / "token.json")
        provider = make_provider(ms, token_store=store)
        campaign = make_campaign(ms, provider)
        uet = make_uet(ms)
        tag = ms.env["UET_TAG_ID"]
        # Successes, a refresh after 109, partial errors.
        campaign.apply_offline_conversions(offline_items(ms, 3, bad={1: "name"}))
        ms.inject_fault("offline", "expired_token", times=1)
        campaign.apply_offline_conversions(offline_items(ms, 2))
        uet.send_events(tag, uet_events(30, bad={2: "type", 5: "referrer"}))
        # Failures of every kind.
        ms.inject_fault("offline", "expired_token", times=2)
        expect_failure(lambda: campaign.apply_offline_conversions(offline_items(ms, 1)))
        ms.inject_fault("offline", "throttle", times=1)
        expect_failure(lambda: campaign.apply_offline_conversions(offline_items(ms, 1)))
        ms.inject_fault("offline", "drop", times=1)
        expect_failure(lambda: campaign.apply_offline_conversions(offline_items(ms, 1)))
        with make_campaign(ms, provider, developer_token="WRONG-DEV") as wrong:
            expect_failure(lambda: wrong.apply_offline_conversions(offline_items(ms, 1)))
        with make_uet(ms, api_token="wrong-uet-token-value") as wrong_uet:
            expect_failure(lambda: wrong_uet.send_events(tag, uet_events(1)))
        ms.inject_fault("token", "http", status=503, times=1)
        expect_failure(provider.force_refresh)
        ms.revoke_refresh_tokens()
        expect_failure(provider.force_refresh)
        bad_secret = RefreshTokenProvider(
            ms.env["MSADS_CLIENT_ID"],
            "not-the-secret",
            refresh_token="rt-bogus-value",
            token_url=ms.env["MSADS_TOKEN_URL"],
        )
        expect_failure(bad_secret.access_token)

        secrets = {
            ms.env["MSADS_CLIENT_SECRET"],
            ms.env["MSADS_DEVELOPER_TOKEN"],
            ms.env["UET_API_TOKEN"],
            "WRONG-DEV",
            "wrong-uet-token-value",
            "not-the-secret",
            "rt-bogus-value",
            *ms.emulator.world.refresh_tokens,
            *ms.emulator.world.access_tokens,
        }
        stored = store.load()
        assert stored is not None
        texts += [repr(provider), repr(campaign), repr(uet), repr(store), repr(stored), repr(BearerAuth("abcd-token"))]
        texts += [str(stored), repr(StoredToken("rt-abcd-token", 1.0))]
        secrets |= {"abcd-token", "rt-abcd-token"}

    assert len(secrets) > 8
    assert any(r.name.startswith("urllib3") for r in caplog.records), "urllib3 DEBUG logging was not captured"
    assert len(errors) == 8
    for exc in errors:
        texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc)), repr(getattr(exc, "details", ""))]
    for record in caplog.records:
        texts.append(record.getMessage())
        if record.exc_info:
            texts.append("".join(traceback.format_exception(*record.exc_info)))
    captured = capsys.readouterr()
    texts += [captured.out, captured.err, caplog.text]
    leaks = sorted({secret for secret in secrets for text in texts if secret in text})
    assert leaks == []
