from __future__ import annotations

import json
import stat
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from msclkid_middleware.config import ENVIRONMENTS
from msclkid_middleware.errors import (
    AuthenticationError,
    ConfigError,
    OAuthClientError,
    ReconsentRequired,
    StoreError,
    TransientError,
)
from msclkid_middleware.microsoft import RefreshTokenProvider
from msclkid_middleware.testing import EmulatorHandle, run_emulator
from msclkid_middleware.tokens import FileTokenStore, MemoryTokenStore, StoredToken

from .conftest import make_provider


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def issued(ms: EmulatorHandle) -> list[str]:
    return [r.refresh_token for r in ms.token_log() if r.outcome == "issued" and r.refresh_token]


def test_access_token_is_cached_until_the_margin(ms: EmulatorHandle) -> None:
    clock = Clock()
    provider = make_provider(ms, clock=clock)
    first = provider.access_token()
    assert provider.access_token() == first
    assert len(issued(ms)) == 1
    clock.now += 3600 - 301  # still outside the 5-minute margin
    assert provider.access_token() == first
    clock.now += 2  # inside the margin: refresh
    second = provider.access_token()
    assert second != first
    assert len(issued(ms)) == 2


def test_margin_is_bounded_for_short_lived_tokens() -> None:
    with run_emulator(access_token_lifetime=60) as ms:
        clock = Clock()
        provider = make_provider(ms, clock=clock)
        first = provider.access_token()
        clock.now += 29  # margin = min(300, 60 / 2) = 30 s
        assert provider.access_token() == first
        clock.now += 2
        assert provider.access_token() != first


def test_rotated_refresh_token_is_persisted_after_every_refresh(ms: EmulatorHandle, tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path / "token.json")
    provider = make_provider(ms, token_store=store)
    for expected_serial in (1, 2, 3):
        provider.force_refresh()
        stored = store.load()
        assert stored is not None
        assert stored.serial == expected_serial
        assert stored.refresh_token == issued(ms)[-1]  # the newest token the emulator issued
    # The emulator's log shows each refresh used the previously stored token (a chain, not the seed again).
    chain = [(r.parent_serial, r.serial) for r in ms.token_log() if r.outcome == "issued"]
    assert [p for p, _ in chain[1:]] == [s for _, s in chain[:-1]]


def test_store_wins_over_the_seed_and_a_restart_continues_the_chain(ms: EmulatorHandle, tmp_path: Path) -> None:
    path = tmp_path / "token.json"
    make_provider(ms, token_store=FileTokenStore(path)).access_token()
    ms.revoke_refresh_tokens(ms.env["MSADS_REFRESH_TOKEN"])  # the seed is dead now
    restarted = make_provider(ms, token_store=FileTokenStore(path))
    assert restarted.access_token()  # adopts the stored, still valid access token
    assert len(issued(ms)) == 1
    restarted.force_refresh()  # refreshes with the stored (rotated) token, so no invalid_grant
    assert len(issued(ms)) == 2
    assert FileTokenStore(path).load().serial == 2  # type: ignore[union-attr]


def test_file_store_is_private_atomic_and_never_regresses(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "token.json"
    store = FileTokenStore(path)
    assert store.load() is None
    assert store.save(StoredToken("rt-2", issued_at=2.0, serial=2))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.lock_path.stat().st_mode) == 0o600 or not store.lock_path.exists()
    assert not store.save(StoredToken("rt-1", issued_at=9.0, serial=1))  # older serial: refused
    assert not store.save(StoredToken("rt-2b", issued_at=2.0, serial=2))  # not newer: refused
    assert store.load() == StoredToken("rt-2", issued_at=2.0, serial=2)
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    with pytest.raises(ValueError, match="non-empty"):
        StoredToken("", issued_at=1.0)
    with pytest.raises(ValueError, match="non-empty"):
        StoredToken(None, issued_at=1.0)  # type: ignore[arg-type]


def test_corrupt_file_store_is_an_error_not_a_reset(tmp_path: Path) -> None:
    path = tmp_path / "token.json"
    path.write_text("{not json")
    with pytest.raises(StoreError, match="msclkid auth"):
        FileTokenStore(path).load()


def test_response_without_refresh_token_keeps_the_old_one(tmp_path: Path) -> None:
    # The emulator always rotates, so this one response shape comes from a tiny local token endpoint.
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"access_token": "at-x", "expires_in": 3600, "token_type": "Bearer"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        store = MemoryTokenStore()
        provider = RefreshTokenProvider(
            "client",
            refresh_token="rt-seed",
            token_url=f"http://127.0.0.1:{server.server_port}/token",
            token_store=store,
        )
        assert provider.access_token() == "at-x"
        stored = store.load()
        assert stored is not None
        assert (stored.refresh_token, stored.serial) == ("rt-seed", 1)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("setup", "error"),
    [
        ("revoked", "invalid_grant"),
        ("unknown_token", "invalid_grant"),
        ("bad_scope", "invalid_scope"),
    ],
    ids=["revoked", "unknown-token", "bad-scope"],
)
def test_invalid_grants_require_reconsent(ms: EmulatorHandle, setup: str, error: str) -> None:
    options: dict[str, object] = {}
    if setup == "revoked":
        ms.revoke_refresh_tokens()
    elif setup == "unknown_token":
        options["refresh_token"] = "rt-99-unknown"
    elif setup == "bad_scope":
        options["scope"] = "https://example.com/.default offline_access"
    env = ms.env
    provider = RefreshTokenProvider(
        env["MSADS_CLIENT_ID"],
        env["MSADS_CLIENT_SECRET"],
        refresh_token=str(options.get("refresh_token", env["MSADS_REFRESH_TOKEN"])),
        scope=options.get("scope"),  # type: ignore[arg-type]
        token_url=env["MSADS_TOKEN_URL"],
    )
    with pytest.raises(ReconsentRequired) as info:
        provider.access_token()
    exc = info.value
    assert exc.error_code == error
    assert isinstance(exc.code, int)  # the AADSTS number
    assert "msclkid auth" in str(exc)
    assert env["MSADS_REFRESH_TOKEN"] not in str(exc)


@pytest.mark.parametrize(
    ("client_id", "secret", "error", "setting"),
    [
        (None, "wrong-secret", "invalid_client", "MSADS_CLIENT_SECRET"),
        (None, "", "invalid_client", "MSADS_CLIENT_SECRET"),
        ("11111111-1111-4111-8111-111111111111", None, "unauthorized_client", "MSADS_CLIENT_ID"),
    ],
    ids=["wrong-secret", "no-secret", "unknown-client"],
)
def test_a_refused_application_is_a_configuration_error(
    ms: EmulatorHandle, client_id: str | None, secret: str | None, error: str, setting: str
) -> None:
    env = ms.env
    provider = RefreshTokenProvider(
        client_id or env["MSADS_CLIENT_ID"],
        env["MSADS_CLIENT_SECRET"] if secret is None else secret,
        refresh_token=env["MSADS_REFRESH_TOKEN"],
        token_url=env["MSADS_TOKEN_URL"],
    )
    with pytest.raises(OAuthClientError) as info:
        provider.access_token()
    exc = info.value
    # A configuration error naming the variable, not "re-consent needed": `msclkid auth` cannot fix it.
    assert isinstance(exc, ConfigError)
    assert isinstance(exc, AuthenticationError)
    assert not isinstance(exc, ReconsentRequired)
    assert (exc.error_code, exc.setting) == (error, setting)
    assert isinstance(exc.code, int)
    assert setting in str(exc)
    assert "cannot fix" in str(exc)
    assert env["MSADS_CLIENT_SECRET"] not in str(exc)
    assert env["MSADS_REFRESH_TOKEN"] not in str(exc)


def test_no_refresh_token_at_all_requires_consent() -> None:
    provider = RefreshTokenProvider("client", token_url="http://127.0.0.1:9/token")
    with pytest.raises(ReconsentRequired, match="msclkid auth"):
        provider.access_token()


@pytest.mark.parametrize(
    ("fault", "status"),
    [({"kind": "http", "status": 503}, 503), ({"kind": "throttle", "retry_after": 7}, 429)],
    ids=["503", "429"],
)
def test_token_endpoint_outage_is_transient(ms: EmulatorHandle, fault: dict[str, object], status: int) -> None:
    ms.inject_fault("token", times=1, **fault)  # type: ignore[arg-type]
    provider = make_provider(ms)
    with pytest.raises(TransientError) as info:
        provider.access_token()
    assert info.value.status == status
    if status == 429:
        assert info.value.retry_after == 7.0
    assert provider.access_token()  # the next call succeeds


def test_token_endpoint_network_errors_are_transient(ms: EmulatorHandle) -> None:
    ms.inject_fault("token", "drop", times=1)
    provider = make_provider(ms)
    with pytest.raises(TransientError, match="token endpoint"):
        provider.access_token()
    unreachable = RefreshTokenProvider("c", refresh_token="rt", token_url="http://127.0.0.1:9/token")
    with pytest.raises(TransientError):
        unreachable.access_token()


def test_unsupported_answers_are_authentication_errors(ms: EmulatorHandle) -> None:
    ms.inject_fault("token", "malformed", status=400, times=1)
    with pytest.raises(AuthenticationError) as info:
        make_provider(ms).access_token()
    assert not isinstance(info.value, ReconsentRequired | TransientError)


def test_threads_refresh_once(ms: EmulatorHandle, tmp_path: Path) -> None:
    provider = make_provider(ms, token_store=FileTokenStore(tmp_path / "t.json"))
    ms.inject_fault("token", "delay", delay=0.2, times=1)  # widen the race window
    tokens: list[str] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        tokens.append(provider.access_token())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(tokens)) == 1
    assert len(issued(ms)) == 1


def test_force_refresh_adopts_a_token_another_process_already_refreshed(ms: EmulatorHandle, tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    a = make_provider(ms, token_store=FileTokenStore(path))
    b = make_provider(ms, token_store=FileTokenStore(path))
    stale = a.access_token()
    assert b.access_token() == stale  # b adopts a's stored access token: no second refresh
    assert len(issued(ms)) == 1
    fresh = b.force_refresh()  # Microsoft refused `stale` for b
    assert fresh != stale
    assert a.force_refresh() == fresh  # a was refused the same token: it adopts b's refresh
    assert len(issued(ms)) == 2


def test_authorization_code_flow(ms: EmulatorHandle, tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path / "t.json")
    provider = make_provider(ms, refresh_token=None, token_store=store)
    redirect = "http://127.0.0.1:8765/callback"
    url = provider.authorize_url(redirect, "st4te")
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(ms.env["MSADS_TOKEN_URL"].rsplit("/", 1)[0] + "/authorize?")
    assert query["scope"] == [ENVIRONMENTS["production"].scope]
    assert (query["state"], query["response_type"], query["redirect_uri"]) == (["st4te"], ["code"], [redirect])
    answer = requests.get(url, allow_redirects=False, timeout=5)
    assert answer.status_code == 302
    back = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert back["state"] == ["st4te"]
    token = provider.exchange_code(back["code"][0], redirect)
    assert token.refresh_token == issued(ms)[-1]
    assert store.load() == token
    assert provider.access_token() == token.access_token
    with pytest.raises(ReconsentRequired):  # a code is redeemed once
        provider.exchange_code(back["code"][0], redirect)


def test_environments_pick_hosts_and_scopes() -> None:
    sandbox = RefreshTokenProvider("c", environment="sandbox")
    assert sandbox.scope == ENVIRONMENTS["sandbox"].scope
    assert sandbox.token_url == ENVIRONMENTS["sandbox"].token_url
    assert sandbox.authorize_url("https://x/cb", "s").startswith(ENVIRONMENTS["sandbox"].authorize_url + "?")
    prod = RefreshTokenProvider("c")
    assert prod.scope == "https://ads.microsoft.com/msads.manage offline_access"
