"""Demo data for the HTML report, and the README's screenshot of it.

``seed(tracker, clock)`` records two weeks of a small shop's conversions through the real tracker and delivers them
to the emulator (nothing is written to the outbox behind the tracker's back): click IDs, hashed-email-only sales,
visitors who refused consent, a goal name Microsoft does not know (5606), a malformed click ID (5604), hashed-only
leads for a goal without enhanced conversions (5603), one conversion that expired before it could be sent, a worker
that was down for a few hours, and today's rows still pending.

    python -m tools.report_demo docs/report.html docs/report.png   # the report, and its screenshot (Chromium)
"""

from __future__ import annotations

import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from msclkid_middleware.capture.consent import Consent
from msclkid_middleware.config import Settings
from msclkid_middleware.dispatch.tracker import ConversionTracker
from msclkid_middleware.testing import run_emulator

DAYS = 14


class Clock:
    """The tracker's clock, moved by the seeding: rows are recorded and delivered on past days."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _click(n: int) -> str:
    return f"{n:032x}"


def seed(tracker: ConversionTracker, clock: Clock, days: int = DAYS) -> None:
    """Record and deliver ``days`` days of demo conversions ending at the clock's time (see the module doc)."""
    end = clock.now
    n = 0
    for day in range(days, -1, -1):
        start = end - timedelta(days=day, hours=6)
        clock.now = start
        sales = 4 + (day * 7) % 6
        for i in range(sales):
            n += 1
            email = f"buyer{n}@example.com" if i % 3 == 0 else None
            when = clock.now - timedelta(hours=2)
            tracker.record_offline(f"o{n}", "Purchase", when, 20.0 + i, "USD", _click(n), email)
        for _ in range(day % 3):
            n += 1
            when = clock.now - timedelta(hours=3)
            tracker.record_offline(f"o{n}", "Purchase", when, 35.0, "USD", email=f"c{n}@x.org")
        for _ in range(1 + day % 2):
            n += 1
            tracker.record_offline(
                f"o{n}", "Purchase", clock.now - timedelta(hours=1), 12.0, "USD", _click(n), consent=_refused()
            )
        n += 1
        tracker.record_offline(f"o{n}", "Lead", clock.now - timedelta(hours=1), click=_click(n))
        if day % 4 == 1:
            n += 1
            tracker.record_offline(f"o{n}", "Lead", clock.now - timedelta(hours=1), email=f"lead{n}@example.com")
        if day % 5 == 2:
            n += 1
            tracker.record_offline(f"o{n}", "Newsletter", clock.now - timedelta(hours=1), click=_click(n))
        if day == 6:
            n += 1
            tracker.record_offline(f"o{n}", "Purchase", clock.now - timedelta(hours=1), 9.0, "USD", "Example-123")
        if day == 11:
            n += 1
            # Microsoft's window closes an hour later, while the worker is down: the row goes dead (expired).
            when = clock.now - timedelta(days=90) + timedelta(hours=1)
            tracker.record_offline(f"o{n}", "Purchase", when, 5.0, "USD", _click(n))
        if day == 0:
            clock.now = end
            return  # today's rows stay pending: no worker has run yet
        # Most days a worker delivers within a minute or a few; on two days it was down for hours.
        clock.now += timedelta(hours=5) if day in (4, 11) else timedelta(seconds=20 + 40 * (day % 4))
        tracker.flush(timeout=60)


def _refused() -> Consent:
    return Consent("denied", "cookie")


def tracker_for(env: dict[str, str], store: Path, clock: Clock) -> ConversionTracker:
    settings = Settings.from_env(env)
    return ConversionTracker(settings=settings, store_url=f"sqlite:///{store}", clock=clock)


def main(argv: list[str]) -> int:
    from msclkid_middleware.ops.html_report import render_html

    html_path = Path(argv[0] if argv else "docs/report.html")
    png_path = Path(argv[1]) if len(argv) > 1 else None
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    with tempfile.TemporaryDirectory() as tmp, run_emulator() as ms:
        tracker = tracker_for(dict(ms.env), Path(tmp) / "outbox.db", clock)
        try:
            seed(tracker, clock)
            html_path.write_text(render_html(tracker), encoding="utf-8")
        finally:
            tracker.close()
    print(f"wrote {html_path}")
    if png_path is not None:
        screenshot(html_path, png_path)
        print(f"wrote {png_path}")
    return 0


def screenshot(html_path: Path, png_path: Path, width: int = 900) -> None:
    """A full-page PNG of ``html_path`` in Debian's headless Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": width, "height": 900}, device_scale_factor=1)
        page.goto(html_path.resolve().as_uri())
        page.screenshot(path=str(png_path), full_page=True)
        browser.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
