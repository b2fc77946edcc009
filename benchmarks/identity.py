"""Identifier hashing and model construction throughput, next to a plain ``hashlib.sha256`` baseline.

The baseline (SHA-256 of an already normalised address, nothing else) is measured in the same run,
so the printed ratios say what normalisation and validation cost on this machine, whatever its speed.

    PYTHONPATH=. python benchmarks/identity.py [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from msclkid_middleware.capture.consent import Consent
from msclkid_middleware.conversions import OfflineConversion, UetEvent, UetUserData, UserIdentifiers
from msclkid_middleware.conversions.identity import hash_email, hash_phone

_EMAILS = [f"Customer.{i}+shop@Example{i % 7}.com" for i in range(1000)]
_PHONES = [f"+1 (425) 555-{i:04d}" for i in range(1000)]
_CLICKS = [f"{i:032x}" for i in range(1000)]


def _rate(label: str, func: Callable[[int], object], seconds: float) -> float:
    """Items per second of ``func(i)`` over at least ``seconds`` (best of three rounds)."""
    best = 0.0
    for _ in range(3):
        count = 0
        start = time.perf_counter()
        deadline = start + seconds / 3
        while True:
            for i in range(1000):
                func(i)
            count += 1000
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, count / (now - start))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.6, help="time per measurement (default 0.6)")
    args = parser.parse_args(argv)

    when = datetime.now(UTC) - timedelta(hours=1)
    granted = Consent.granted_by("cookie")
    plain = [e.lower().encode() for e in _EMAILS]

    def baseline(i: int) -> object:
        return hashlib.sha256(plain[i]).hexdigest()

    def offline(i: int) -> object:
        return OfflineConversion(
            conversion_name="Purchase",
            conversion_time=when,
            value=149.95,
            currency="USD",
            msclkid=_CLICKS[i],
            identifiers=UserIdentifiers(hashed_email="a" * 64),
        ).to_wire()

    def uet(i: int) -> object:
        return UetEvent(
            event_id=f"ord-{i}",
            event_name="purchase",
            event_time=when,
            consent=granted,
            user_data=UetUserData(msclkid=_CLICKS[i], client_ip_address="203.0.113.7"),
        ).to_wire()

    cases: list[tuple[str, Callable[[int], object]]] = [
        ("hashlib.sha256 (baseline)", baseline),
        ("hash_email", lambda i: hash_email(_EMAILS[i])),
        ("hash_phone", lambda i: hash_phone(_PHONES[i])),
        ("OfflineConversion + to_wire", offline),
        ("UetEvent + to_wire", uet),
    ]
    rates = {label: _rate(label, func, args.seconds) for label, func in cases}
    base = rates["hashlib.sha256 (baseline)"]
    print(f"{'operation':<30} {'items/s':>12} {'vs baseline':>12}")
    for label, rate in rates.items():
        print(f"{label:<30} {rate:>12,.0f} {rate / base:>11.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
