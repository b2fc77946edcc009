"""``msclkid auth``: the first OAuth consent against the emulator (paste, ``--code``, listener, ``--check``)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from msclkid_middleware.cli import main
from msclkid_middleware.cli.auth import _printable
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


# -- issue 19 item 7: the loopback listener under hostile requests ------------------------------------------------


def _start_listener(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[threading.Thread, list[int], str, str]:
    """Run ``msclkid auth --listen`` in a thread; return it, its exit code holder, the sign-in URL and the
    listener's redirect URI."""
    outcome: list[int] = []
    worker = threading.Thread(target=lambda: outcome.append(main(["auth", "--listen", *args])))
    worker.start()
    printed = ""
    deadline = time.monotonic() + 10
    while "authorize?" not in printed and time.monotonic() < deadline:
        time.sleep(0.05)
        printed += capsys.readouterr().out
    url = next(line for line in printed.splitlines() if "authorize?" in line)
    return worker, outcome, url, parse_qs(urlsplit(url).query)["redirect_uri"][0]


def test_listener_answers_a_foreign_redirect_400_and_keeps_waiting(
    env: Path, ms: EmulatorHandle, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MSADS_REFRESH_TOKEN")
    worker, outcome, url, redirect = _start_listener(capsys, "--timeout", "20")
    # Another page (or process) on this machine races the real redirect: wrong or missing state.
    for query in (
        "code=attacker-code&state=wrong",
        "code=attacker-code",
        "error=access_denied&error_description=stop&state=wrong",
        "error=access_denied",
        "code=x&state=" + "A" * 5000,
    ):
        answer = requests.get(f"{redirect}?{query}", timeout=5)
        assert answer.status_code == 400, query
        assert "does not belong" in answer.text
    assert requests.get(f"{redirect}favicon.ico", timeout=5).status_code == 404
    assert worker.is_alive()  # still waiting for the real one
    assert requests.get(url, timeout=10).status_code == 200  # the browser follows Microsoft's redirect
    worker.join(15)
    assert outcome == [0]


def test_listener_timeout_holds_against_a_silent_client(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MSADS_REFRESH_TOKEN")
    started = time.monotonic()
    worker, outcome, _, redirect = _start_listener(capsys, "--timeout", "1.5")
    port = int(urlsplit(redirect).port or 0)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as silent:
        silent.sendall(b"GET /?code=")  # a request line that never ends
        worker.join(10)
    assert not worker.is_alive()
    assert outcome == [1]
    assert time.monotonic() - started < 8
    assert "no redirect arrived within 1.5 s" in capsys.readouterr().err


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "inf"])
def test_a_timeout_must_be_positive(env: Path, timeout: str) -> None:
    assert run("auth", "--listen", "--timeout", timeout).exit_code == 2


def test_network_text_reaches_the_terminal_without_control_characters(env: Path) -> None:
    redirect = "http://localhost:8400/cb"
    hostile = quote("\x1b]0;pwned\x07\x1b[2J\r\nAccess granted: refresh token stored\x9b31m")
    result = run(
        "auth", "--redirect-uri", redirect, "--code", f"{redirect}?error=ac%1Bcess&error_description={hostile}"
    )
    assert result.exit_code == 1
    assert "Microsoft refused the consent" in result.output
    assert not any(ord(ch) < 0x20 and ch != "\n" for ch in result.output)
    assert "\x1b" not in result.output
    assert "\x9b" not in result.output
    error = result.output[result.output.index("Error:") :]
    assert error.count("\n") == 1  # one line: no forged second line


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_property_printable_has_no_control_characters(text: str) -> None:
    cleaned = _printable(text)
    assert all(ch.isprintable() for ch in cleaned)
    assert len(cleaned) <= 500
