"""Helpers shared by the emulator tests (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from msclkid_middleware.testing import EmulatorHandle

SCOPE = "https://ads.microsoft.com/msads.manage offline_access"
CLICK = "f894f652ea334e739002f7167ab8f8e3"


def refresh(ms: EmulatorHandle, refresh_token: str | None = None, **extra: str | None) -> requests.Response:
    form = {
        "grant_type": "refresh_token",
        "client_id": ms.env["MSADS_CLIENT_ID"],
        "client_secret": ms.env.get("MSADS_CLIENT_SECRET"),
        "refresh_token": refresh_token or ms.env["MSADS_REFRESH_TOKEN"],
        "scope": SCOPE,
        **extra,
    }
    return requests.post(ms.token_url, data={k: v for k, v in form.items() if v is not None}, timeout=10)


def access_token(ms: EmulatorHandle) -> str:
    response = refresh(ms)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def cm_headers(ms: EmulatorHandle, token: str | None = None) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token or access_token(ms)}",
        "DeveloperToken": ms.env["MSADS_DEVELOPER_TOKEN"],
        "CustomerId": ms.env["MSADS_CUSTOMER_ID"],
        "CustomerAccountId": ms.env["MSADS_ACCOUNT_ID"],
        "Content-Type": "application/json",
        "Accept": "application/json",
    }


def ago(**delta: float) -> datetime:
    return datetime.now(UTC) - timedelta(**delta)


def wire_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f0Z")  # Microsoft's 7-digit examples


def conversion(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "MicrosoftClickId": CLICK,
        "ConversionName": "Purchase",
        "ConversionTime": wire_time(ago(hours=1)),
        "ConversionValue": 10.0,
        "ConversionCurrencyCode": "USD",
    }
    item.update(overrides)
    return {k: v for k, v in item.items() if v is not ...}


def apply(
    ms: EmulatorHandle, operation: str, wrapper: str, items: list[Any], headers: dict[str, str] | None = None
) -> requests.Response:
    return requests.post(
        ms.campaign_url(f"{operation}/Apply"), json={wrapper: items}, headers=headers or cm_headers(ms), timeout=10
    )


def apply_offline(ms: EmulatorHandle, items: list[Any], headers: dict[str, str] | None = None) -> requests.Response:
    return apply(ms, "OfflineConversions", "OfflineConversions", items, headers)
