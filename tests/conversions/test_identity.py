"""Microsoft-exact identifier normalisation and hashing (identity.py)."""

from __future__ import annotations

import doctest
import hashlib
import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msclkid_middleware.conversions import identity
from msclkid_middleware.conversions.identity import (
    hash_email,
    hash_phone,
    is_sha256_hex,
    normalize_email,
    normalize_phone,
)
from msclkid_middleware.errors import InvalidIdentifier

# Microsoft's published vectors (UET CAPI guide, "Hashed identifiers").
JOHN_HASH = "ec81f3ac7b2b19675bab9d54cf416f9f18cff87c97da5cca82c0f0891bc40602"
PHONE_HASH = "c59475d96e9f01d7d18d06cfad84dd02333207f02c0c2c5663ef2782cda0390e"


def _fullwidth(text: str) -> str:
    """The full-width (U+FF01..U+FF5E) form of printable ASCII, as some East Asian keyboards type it."""
    return "".join(chr(ord(ch) + 0xFEE0) for ch in text)


def _attempt(func: Callable[..., str], *args: Any) -> tuple[str | None, InvalidIdentifier | None]:
    try:
        return func(*args), None
    except InvalidIdentifier as exc:
        return None, exc


def test_microsoft_email_vector() -> None:
    assert hash_email("john@contoso.com") == JOHN_HASH


def test_microsoft_phone_vector_hashes_the_plus() -> None:
    assert hash_phone("+14255551234") == PHONE_HASH
    # Peers that strip the "+" (Segment) produce this instead; it must not be what we send.
    assert hash_phone("+14255551234") != hashlib.sha256(b"14255551234").hexdigest()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("john@contoso.com", "john@contoso.com", id="already-normal"),
        pytest.param("  john@contoso.com\t\n", "john@contoso.com", id="trim"),
        pytest.param("John@Contoso.COM", "john@contoso.com", id="uppercase"),
        pytest.param("john+newsletter@contoso.com", "john@contoso.com", id="alias"),
        pytest.param("john+a+b@contoso.com", "john@contoso.com", id="alias-with-plus-inside"),
        pytest.param("j.o.h.n@contoso.com", "john@contoso.com", id="dots-any-domain"),
        pytest.param("ex.ample@outlook.com", "example@outlook.com", id="microsoft-dot-example"),
        pytest.param("name+withplus@outlook.com", "name@outlook.com", id="microsoft-alias-example"),
        pytest.param("j.ohn+x.y@contoso.com", "john@contoso.com", id="dots-and-alias"),
        pytest.param(".john.@contoso.com", "john@contoso.com", id="leading-trailing-local-dots-removed"),
        pytest.param("jöhn@contoso.com", "john@contoso.com", id="accent-umlaut"),
        pytest.param("àéîõü@exämple.com", "aeiou@example.com", id="accents-everywhere"),
        pytest.param("jo hn @ contoso .com", "john@contoso.com", id="inner-spaces"),
        pytest.param("john\u00a0@contoso.com", "john@contoso.com", id="no-break-space"),
        pytest.param(_fullwidth("JOHN") + "@contoso.com", "john@contoso.com", id="fullwidth"),
        pytest.param("John.Doe+Shop@Mail.Contoso.co.uk", "johndoe@mail.contoso.co.uk", id="subdomain"),
    ],
)
def test_normalize_email(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected
    assert hash_email(raw) == hashlib.sha256(expected.encode()).hexdigest()


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        pytest.param("", "must not be empty", id="empty"),
        pytest.param("   ", "must not be empty", id="blank"),
        pytest.param("johncontoso.com", "exactly one '@'", id="no-at"),
        pytest.param("john@@contoso.com", "exactly one '@'", id="two-at"),
        pytest.param("a@b@contoso.com", "exactly one '@'", id="two-at-apart"),
        pytest.param("john@contoso", "dot in the domain", id="no-dot-in-domain"),
        pytest.param("john@contoso.com.", "start or end with a dot", id="trailing-dot"),
        pytest.param("john@.contoso.com", "start or end with a dot", id="domain-leading-dot"),
        pytest.param("john@contoso..com", "'..'", id="empty-label"),
        pytest.param("+alias@contoso.com", "local part", id="only-alias"),
        pytest.param("...@contoso.com", "local part", id="only-dots"),
        pytest.param("jo\x00hn@contoso.com", "control characters", id="control-char"),
        pytest.param("j" * 250 + "@contoso.com", "at most 254", id="too-long"),
    ],
)
def test_normalize_email_rejects(raw: str, rule: str) -> None:
    with pytest.raises(InvalidIdentifier) as info:
        normalize_email(raw)
    assert info.value.field == "email"
    assert rule in info.value.reason
    if raw.strip():
        assert raw not in str(info.value)


def test_normalize_email_rejects_non_string() -> None:
    with pytest.raises(InvalidIdentifier, match="must be a string"):
        normalize_email(123)  # type: ignore[arg-type]


def test_invalid_identifier_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="email"):
        hash_email("nope")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("+14255551234", "+14255551234", id="e164"),
        pytest.param(" +1 425 555 1234 ", "+14255551234", id="spaces"),
        pytest.param("+1 (425) 555-1234", "+14255551234", id="us-punctuation"),
        pytest.param("+1.425.555.1234", "+14255551234", id="dots"),
        pytest.param("+1-425-555-1234", "+14255551234", id="dashes"),
        pytest.param("+1\u2011425\u2013555\u20141234", "+14255551234", id="unicode-dashes"),
        pytest.param("001 425 555 1234", "+14255551234", id="00-prefix"),
        pytest.param("0044 20 7946 0958", "+442079460958", id="00-prefix-uk"),
        pytest.param("+44 (0)20 7946 0958", "+442079460958", id="bracketed-trunk-zero"),
        pytest.param("+49 (0) 30 901820", "+4930901820", id="bracketed-trunk-zero-spaced"),
        pytest.param("+33/1 42 68 53 00", "+33142685300", id="slash"),
        pytest.param(_fullwidth("+14255551234"), "+14255551234", id="fullwidth"),
        pytest.param("+6834002", "+6834002", id="shortest-niue"),
        pytest.param("+" + "8" * 15, "+" + "8" * 15, id="fifteen-digits"),
    ],
)
def test_normalize_phone_international(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected
    assert hash_phone(raw) == hashlib.sha256(expected.encode()).hexdigest()


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        pytest.param("(425) 555-1234", "US", "+14255551234", id="us-national"),
        pytest.param("425.555.1234", "us", "+14255551234", id="us-lowercase-region"),
        pytest.param("020 7946 0958", "GB", "+442079460958", id="gb-trunk-zero"),
        pytest.param("030 901820", "DE", "+4930901820", id="de-trunk-zero"),
        pytest.param("01 42 68 53 00", "FR", "+33142685300", id="fr"),
        pytest.param("+44 20 7946 0958", "US", "+442079460958", id="international-ignores-region"),
    ],
)
def test_normalize_phone_with_default_region(raw: str, region: str, expected: str) -> None:
    assert normalize_phone(raw, default_region=region) == expected
    assert hash_phone(raw, region) == hashlib.sha256(expected.encode()).hexdigest()


@pytest.mark.parametrize(
    ("raw", "region", "field", "rule"),
    [
        pytest.param("", None, "phone", "must not be empty", id="empty"),
        pytest.param("(425) 555-1234", None, "phone", "has no country code", id="national-without-region"),
        pytest.param("+1 425 555 1234 ext 5", None, "phone", "letters or an extension", id="extension"),
        pytest.param("+1 800 FLOWERS", None, "phone", "letters", id="vanity"),
        pytest.param("+1 425 555+1234", None, "phone", "only digits", id="second-plus"),
        pytest.param("+0 425 555 1234", None, "phone", "must not start with 0", id="country-code-zero"),
        pytest.param("+123456", None, "phone", "7 to 15 digits", id="too-short"),
        pytest.param("+" + "1" * 16, None, "phone", "7 to 15 digits", id="too-long"),
        pytest.param("+", None, "phone", "only digits", id="plus-only"),
        pytest.param("+1 425\x00555 1234", None, "phone", "control characters", id="control-char"),
        pytest.param("12", "US", "phone", "possible phone number", id="region-too-short"),
        pytest.param("555-1234", "ZZ", "default_region", "region code", id="unknown-region"),
        pytest.param("hello", "US", "phone", "letters", id="region-letters"),
    ],
)
def test_normalize_phone_rejects(raw: str, region: str | None, field: str, rule: str) -> None:
    with pytest.raises(InvalidIdentifier) as info:
        normalize_phone(raw, default_region=region)
    assert info.value.field == field
    assert rule in info.value.reason
    digits = "".join(ch for ch in raw if ch.isdigit())
    if len(digits) >= 4:
        assert digits not in str(info.value)


def test_region_without_phonenumbers_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes "import phonenumbers" raise ImportError, as when the extra is absent.
    monkeypatch.setitem(sys.modules, "phonenumbers", None)
    with pytest.raises(InvalidIdentifier, match=r"msclkid-middleware\[phone\]"):
        normalize_phone("(425) 555-1234", default_region="US")
    # International numbers never need it.
    assert normalize_phone("+14255551234", default_region="US") == "+14255551234"


def test_national_number_error_names_the_extra() -> None:
    with pytest.raises(InvalidIdentifier, match=r"msclkid-middleware\[phone\]"):
        normalize_phone("425 555 1234")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(JOHN_HASH, True, id="lower"),
        pytest.param(JOHN_HASH.upper(), True, id="upper"),
        pytest.param(JOHN_HASH[:-1], False, id="63-chars"),
        pytest.param(JOHN_HASH + "0", False, id="65-chars"),
        pytest.param("g" * 64, False, id="not-hex"),
        pytest.param(" " + JOHN_HASH, False, id="padded"),
        pytest.param(None, False, id="none"),
        pytest.param(b"0" * 64, False, id="bytes"),
    ],
)
def test_is_sha256_hex(value: object, expected: bool) -> None:
    assert is_sha256_hex(value) is expected


@pytest.mark.parametrize("func", [hash_email, hash_phone], ids=["email", "phone"])
def test_hashes_pass_through_lowercased(func: object) -> None:
    assert callable(func)
    assert func(JOHN_HASH) == JOHN_HASH
    assert func(JOHN_HASH.upper()) == JOHN_HASH
    assert func(f"  {PHONE_HASH.upper()}\n") == PHONE_HASH


def test_doctests() -> None:
    result = doctest.testmod(identity)
    assert result.attempted >= 5
    assert result.failed == 0


_local = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-+ ÀéÖ", min_size=1, max_size=20)
_domain = st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9]{1,10}){1,3}", fullmatch=True)


@settings(deadline=None)
@given(local=_local, domain=_domain)
def test_email_normalisation_is_idempotent_and_never_leaks(local: str, domain: str) -> None:
    raw = f"{local}@{domain}"
    normal, error = _attempt(normalize_email, raw)
    if error is not None:
        assert raw not in str(error)
        return
    assert normal is not None
    assert normalize_email(normal) == normal
    assert normal == normal.lower().strip()
    assert "+" not in normal.split("@")[0]
    assert "." not in normal.split("@")[0]
    assert hash_email(raw) == hash_email(normal)
    assert is_sha256_hex(hash_email(raw))


@settings(deadline=None)
@given(digits=st.text(alphabet="0123456789", min_size=6, max_size=14), sep=st.sampled_from(["", " ", "-", "."]))
def test_phone_formatting_only_changes_punctuation(digits: str, sep: str) -> None:
    raw = "+" + sep.join(digits[i : i + 3] for i in range(0, len(digits), 3))
    normal, error = _attempt(normalize_phone, raw)
    if error is not None:
        assert digits not in str(error)
        assert digits[0] == "0" or not 7 <= len(digits) <= 15
        return
    assert normal == "+" + digits
    assert normalize_phone("00" + raw[1:]) == normal
    assert hash_phone(raw) == hashlib.sha256(normal.encode()).hexdigest()


def test_benchmark_script_runs() -> None:
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    result = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "identity.py"), "--seconds", "0.03"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[1].startswith("hashlib.sha256 (baseline)")
    assert any(line.startswith("hash_email") and line.endswith("x") for line in lines)


def test_docs_examples_run() -> None:
    import re
    import textwrap
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "identifiers.md").read_text(encoding="utf-8")
    blocks = [textwrap.dedent(body) for _, body in re.findall(r"^( *)```python\n(.*?)^\1```", text, re.S | re.M)]
    assert len(blocks) == 3
    namespace: dict[str, Any] = {}
    for block in blocks:
        exec(compile(block, "docs/identifiers.md", "exec"), namespace)  # noqa: S102 - our own documentation
    assert namespace["ids"].hashed_email == hash_email("janedoe@contoso.com")
