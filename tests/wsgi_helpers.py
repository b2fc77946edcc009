"""Small helpers shared by the middleware tests: a frozen clock, a sentinel body stream and a direct WSGI call."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.test import EnvironBuilder

T0 = 1_790_000_000.0
HEX = "b4458f42c1b214060f81e89d7a9da3bb"
HEX2 = "0f81e89d7a9da3bbb4458f42c1b21406"


class Clock:
    """A clock the test moves by hand; the middleware and codec take it as ``clock=``."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class UntouchableInput(io.RawIOBase):
    """A ``wsgi.input`` that fails the test when anything reads it."""

    def __init__(self) -> None:
        self.reads = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        raise AssertionError("wsgi.input was read")

    def readline(self, size: int | None = -1) -> bytes:
        return self.read()

    def readinto(self, buffer: Any) -> int:
        self.read()
        return 0


@dataclass
class Result:
    status: str
    headers: list[tuple[str, str]]
    body: bytes
    environ: dict[str, Any]
    closed: bool = False
    calls: list[str] = field(default_factory=list)

    @property
    def code(self) -> int:
        return int(self.status.split()[0])

    def header_values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def set_cookies(self) -> list[str]:
        return self.header_values("Set-Cookie")


def make_environ(
    path: str = "/",
    *,
    query: str = "",
    cookie: str | None = None,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    scheme: str = "https",
    host: str = "shop.test",
    body: bytes | None = None,
    content_type: str | None = None,
) -> dict[str, Any]:
    builder = EnvironBuilder(
        path=path,
        method=method,
        base_url=f"{scheme}://{host}",
        headers=headers or {},
        data=body,
        content_type=content_type,
    )
    environ = builder.get_environ()
    environ["QUERY_STRING"] = query  # raw, exactly as given (EnvironBuilder would re-encode)
    if cookie is not None:
        environ["HTTP_COOKIE"] = cookie
    if body is None:
        environ["wsgi.input"] = UntouchableInput()
    return environ


def call(app: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> Result:
    """Run a WSGI app like a server: start_response, write(), iterate, close()."""
    captured: dict[str, Any] = {}
    written: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info is not None and captured.get("sent"):
            raise exc_info[1].with_traceback(exc_info[2])
        captured["status"] = status
        captured["headers"] = list(headers)
        return written.append

    iterable = app(environ, start_response)
    try:
        for chunk in iterable:
            captured["sent"] = True
            written.append(chunk)
    finally:
        close = getattr(iterable, "close", None)
        if close is not None:
            close()
    return Result(captured["status"], captured["headers"], b"".join(written), environ)
