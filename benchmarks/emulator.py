"""Emulator throughput: 1,000-item ``OfflineConversions/Apply`` and UET batches over real loopback HTTP.

Prints batches/s, items/s and latency percentiles, and the ratio against a 1-item Apply measured in the
same run (the fixed cost of a request), so figures compare across machines.

    PYTHONPATH=. python benchmarks/emulator.py [--batches 30] [--store /tmp/emulator.sqlite3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from msclkid_middleware.testing import EmulatorHandle, run_emulator


def _headers(ms: EmulatorHandle, session: requests.Session) -> dict[str, str]:
    form = {
        "grant_type": "refresh_token",
        "client_id": ms.env["MSADS_CLIENT_ID"],
        "client_secret": ms.env["MSADS_CLIENT_SECRET"],
        "refresh_token": ms.env["MSADS_REFRESH_TOKEN"],
        "scope": "https://ads.microsoft.com/msads.manage offline_access",
    }
    token = session.post(ms.token_url, data=form, timeout=10).json()["access_token"]
    return {
        "Authorization": f"Bearer {token}",
        "DeveloperToken": ms.env["MSADS_DEVELOPER_TOKEN"],
        "CustomerId": ms.env["MSADS_CUSTOMER_ID"],
        "CustomerAccountId": ms.env["MSADS_ACCOUNT_ID"],
    }


def _offline_batch(batch: int, size: int) -> dict[str, Any]:
    when = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    items = [
        {
            "MicrosoftClickId": f"{batch:08x}{i:024x}",
            "ConversionName": "Purchase",
            "ConversionTime": when,
            "ConversionValue": 10.0 + i,
            "ConversionCurrencyCode": "USD",
        }
        for i in range(size)
    ]
    return {"OfflineConversions": items}


def _uet_batch(batch: int, size: int) -> dict[str, Any]:
    now = int(time.time()) - 60
    data = [
        {
            "eventType": "custom",
            "eventId": f"{batch}-{i}",
            "eventName": "purchase",
            "eventTime": now,
            "userData": {"msclkid": f"{batch:08x}{i:024x}", "em": "a" * 64},
            "customData": {"value": 1.5, "currency": "USD"},
        }
        for i in range(size)
    ]
    return {"data": data, "dataProvider": "benchmark"}


def _measure(send: Any, batches: int) -> list[float]:
    latencies = []
    for batch in range(batches):
        started = time.perf_counter()
        response = send(batch)
        latencies.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise SystemExit(f"unexpected {response.status_code}: {response.text[:300]}")
    return latencies


def _report(name: str, latencies: list[float], size: int, baseline: float) -> None:
    total = sum(latencies)
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    print(
        f"{name:<28} {len(latencies) / total:8.1f} batches/s {len(latencies) * size / total:10.0f} items/s "
        f"p50 {statistics.median(latencies) * 1000:7.1f} ms  p95 {p95 * 1000:7.1f} ms  "
        f"x{statistics.median(latencies) / baseline:6.1f} of a 1-item call"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--store", help="SQLite file for the journal (default: memory)")
    args = parser.parse_args()
    with run_emulator(store=args.store) as ms, requests.Session() as session:
        headers = _headers(ms, session)
        apply_url = ms.campaign_url("OfflineConversions/Apply")
        uet_headers = {"Authorization": f"Bearer {ms.env['UET_API_TOKEN']}"}

        def one(batch: int) -> requests.Response:
            return session.post(apply_url, json=_offline_batch(10_000 + batch, 1), headers=headers, timeout=30)

        def offline(batch: int) -> requests.Response:
            return session.post(apply_url, json=_offline_batch(batch, 1000), headers=headers, timeout=30)

        def uet(batch: int) -> requests.Response:
            return session.post(ms.uet_url(), json=_uet_batch(batch, 1000), headers=uet_headers, timeout=30)

        baseline = statistics.median(_measure(one, args.batches * 3))
        print(f"1-item Apply (baseline)      p50 {baseline * 1000:7.1f} ms")
        _report("OfflineConversions 1,000", _measure(offline, args.batches), 1000, baseline)
        _report("UET CAPI events 1,000", _measure(uet, args.batches), 1000, baseline)
        accepted = len(ms.received("offline", outcome="accepted"))
        print(f"(accepted offline items recorded: {accepted})")


if __name__ == "__main__":
    main()
