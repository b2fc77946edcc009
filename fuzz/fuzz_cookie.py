"""Coverage-guided fuzzing of the click-cookie decoder and the middleware's cookie handling with Atheris.

    make fuzz                                   # both harnesses, FUZZ_TIME seconds each
    python fuzz/fuzz_cookie.py fuzz/corpus_cookie -max_total_time=1800
    python fuzz/fuzz_cookie.py --replay 10000   # no Atheris: the corpus plus seeded random mutations

Invariants checked on every input:

- ``ClickCookie.decode`` returns ``None`` or a ``LoadedCookie`` and never raises;
- a token that decodes is *canonical*: re-encoding what it holds gives the same string, so no edit of
  a genuine token verifies (one cookie, one spelling) and nothing unsigned is ever accepted;
- the middleware given the input as a Cookie header (and as a query string) answers with the app's
  status, never raises, emits no CR/LF in a header and never reads ``wsgi.input``; a click it reports
  from the cookie is one a genuine token carried, and a genuine value after any number of duplicates (within
  the cookie header cap) is found.

``check_one`` has no Atheris dependency, so the test suite runs it too.
"""

from __future__ import annotations

import io
import random
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

# Run from a checkout without installing: make the package next to this directory importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz._harness import run
from msclkid_middleware import ConsentPolicy, MsclkidMiddleware, get_click
from msclkid_middleware.capture.cookie import ClickCookie, LoadedCookie
from msclkid_middleware.capture.request import MAX_COOKIE_HEADER

T0 = 1_790_000_000
KEYS = ["fuzz-old-key", "fuzz-new-key"]
NAME = "__Host-msclkid"
CORPUS = Path(__file__).resolve().parent / "corpus_cookie"


def _clock() -> float:
    return float(T0)


_CODEC = ClickCookie(KEYS, clock=_clock)
_OLD = ClickCookie(KEYS[:1], clock=_clock)
#: Genuine tokens the mutation mode starts from (new key, old key, a skewed clock, an old one).
SEEDS = (
    _CODEC.encode("0123456789abcdef0123456789abcdef", T0),
    _OLD.encode("fedcba9876543210fedcba9876543210", T0 - 86400),
    _CODEC.encode("Ab-_9xYz", T0 + 200),
    _CODEC.encode("f" * 64, T0 - 89 * 86400),
)


class _NoRead(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise AssertionError("wsgi.input was read outside the capture endpoint")


def _app(seen: list[Any]) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen.append(get_click(environ))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return app


def _check_decode(token: str) -> LoadedCookie | None:
    loaded = _CODEC.decode(token)
    if loaded is None:
        return None
    if not isinstance(loaded, LoadedCookie):
        raise AssertionError(f"decode returned {type(loaded).__name__}")
    signer = _OLD if loaded.stale_key else _CODEC
    if signer.encode(loaded.msclkid, loaded.timestamp) != token:
        raise AssertionError(f"a non-canonical token verified: {token!r}")
    return loaded


def _check_middleware(cookie: str | None, query: str, *, expect_cookie_click: bool = False) -> None:
    seen: list[Any] = []
    mw = MsclkidMiddleware(_app(seen), secret_keys=KEYS, consent=ConsentPolicy(default="granted"), clock=_clock)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "QUERY_STRING": query,
        "SERVER_NAME": "shop.test",
        "SERVER_PORT": "443",
        "HTTP_HOST": "shop.test",
        "wsgi.url_scheme": "https",
        "wsgi.input": _NoRead(),
    }
    if cookie is not None:
        environ["HTTP_COOKIE"] = cookie
    result: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        result["status"], result["headers"] = status, headers
        return lambda data: None

    body = b"".join(mw(environ, start_response))
    if result["status"] != "200 OK" or body != b"ok":
        raise AssertionError(f"the app's response changed: {result['status']}")
    for name, value in result["headers"]:
        if "\r" in name + value or "\n" in name + value:
            raise AssertionError("CR/LF in a response header")
    click = seen[0]
    if expect_cookie_click and (click is None or click.source != "cookie"):
        raise AssertionError("a genuine cookie value after duplicates was not found")
    if click is not None and click.source == "cookie":
        values = [v.partition("=")[2].strip().strip('"') for v in (cookie or "").split(";")]
        genuine = {loaded.msclkid for loaded in map(_CODEC.decode, values) if loaded is not None}
        if click.msclkid not in genuine:
            raise AssertionError("the middleware accepted a cookie click no genuine token carried")


def mutate(seed: str, edits: bytes) -> str:
    """Apply byte-driven edits (flip, insert, delete, truncate) to a genuine token."""
    chars = list(seed)
    for i in range(0, len(edits) - 1, 2):
        op, arg = edits[i] % 4, edits[i + 1]
        pos = arg % (len(chars) + 1)
        if op == 0 and chars:
            chars[pos % len(chars)] = chr(33 + arg % 94)
        elif op == 1:
            chars.insert(pos, chr(arg))
        elif op == 2 and chars:
            del chars[pos % len(chars)]
        elif op == 3:
            chars = chars[:pos]
    return "".join(chars)


def check_one(data: bytes) -> None:
    """One fuzz input: the first byte picks the mode, the rest is the payload."""
    if not data:
        return
    mode, payload = data[0] % 4, data[1:]
    text = payload.decode("latin-1")
    if mode == 0:
        token = text
    elif mode == 1:
        token = mutate(SEEDS[data[0] // 4 % len(SEEDS)], payload)
    elif mode == 2:
        token = payload.decode("utf-8", "surrogateescape")
    else:
        # A whole Cookie header (duplicates, quoting, other cookies) and the same bytes as a query string.
        _check_middleware(text, text)
        _check_middleware(f"{NAME}={SEEDS[0]}; {text}", "msclkid=" + text)
        # Issue 19: however many duplicates come first, a genuine value inside the header cap is found.
        if len(text) < MAX_COOKIE_HEADER - 200:
            _check_middleware(f"{text}; {NAME}={SEEDS[0]}", "", expect_cookie_click=True)
        return
    _check_decode(token)
    _check_middleware(f"{NAME}={token}", "")


def replay(count: int, seed: int = 0) -> int:
    """Without Atheris: every corpus file, then ``count`` seeded random and mutated inputs."""
    inputs = [p.read_bytes() for p in sorted(CORPUS.iterdir())] if CORPUS.is_dir() else []
    rng = random.Random(seed)  # noqa: S311 - test input, not security
    for _ in range(count):
        size = rng.choice((2, 8, 40, 120, 600))
        inputs.append(bytes(rng.randrange(256) for _ in range(size)))
    for data in inputs:
        check_one(data)
    return len(inputs)


def main(argv: list[str]) -> None:
    run("fuzz_cookie", argv, check_one, replay, ("msclkid_middleware", "itsdangerous"))


if __name__ == "__main__":
    main(sys.argv)
