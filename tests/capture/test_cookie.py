from __future__ import annotations

import ast
import pathlib
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeTimedSerializer

from msclkid_middleware.capture.cookie import (
    DEFAULT_MAX_AGE,
    MAX_SET_COOKIE_LENGTH,
    ClickCookie,
)
from msclkid_middleware.errors import ConfigError

T0 = 1_790_000_000
HEX = "b4458f42c1b214060f81e89d7a9da3bb"


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def codec(keys: list[str], clock: Clock, **kwargs: object) -> ClickCookie:
    return ClickCookie(keys, clock=clock, **kwargs)  # type: ignore[arg-type]


def test_round_trip_keeps_id_and_capture_time() -> None:
    clock = Clock()
    c = codec(["k1"], clock)
    token = c.encode(HEX, T0 - 100)
    clock.now += 50
    loaded = c.decode(token)
    assert loaded is not None
    assert loaded.msclkid == HEX
    assert loaded.timestamp == T0 - 100
    assert loaded.captured_at == datetime.fromtimestamp(T0 - 100, UTC)
    assert loaded.stale_key is False


def test_token_is_compact_and_holds_only_version_id_and_time() -> None:
    token = codec(["k"], Clock()).encode(HEX, T0)
    version, click_id, _timestamp, _signature = token.split(".")
    assert (version, click_id) == ("1", HEX)
    assert len(token) < 100
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def _flip(token: str, index: int) -> str:
    ch = token[index]
    return token[:index] + ("A" if ch != "A" else "B") + token[index + 1 :]


def _states() -> list[object]:
    return [
        pytest.param(lambda t, c: t, ["k"], 0, "valid", False, id="valid"),
        pytest.param(lambda t, c: _flip(t, 3), ["k"], 0, None, None, id="tampered-id"),
        pytest.param(lambda t, c: _flip(t, len(t) - 50), ["k"], 0, None, None, id="tampered-timestamp"),
        pytest.param(lambda t, c: _flip(t, len(t) - 2), ["k"], 0, None, None, id="tampered-signature"),
        pytest.param(lambda t, c: t[:-5], ["k"], 0, None, None, id="truncated"),
        pytest.param(lambda t, c: t + "x", ["k"], 0, None, None, id="extended"),
        pytest.param(lambda t, c: "", ["k"], 0, None, None, id="empty"),
        pytest.param(lambda t, c: "garbage", ["k"], 0, None, None, id="unparsable"),
        pytest.param(lambda t, c: "." * 5, ["k"], 0, None, None, id="separators"),
        pytest.param(lambda t, c: "é" * 5000, ["k"], 0, None, None, id="huge-non-ascii"),
        pytest.param(lambda t, c: t, ["other"], 0, None, None, id="unknown-key"),
        pytest.param(lambda t, c: t, ["k", "newer"], 0, "valid", True, id="rotated-old-key"),
        pytest.param(lambda t, c: t, ["newer", "k"], 0, "valid", False, id="key-list-order"),
        pytest.param(lambda t, c: t, ["k"], DEFAULT_MAX_AGE, "valid", False, id="exactly-max-age"),
        pytest.param(lambda t, c: t, ["k"], DEFAULT_MAX_AGE + 1, None, None, id="expired"),
        pytest.param(lambda t, c: t, ["k"], -299, "valid", False, id="future-within-skew"),
        pytest.param(lambda t, c: t, ["k"], -301, None, None, id="future-beyond-skew"),
        pytest.param(lambda t, c: t, ["k", "new"], -200, "valid", True, id="future-within-skew-old-key"),
    ]


@pytest.mark.parametrize(("mutate", "keys", "elapsed", "expected", "stale"), _states())
def test_cookie_states(mutate: object, keys: list[str], elapsed: int, expected: str | None, stale: bool) -> None:
    clock = Clock()
    token = codec(["k"], clock).encode(HEX, T0)
    clock.now = T0 + elapsed
    loaded = codec(keys, clock).decode(mutate(token, clock))  # type: ignore[operator]
    if expected is None:
        assert loaded is None
    else:
        assert loaded is not None
        assert loaded.msclkid == HEX
        assert loaded.stale_key is stale


def test_other_salt_and_flask_style_tokens_are_rejected() -> None:
    # Same secret, other itsdangerous user (a Flask session serializer): never accepted.
    foreign = URLSafeTimedSerializer("k").dumps(HEX)
    assert codec(["k"], Clock()).decode(foreign) is None


def test_sha1_signature_with_same_key_is_rejected() -> None:
    from itsdangerous import TimestampSigner

    from msclkid_middleware.capture.cookie import COOKIE_SALT

    sha1 = TimestampSigner("k", salt=COOKIE_SALT, key_derivation="hmac").sign(b"1." + HEX.encode()).decode()
    assert codec(["k"], Clock()).decode(sha1) is None


def test_unknown_payload_version_is_absent() -> None:
    c = codec(["k"], Clock())
    token = c.keys.sign(b"2." + HEX.encode(), T0)
    assert c.decode(token) is None
    assert c.decode(token) is None  # a verified payload we cannot read stays absent when cached


def test_set_cookie_attributes_default() -> None:
    clock = Clock()
    header = codec(["k"], clock).set_cookie(HEX, T0)
    assert header is not None
    parsed = SimpleCookie()
    parsed.load(header)
    morsel = parsed["__Host-msclkid"]
    assert morsel["max-age"] == str(DEFAULT_MAX_AGE)
    assert morsel["path"] == "/"
    assert morsel["secure"] is True
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Lax"
    assert morsel["domain"] == ""
    assert "\r" not in header
    assert "\n" not in header
    assert len(header) <= MAX_SET_COOKIE_LENGTH


def test_max_age_counts_from_the_click_not_from_now() -> None:
    clock = Clock(T0 + 86_400)
    header = codec(["k"], clock).set_cookie(HEX, T0)
    assert header is not None
    assert f"Max-Age={DEFAULT_MAX_AGE - 86_400};" in header
    clock.now = T0 + DEFAULT_MAX_AGE
    assert codec(["k"], clock).set_cookie(HEX, T0) is None


def test_deletion_cookie_matches_name_path_and_domain() -> None:
    c = codec(["k"], Clock(), name="__Secure-msclkid", domain="example.com")
    deletion = c.delete_cookie()
    assert deletion.startswith("__Secure-msclkid=; Max-Age=0; ")
    assert "Domain=example.com" in deletion
    assert "Path=/" in deletion


def test_setting_a_cookie_for_an_invalid_id_is_refused() -> None:
    with pytest.raises(ValueError):
        codec(["k"], Clock()).encode("bad id", T0)


@pytest.mark.parametrize(
    ("keys", "kwargs", "match"),
    [
        pytest.param([], {}, "secret key", id="no-keys"),
        pytest.param(None, {}, "secret key", id="none"),
        pytest.param([""], {}, "secret key", id="empty-key"),
        pytest.param(["k"], {"domain": "example.com"}, "__Host-", id="host-with-domain"),
        pytest.param(["k"], {"secure": False}, "__Host-", id="host-insecure"),
        pytest.param(["k"], {"name": "__Secure-x", "secure": False}, "__Secure-", id="secure-prefix-insecure"),
        pytest.param(["k"], {"name": "bad name"}, "token characters", id="bad-name"),
        pytest.param(["k"], {"name": "a\r\nb"}, "token characters", id="crlf-name"),
        pytest.param(["k"], {"name": "x", "domain": "https://example.com"}, "bare domain", id="domain-url"),
        pytest.param(["k"], {"name": "x", "domain": "example.com\r\n"}, "bare domain", id="domain-crlf"),
        pytest.param(["k"], {"max_age": 0}, "400 days", id="max-age-zero"),
        pytest.param(["k"], {"max_age": 401 * 86400}, "400 days", id="max-age-too-long"),
        pytest.param(["k"], {"clock_skew": -1}, "clock_skew", id="negative-skew"),
        pytest.param(["k"], {"samesite": "None"}, "samesite", id="samesite-none"),
        pytest.param(["k"], {"name": "x", "domain": "a" * 60 + "." + "b" * 60 + "." + "c" * 60}, None, id="ok-long"),
    ],
)
def test_configuration_errors(keys: object, kwargs: dict[str, object], match: str | None) -> None:
    if match is None:
        ClickCookie(keys, **kwargs)  # type: ignore[arg-type]
        return
    with pytest.raises(ConfigError, match=match):
        ClickCookie(keys, **kwargs)  # type: ignore[arg-type]


def test_single_string_key_is_one_key_not_characters() -> None:
    clock = Clock()
    token = ClickCookie("secret", clock=clock).encode(HEX, T0)
    assert ClickCookie(["secret"], clock=clock).decode(token) is not None
    assert ClickCookie(["s"], clock=clock).decode(token) is None


@settings(max_examples=1000)
@given(st.data())
def test_mutated_tokens_are_never_accepted(data: st.DataObject) -> None:
    clock = Clock()
    c = codec(["k"], clock)
    token = c.encode(HEX, T0)
    index = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.text(min_size=0, max_size=3))
    mutated = token[:index] + replacement + token[index + 1 :]
    loaded = c.decode(mutated)
    if mutated != token:
        # Every token has exactly one valid spelling: any change at all makes it absent.
        assert loaded is None


@given(st.text(max_size=600))
def test_decode_never_raises_on_garbage(value: str) -> None:
    assert codec(["k"], Clock()).decode(value) is None


def test_every_unsign_call_in_the_package_passes_max_age() -> None:
    # The cookies verify through TokenKeys.reader, whose max_age is a required argument; any itsdangerous
    # unsign()/loads() that creeps back in must still pass max_age.
    import inspect

    from msclkid_middleware.capture.signing import TokenKeys, TokenReader

    for function in (TokenKeys.reader, TokenReader.__init__):
        assert inspect.signature(function).parameters["max_age"].default is inspect.Parameter.empty
    package = pathlib.Path(__file__).resolve().parents[2] / "msclkid_middleware"
    offenders = []
    readers = 0
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            func = node.func
            owner = func.value  # self.keys, or a local named keys
            on_keys = (isinstance(owner, ast.Attribute) and owner.attr == "keys") or (
                isinstance(owner, ast.Name) and owner.id == "keys"
            )
            if func.attr == "reader" and on_keys:
                readers += 1
                # max_length, max_age (and clock_skew) by position: no keyword parsing, nothing left to a default.
                if len(node.args) < 3:
                    offenders.append(f"{path.name}:{node.lineno}")
            elif (
                func.attr in {"unsign", "loads"}
                and isinstance(func.value, ast.Name)
                and func.value.id in {"signer", "serializer"}
                and not any(k.arg == "max_age" for k in node.keywords)
            ):
                offenders.append(f"{path.name}:{node.lineno}")
    assert readers >= 2  # the click and the visitor cookie
    assert offenders == []


@pytest.mark.parametrize(
    "decorate",
    [
        pytest.param(lambda t: t[:-1] + t[-1] + "\x80", id="trailing-non-ascii"),
        pytest.param(lambda t: t[:40] + "é" + t[40:], id="inner-non-ascii"),
        pytest.param(lambda t: t + " ", id="trailing-space"),
        pytest.param(lambda t: t[:50] + "=" + t[50:], id="padding-char"),
    ],
)
def test_decorated_copies_of_a_valid_token_are_rejected(decorate: Any) -> None:
    c = codec(["k"], Clock())
    valid = c.encode(HEX, T0)
    assert c.decode(valid) is not None
    assert c.decode(decorate(valid)) is None


def test_non_canonical_base64_spellings_are_rejected() -> None:
    c = codec(["k"], Clock())
    valid = c.encode(HEX, T0)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = valid[-1]
    # Same top bits, different unused low bits: decodes to the same signature bytes.
    twins = [ch for ch in alphabet if ch != last and alphabet.index(ch) >> 2 == alphabet.index(last) >> 2]
    assert twins
    for twin in twins:
        assert c.decode(valid[:-1] + twin) is None


@given(st.binary(min_size=1, max_size=100), st.binary(max_size=300))
def test_prepared_hmac_equals_the_standard_library(key: bytes, value: bytes) -> None:
    import hmac

    from msclkid_middleware.capture.signing import HmacSha256

    algorithm = HmacSha256(key)
    assert algorithm.get_signature(key, value) == hmac.digest(key, value, "sha256")
    assert algorithm.get_signature(b"other", value) == hmac.digest(b"other", value, "sha256")
    assert algorithm.verify_signature(key, value, hmac.digest(key, value, "sha256"))
