"""Identifier hashing and model construction throughput, next to a bare ``hashlib.sha256`` baseline.

The baseline is ``hashlib.sha256(s.encode()).hexdigest()`` written inline in the loop (no function
call) over the same strings that ``hash_email`` / ``hash_phone`` are given, so the ratios say what
normalisation and validation cost on this machine, whatever its speed.  Every case runs in each of
several interleaved rounds and each ratio is the median of its per-round ratios (drift on a busy
machine hits both sides of a round alike).

    PYTHONPATH=. python benchmarks/identity.py [--seconds 0.6] [--rounds 7]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from msclkid_middleware.capture.consent import Consent
from msclkid_middleware.conversions import OfflineConversion, UetEvent, UetUserData, UserIdentifiers
from msclkid_middleware.conversions.identity import hash_email, hash_phone

#: Issue 21: ``hash_email`` throughput / bare SHA-256 must be at least this (hash_phone likewise).
TARGET_RATIO = 0.30

# Typical CRM data: mixed case, a dot and a +alias in the local part, an international phone with punctuation.
_EMAILS = [f"Customer.{i}+shop@Example{i % 7}.com" for i in range(1000)]
_PHONES = [f"+1 (425) 555-{i:04d}" for i in range(1000)]
_ACCENTED = [f"Jöhn.{i}+shop@Exämple{i % 7}.com" for i in range(1000)]
_CLICKS = [f"{i:032x}" for i in range(1000)]

_sha256 = hashlib.sha256


def _bare_sha256(items: list[str]) -> None:
    for s in items:
        _sha256(s.encode()).hexdigest()


def _hash_email(items: list[str]) -> None:
    for s in items:
        hash_email(s)


def _hash_phone(items: list[str]) -> None:
    for s in items:
        hash_phone(s)


def _rate(batch: Callable[[], object], seconds: float) -> float:
    """Items per second of ``batch()`` (1000 items per call), repeated for at least ``seconds``."""
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        batch()
        count += 1000
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.6, help="time per case, over all rounds (default 0.6)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds; ratios are medians (default 7)")
    args = parser.parse_args(argv)
    rounds = max(1, args.rounds)

    when = datetime.now(UTC) - timedelta(hours=1)
    granted = Consent.granted_by("cookie")

    def offline() -> object:
        for click in _CLICKS:
            OfflineConversion(
                conversion_name="Purchase",
                conversion_time=when,
                value=149.95,
                currency="USD",
                msclkid=click,
                identifiers=UserIdentifiers(hashed_email="a" * 64),
            ).to_wire()
        return None

    def uet() -> object:
        for i, click in enumerate(_CLICKS):
            UetEvent(
                event_id=f"ord-{i}",
                event_name="purchase",
                event_time=when,
                consent=granted,
                user_data=UetUserData(msclkid=click, client_ip_address="203.0.113.7"),
            ).to_wire()
        return None

    # (label, batch, label of the baseline it is compared with)
    cases: list[tuple[str, Callable[[], object], str]] = [
        ("hashlib.sha256 (baseline)", lambda: _bare_sha256(_EMAILS), "hashlib.sha256 (baseline)"),
        ("hash_email", lambda: _hash_email(_EMAILS), "hashlib.sha256 (baseline)"),
        ("hashlib.sha256 (phone input)", lambda: _bare_sha256(_PHONES), "hashlib.sha256 (phone input)"),
        ("hash_phone", lambda: _hash_phone(_PHONES), "hashlib.sha256 (phone input)"),
        ("hash_email (non-ASCII input)", lambda: _hash_email(_ACCENTED), "hashlib.sha256 (baseline)"),
        ("OfflineConversion + to_wire", offline, "hashlib.sha256 (baseline)"),
        ("UetEvent + to_wire", uet, "hashlib.sha256 (baseline)"),
    ]
    per_round = args.seconds / rounds
    rates: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    for _ in range(rounds):
        for label, batch, _ in cases:
            rates[label].append(_rate(batch, per_round))

    def ratio(label: str, base: str) -> float:
        return statistics.median(r / b for r, b in zip(rates[label], rates[base], strict=True))

    print(f"{'operation':<30} {'items/s':>12} {'vs baseline':>12}")
    for label, _, base in cases:
        print(f"{label:<30} {statistics.median(rates[label]):>12,.0f} {ratio(label, base):>11.2f}x")
    print()
    print(f"ratios: median of {rounds} interleaved rounds in this run; baseline: sha256(s.encode()).hexdigest()")
    for label, base in (("hash_email", "hashlib.sha256 (baseline)"), ("hash_phone", "hashlib.sha256 (phone input)")):
        value = ratio(label, base)
        verdict = "met" if value >= TARGET_RATIO else "NOT met"
        print(f"  {label} / bare sha256: {value:.2f}x (target >= {TARGET_RATIO:.2f}x: {verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
