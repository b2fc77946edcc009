"""``msclkid auth``: the first OAuth consent against the emulator (paste, ``--code``, listener, ``--check``)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from msclkid_middleware.cli import main
from msclkid_middleware.outbox import open_store
from msclkid_middleware.testing import EmulatorHandle

from .conftest import assert_clean, run


def _authorize(ms: EmulatorHandle, redirect_uri: str, state: str | None = None) -> str:
    """What the browser does: sign in (the emulator auto-consents) and return the redirect URL."""
    params = {
        "client_id": ms.env["MSADS_CLIENT_ID"],
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "scope": "https://ads.microsoft.com/msads.manage offline_access",
        **({"state": state} if state else {}),
    }
    answer = requests.get(
        f"{ms.url}/common/oauth2/v2.0/authorize?{urlencode(params)}", allow_redirects=False, timeout=5
    )
    assert answer.status_code in (302, 303)
    return answer.headers["Location"]


def test_auth_paste_stores_the_refresh_token_then_check_uses_it(
    env: Path, ms: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MSADS_REFRESH_TOKEN")
    redirect = "http://127.0.0.1:8400/msclkid-consent"  # registered in the emulator (loopback, any port)
    location = _authorize(ms, redirect)
    result = run("auth", "--redirect-uri", redirect, input=location + "\n")
    assert result.exit_code == 0, result.output
    assert "login" not in result.output or "oauth2/v2.0/authorize?" in result.output
    assert "refresh token stored in sqlite:///" in result.output
    code = parse_qs(urlsplit(location).query)["code"][0]
    assert_clean(result.output, ms, code)
    store = open_store(f"sqlite:///{env / 'outbox.db'}")
    try:
        stored = store.load_token("microsoft")
        assert stored is not None
        assert stored.refresh_token.startswith("rt-")
        assert stored.refresh_token not in result.output
    finally:
        store.close()
    # Without MSADS_REFRESH_TOKEN the stored grant is used: --check refreshes and reaches the account.
    check = run("auth", "--check")
    assert check.exit_code == 0, check.output
    assert "OK: the refresh token works" in check.output
    assert f"Account {ms.env['MSADS_ACCOUNT_ID']} of customer {ms.env['MSADS_CUSTOMER_ID']}" in check.output
    assert "2 offline conversion goal(s)" in check.output
    assert_clean(check.output, ms)


def test_auth_url_uses_the_sandbox_scope(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSADS_ENVIRONMENT", "sandbox")
    result = run("auth", "--code", "not-a-real-code")
    url = next(line for line in result.output.splitlines() if "authorize?" in line)
    assert parse_qs(urlsplit(url).query)["scope"] == ["https://si.ads.microsoft.com/msads.manage offline_access"]
    assert parse_qs(urlsplit(url).query)["redirect_uri"] == [
        "https://login.microsoftonline.com/common/oauth2/nativeclient"
    ]
    assert result.exit_code == 1  # the emulator does not know that code


def test_auth_with_a_code_argument_and_a_refused_redirect(env: Path, ms: EmulatorHandle) -> None:
    redirect = "http://localhost:8400/cb"
    code = parse_qs(urlsplit(_authorize(ms, redirect)).query)["code"][0]
    assert main(["auth", "--redirect-uri", redirect, "--code", code]) == 0
    # A code is single-use: redeeming it again is refused with Microsoft's reason, no traceback.
    assert main(["auth", "--redirect-uri", redirect, "--code", code]) == 1
    denied = f"{redirect}?error=access_denied&error_description=The+user+declined"
    assert main(["auth", "--redirect-uri", redirect, "--code", denied]) == 1


def test_auth_one_shot_loopback_listener(
    env: Path, ms: EmulatorHandle, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MSADS_REFRESH_TOKEN")
    outcome: list[int] = []
    worker = threading.Thread(target=lambda: outcome.append(main(["auth", "--listen", "--timeout", "20"])))
    worker.start()
    printed = ""
    deadline = time.monotonic() + 10
    while "authorize?" not in printed and time.monotonic() < deadline:
        time.sleep(0.05)
        printed += capsys.readouterr().out
    url = next(line for line in printed.splitlines() if "authorize?" in line)
    query = parse_qs(urlsplit(url).query)
    assert query["scope"] == ["https://ads.microsoft.com/msads.manage offline_access"]
    assert query["redirect_uri"][0].startswith("http://127.0.0.1:")  # the address actually bound
    # The "browser" follows Microsoft's redirect to the listener, which answers and exits.
    page = requests.get(url, timeout=10)
    assert page.status_code == 200
    assert "consent received" in page.text
    worker.join(15)
    assert outcome == [0]
    assert "Access granted" in capsys.readouterr().out
    assert main(["auth", "--check"]) == 0
