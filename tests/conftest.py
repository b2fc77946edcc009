"""Suite-wide fixtures.

``secret_canary`` (autouse, S6): every test runs with unique fake secrets seeded into the emulator's
credentials (developer token, client secret, UET token, initial refresh token), every logger at DEBUG,
and afterwards asserts that no secret value, raw or URL-encoded, appears in any log record (message
and exception text), the text or ``repr`` of any toolkit error, the ``repr`` of the toolkit's objects
(``Settings``, clients, token stores, tracker, middleware), any SQLite outbox row, or CLI output
(``CliRunner`` results, captured stdout/stderr).  The secrets checked are the seeded canaries, every
access and refresh token an emulator issued during the test, and the secrets of every ``Settings``
built.  A test that shows a value on purpose (a probe command printing its settings) says so with
``@pytest.mark.secret_canary_allow("value")``.  The cost is a few attribute patches per test and one
scan at the end.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import click.testing
import pytest

from msclkid_middleware.config import Settings
from msclkid_middleware.emulator import Emulator, EmulatorConfig
from msclkid_middleware.errors import MsclkidError

_CANARY_KEY = pytest.StashKey["SecretCanary"]()
#: Shorter values are too likely to occur by chance (test fixtures use secrets like ``"k"``).
_MIN_SECRET = 8


class _Collect(logging.Handler):
    """Keeps the records of one test; every ``_BATCH`` records are scanned and dropped, so a long
    Hypothesis run holds bounded memory (a value cannot be logged before it exists, so the secrets
    known at that point cover those records)."""

    _BATCH = 5000

    def __init__(self, scan: Callable[[list[logging.LogRecord]], None]) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._scan = scan

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if len(self.records) >= self._BATCH:
            batch, self.records = self.records, []
            self._scan(batch)


def _record_text(record: logging.LogRecord) -> str:
    try:
        text = record.getMessage()
    except Exception:  # a malformed record is the test's business, not ours
        text = str(record.msg)
    if record.exc_text:
        text += "\n" + record.exc_text
    elif record.exc_info and record.exc_info[1] is not None:
        text += "\n" + logging.Formatter().formatException(record.exc_info)
    return text


class SecretCanary:
    """The canary values of one test and everything collected to scan for them."""

    def __init__(self) -> None:
        tag = secrets.token_hex(8)
        self.developer_token = f"CANARY-dev-{tag}"
        self.client_secret = f"CANARY-secret-{tag}"
        self.uet_token = f"CANARY-uet-{tag}"
        self.refresh_token = f"rt-1-CANARY{tag}"
        self.extra: set[str] = set()
        #: Values a test shows on purpose (``@pytest.mark.secret_canary_allow("value", ...)``).
        self.allowed: set[str] = set()
        self.emulators: list[Emulator] = []
        self.settings: list[Settings] = []
        self.errors: list[BaseException] = []
        self.objects: list[object] = []
        self.store_paths: set[str] = set()
        self.texts: list[tuple[str, str]] = []
        self.cookies_checked = 0
        self.cookie_problems: list[str] = []
        self.leaks: list[str] = []
        self.handler = _Collect(self._scan_records)

    def _scan_records(self, records: list[logging.LogRecord]) -> None:
        text = "\n".join(_record_text(r) for r in records)
        self.leaks.extend(f"a secret ({n[:6]}...) leaked into a log record" for n in self.needles() if n in text)

    def clear(self) -> None:
        """Drop everything collected (the test is over; the session must not keep it)."""
        for collected in (self.emulators, self.settings, self.errors, self.objects, self.texts, self.handler.records):
            collected.clear()

    def add(self, *values: str | None) -> None:
        """Register more secret values (a test's own credentials)."""
        self.extra.update(v for v in values if v)

    def secret_values(self) -> set[str]:
        values = {self.developer_token, self.client_secret, self.uet_token, self.refresh_token, *self.extra}
        for emulator in self.emulators:
            world = emulator.world
            values.update(world.refresh_tokens)
            values.update(world.access_tokens)
            config = world.config
            values.update(v for v in (config.developer_token, config.client_secret, config.uet_token) if v)
        for settings in self.settings:
            values.update(settings.secrets())
        return {v for v in values if len(v) >= _MIN_SECRET} - self.allowed

    def needles(self) -> set[str]:
        return {n for v in self.secret_values() for n in (v, quote(v, safe=""), quote_plus(v))}

    def check(self, text: str, where: str) -> None:
        """Fail if ``text`` contains any secret known so far."""
        for needle in self.needles():
            if needle in text:
                raise AssertionError(f"a secret ({needle[:6]}...) leaked into {where}")

    def verify(self) -> None:
        assert self.cookie_problems == [], f"Set-Cookie headers break S1: {self.cookie_problems}"
        if self.leaks:
            raise AssertionError(self.leaks[0])
        needles = self.needles()
        sources: list[tuple[str, str]] = list(self.texts)
        sources.append(("a log record", "\n".join(_record_text(r) for r in self.handler.records)))
        for exc in self.errors:
            sources.append(("an exception", f"{exc!s}\n{exc!r}"))
        for obj in self.objects:
            try:
                sources.append((f"repr({type(obj).__name__})", repr(obj)))
            except Exception:  # noqa: S112 - an object whose own repr is broken is another test's subject
                continue
        for path in sorted(self.store_paths):
            sources.append((f"outbox rows of {Path(path).name}", _dump_outbox(path)))
        for where, text in sources:
            for needle in needles:
                if needle in text:
                    raise AssertionError(f"a secret ({needle[:6]}...) leaked into {where}")


#: RFC 6265bis: browsers cap cookie lifetimes at 400 days.
_MAX_COOKIE_AGE = 400 * 24 * 3600
_COOKIES_CHECKED = pytest.StashKey[list[int]]()


def cookie_violations(header: str) -> list[str]:
    """S1: what is wrong with one ``Set-Cookie`` value the toolkit emitted (empty: nothing)."""
    problems = []
    if "\r" in header or "\n" in header:
        problems.append("CR/LF")
    if len(header) > 4093:
        problems.append("longer than 4,093 bytes")
    name = header.split("=", 1)[0]
    attrs = {a.strip().split("=", 1)[0].lower(): a.strip().partition("=")[2] for a in header.split(";")[1:]}
    if attrs.get("path") != "/":
        problems.append("Path is not /")
    if "httponly" not in attrs:
        problems.append("no HttpOnly")
    if attrs.get("samesite") not in ("Lax", "Strict"):
        problems.append("SameSite not Lax/Strict")
    age = attrs.get("max-age", "")
    if not age.isdigit() or int(age) > _MAX_COOKIE_AGE:
        problems.append("Max-Age missing or above 400 days")
    if name.startswith("__Host-") and ("secure" not in attrs or "domain" in attrs):
        problems.append("__Host- cookie without Secure or with Domain")
    if name.startswith("__Secure-") and "secure" not in attrs:
        problems.append("__Secure- cookie without Secure")
    return problems


def _dump_outbox(path: str) -> str:
    if not Path(path).exists():
        return ""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
    except sqlite3.Error:
        return ""
    try:
        rows = conn.execute("SELECT * FROM outbox").fetchall()
    except sqlite3.Error:
        return ""
    finally:
        conn.close()
    return "\n".join(repr(r) for r in rows)


def _tracked_classes() -> list[type]:
    from msclkid_middleware.dispatch.tracker import ConversionTracker
    from msclkid_middleware.microsoft import CampaignManagementClient, RefreshTokenProvider, UetClient
    from msclkid_middleware.middleware import MsclkidMiddleware
    from msclkid_middleware.outbox.base import TokenRecord
    from msclkid_middleware.outbox.tokens import OutboxTokenStore
    from msclkid_middleware.tokens import FileTokenStore, StoredToken

    return [
        CampaignManagementClient,
        UetClient,
        RefreshTokenProvider,
        FileTokenStore,
        StoredToken,
        TokenRecord,
        OutboxTokenStore,
        ConversionTracker,
        MsclkidMiddleware,
    ]


def _after_init(monkeypatch: pytest.MonkeyPatch, cls: type, then: Callable[[Any], None]) -> None:
    original = cls.__init__  # type: ignore[misc]

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        then(self)

    monkeypatch.setattr(cls, "__init__", __init__)


@pytest.fixture(autouse=True)
def secret_canary(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretCanary]:
    canary = SecretCanary()
    for marker in request.node.iter_markers("secret_canary_allow"):
        canary.allowed.update(marker.args)
    request.node.stash[_CANARY_KEY] = canary
    defaults = {f.name: f.default for f in dataclasses.fields(EmulatorConfig)}
    emulator_init = Emulator.__init__

    def seeded_init(self: Emulator, config: Any = None, **kwargs: Any) -> None:
        if config is None:
            config = EmulatorConfig()
        elif not isinstance(config, EmulatorConfig):
            config = EmulatorConfig.from_mapping(config)
        seeds = {
            "developer_token": canary.developer_token,
            "client_secret": canary.client_secret,
            "uet_token": canary.uet_token,
            "refresh_token": canary.refresh_token,
        }
        changes = {k: v for k, v in seeds.items() if getattr(config, k) == defaults[k]}
        emulator_init(self, dataclasses.replace(config, **changes), **kwargs)
        canary.emulators.append(self)

    monkeypatch.setattr(Emulator, "__init__", seeded_init)

    def settings_built(settings: Settings) -> None:
        canary.settings.append(settings)
        canary.objects.append(settings)

    _after_init(monkeypatch, Settings, settings_built)
    _after_init(monkeypatch, MsclkidError, canary.errors.append)
    for cls in _tracked_classes():
        _after_init(monkeypatch, cls, canary.objects.append)
    from msclkid_middleware.outbox.sqlite import SqliteOutbox

    _after_init(monkeypatch, SqliteOutbox, lambda store: canary.store_paths.add(store.path))

    from msclkid_middleware.capture.cookie import ClickCookie

    def checked(method: Callable[..., str | None]) -> Callable[..., str | None]:
        def wrapper(self: ClickCookie, *args: Any) -> str | None:
            header = method(self, *args)
            if header is not None:
                canary.cookies_checked += 1
                canary.cookie_problems.extend(f"{p}: {header[:40]}" for p in cookie_violations(header))
            return header

        return wrapper

    monkeypatch.setattr(ClickCookie, "set_cookie", checked(ClickCookie.set_cookie))
    monkeypatch.setattr(ClickCookie, "delete_cookie", checked(ClickCookie.delete_cookie))

    invoke = click.testing.CliRunner.invoke

    def scanned_invoke(self: click.testing.CliRunner, *args: Any, **kwargs: Any) -> click.testing.Result:
        result = invoke(self, *args, **kwargs)
        canary.texts.append(("CLI output", result.output))
        return result

    monkeypatch.setattr(click.testing.CliRunner, "invoke", scanned_invoke)

    root = logging.getLogger()
    saved_level = root.level
    root.addHandler(canary.handler)
    root.setLevel(logging.DEBUG)
    # Loggers that libraries quieten on their own would otherwise hide their DEBUG records.
    quiet = {
        name: logger.level
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger) and logger.level > logging.DEBUG
    }
    for name in quiet:
        logging.getLogger(name).setLevel(logging.DEBUG)
    # pytest's own capture handlers keep seeing what they saw before (the old root level): formatting
    # every DEBUG record for them would make the whole suite slow, and tests would see new records.
    raised = [(h, h.level) for h in root.handlers if h is not canary.handler and h.level < saved_level]
    for handler, _ in raised:
        handler.setLevel(saved_level)
    try:
        yield canary
    finally:
        root.removeHandler(canary.handler)
        root.setLevel(saved_level)
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
        for handler, level in raised:
            handler.setLevel(level)
        request.config.stash.setdefault(_COOKIES_CHECKED, []).append(canary.cookies_checked)
    try:
        canary.verify()
    finally:
        canary.clear()
        del request.node.stash[_CANARY_KEY]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    counts = config.stash.get(_COOKIES_CHECKED, [])
    if counts:
        terminalreporter.write_line(
            f"secrets canary: {len(counts)} tests scanned; S1: {sum(counts)} Set-Cookie headers checked"
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    canary = item.stash.get(_CANARY_KEY, None)
    if canary is not None and report.when == "call" and report.passed:
        try:
            canary.check(report.capstdout + report.capstderr, "captured stdout/stderr")
        except AssertionError as exc:
            report.outcome = "failed"
            report.longrepr = str(exc)
    return report
