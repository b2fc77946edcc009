"""Helpers for tests, including a shop's own pytest suite: a local Microsoft Ads emulator in one line.

from msclkid_middleware.testing import run_emulator

def test_checkout_uploads(monkeypatch):
    with run_emulator() as ms:
        for name, value in ms.env.items():
            monkeypatch.setenv(name, value)
        ...  # exercise the shop
        assert [i.outcome for i in ms.received("offline")] == ["accepted"]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from msclkid_middleware.emulator import Emulator, EmulatorConfig, EmulatorServer
from msclkid_middleware.emulator.faults import FaultRule
from msclkid_middleware.emulator.state import Account, Goal, ReceivedItem, RequestRecord, TokenRecord, UetTag
from msclkid_middleware.emulator.world import utcnow

__all__ = ["EmulatorHandle", "make_click_cookie", "run_emulator"]


class EmulatorHandle:
    """A running emulator: ``.url``, ``.env`` and the control methods (same as the ``/_emulator/`` API)."""

    def __init__(self, server: EmulatorServer) -> None:
        self._server = server
        self.emulator: Emulator = server.emulator
        self.url: str = server.url
        #: Exactly the variables ``msclkid emulator`` prints.
        self.env: dict[str, str] = self.emulator.env(self.url)

    def __repr__(self) -> str:
        return f"<EmulatorHandle {self.url}>"

    # URLs of the individual endpoints, for tests that talk HTTP directly.
    @property
    def token_url(self) -> str:
        return self.env["MSADS_TOKEN_URL"]

    def campaign_url(self, operation: str) -> str:
        """``campaign_url("OfflineConversions/Apply")`` -> full URL."""
        return f"{self.url}/CampaignManagement/v13/{operation}"

    def uet_url(self, tag_id: str | None = None) -> str:
        return f"{self.url}/v1/{tag_id or self.env['UET_TAG_ID']}/events"

    # Control surface.
    def state(self) -> dict[str, Any]:
        return self.emulator.state()

    def received(
        self, kind: str | None = None, *, account: str | None = None, outcome: str | None = None
    ) -> list[ReceivedItem]:
        return self.emulator.received(kind, account=account, outcome=outcome)

    def wait_for_received(
        self, count: int, kind: str | None = None, *, outcome: str | None = None, timeout: float = 10.0
    ) -> list[ReceivedItem]:
        """Poll until at least ``count`` matching items arrived (for apps that upload from a background worker)."""
        deadline = time.monotonic() + timeout
        while True:
            items = self.received(kind, outcome=outcome)
            if len(items) >= count:
                return items
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{len(items)} of {count} {kind or 'items'} received after {timeout} s")
            time.sleep(0.02)

    def requests(self, endpoint: str | None = None) -> list[RequestRecord]:
        return self.emulator.requests(endpoint)

    def token_log(self) -> list[TokenRecord]:
        return self.emulator.token_log()

    def reset(self) -> None:
        self.emulator.reset()

    def add_goal(self, name: str, **options: Any) -> Goal:
        return self.emulator.add_goal(name, **options)

    def add_click(
        self, click_id: str, click_time: datetime | str | None = None, *, account_id: str | None = None
    ) -> datetime:
        return self.emulator.add_click(click_id, click_time, account_id=account_id)

    def add_uet_tag(
        self, tag_id: str, token: str | None = None, *, account_id: str | None = None, tracking_status: str = "Active"
    ) -> UetTag:
        return self.emulator.add_uet_tag(tag_id, token, account_id=account_id, tracking_status=tracking_status)

    def add_account(self, customer_id: str, account_id: str) -> Account:
        return self.emulator.add_account(customer_id, account_id)

    def account_properties(self, account_id: str | None = None) -> dict[str, str]:
        return self.emulator.account_properties(account_id)

    def set_account_properties(self, properties: dict[str, Any], *, account_id: str | None = None) -> dict[str, str]:
        return self.emulator.set_account_properties(properties, account_id=account_id)

    def inject_fault(self, endpoint: str, kind: str, **options: Any) -> FaultRule:
        return self.emulator.inject_fault(endpoint, kind, **options)

    def clear_faults(self, rule_id: int | None = None, *, endpoint: str | None = None) -> int:
        return self.emulator.clear_faults(rule_id, endpoint=endpoint)

    def faults(self) -> list[dict[str, Any]]:
        return self.emulator.faults()

    def revoke_refresh_tokens(self, token: str | None = None) -> int:
        return self.emulator.revoke_refresh_tokens(token)

    def expire_access_tokens(self, token: str | None = None) -> int:
        return self.emulator.expire_access_tokens(token)

    def issue_refresh_token(self) -> str:
        return self.emulator.issue_refresh_token()

    def configure(self, **changes: Any) -> EmulatorConfig:
        return self.emulator.configure(**changes)


@contextmanager
def run_emulator(
    config: EmulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    clock: Callable[[], datetime] = utcnow,
    **settings: Any,
) -> Iterator[EmulatorHandle]:
    """Run the emulator on a free loopback port in a daemon thread; stop it when the block exits.

    ``settings`` are :class:`~msclkid_middleware.emulator.EmulatorConfig` fields (``unknown_goal="accept"``,
    ``access_token_lifetime=5``, ``faults=[{"endpoint": "offline", "kind": "throttle", "times": 1}]`` ...).
    """
    base = config or EmulatorConfig()
    if settings:
        base = EmulatorConfig.from_mapping({**{k: getattr(base, k) for k in base.__dataclass_fields__}, **settings})
    server = EmulatorServer(Emulator(base, clock=clock), host, port).start()
    try:
        yield EmulatorHandle(server)
    finally:
        server.stop()


def make_click_cookie(
    msclkid: str,
    secret_keys: str | bytes | Iterable[str | bytes],
    *,
    captured_at: datetime | float | None = None,
    cookie_name: str = "__Host-msclkid",
) -> str:
    """A ``Cookie`` header value (``"__Host-msclkid=<signed token>"``) holding ``msclkid``, for a shop's own tests.

    Signed exactly as :class:`~msclkid_middleware.MsclkidMiddleware` signs it with the same ``secret_keys``
    (the newest key signs), dated ``captured_at`` (default: now), so ``get_click`` returns that click
    (``source="cookie"``) for a request carrying it::

        environ["HTTP_COOKIE"] = make_click_cookie("f894f652ea334e739002f7167ab8f8e3", ["secret"])
        name, _, value = make_click_cookie(click_id, keys).partition("=")   # client.set_cookie(name, value)
    """
    from msclkid_middleware.capture.cookie import ClickCookie

    when = time.time() if captured_at is None else captured_at
    # Secure and name rules are the middleware's; a plain-http development name needs secure=False.
    secure = cookie_name.startswith(("__Host-", "__Secure-"))
    return f"{cookie_name}={ClickCookie(secret_keys, name=cookie_name, secure=secure).encode(msclkid, when)}"
