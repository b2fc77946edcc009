"""UserIdentifiers: hashing on construction, raw values never kept, leaked or echoed."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msclkid_middleware.conversions import (
    UetUserData,
    UserIdentifiers,
)
from msclkid_middleware.conversions.identity import hash_email, hash_phone
from msclkid_middleware.errors import InvalidIdentifier, ValidationError
from tests.conversions.conversions_helpers import (
    EMAIL,
    JOHN_HASH,
    PHONE,
    PHONE_HASH,
    any_emails,
    any_phones,
    offline,
    uet_event,
)

# --- UserIdentifiers ---------------------------------------------------------------------------------


def test_user_identifiers_hash_raw_values_and_forget_them() -> None:
    ids = UserIdentifiers(email=EMAIL, phone=PHONE)
    assert ids.hashed_email == hash_email("janedoe@contoso.com")
    assert ids.hashed_phone == hash_phone("+14255550199")
    assert ids.to_wire() == {"HashedEmailAddress": ids.hashed_email, "HashedPhoneNumber": ids.hashed_phone}
    assert [f.name for f in dataclasses.fields(ids)] == ["hashed_email", "hashed_phone"]
    assert not hasattr(ids, "__dict__")
    text = repr(ids)
    for secret in (EMAIL, "janedoe@contoso.com", "4255550199", "contoso"):
        assert secret not in text
    assert UserIdentifiers.from_wire(ids.to_wire()) == ids


def test_user_identifiers_hashes_pass_through_lowercased() -> None:
    ids = UserIdentifiers(hashed_email=JOHN_HASH.upper())
    assert ids.hashed_email == JOHN_HASH
    assert ids == UserIdentifiers(email="john@contoso.com")
    assert ids.to_wire() == {"HashedEmailAddress": JOHN_HASH}


def test_empty_user_identifiers_are_falsy() -> None:
    assert not UserIdentifiers()
    assert UserIdentifiers(hashed_phone=PHONE_HASH)
    assert UserIdentifiers().to_wire() == {}


@pytest.mark.parametrize(
    ("kwargs", "field", "reason"),
    [
        pytest.param({"hashed_email": EMAIL}, "hashed_email", "SHA-256 hex digest", id="plain-email-in-hashed"),
        pytest.param(
            {"hashed_phone": "+14255550199"}, "hashed_phone", "SHA-256 hex digest", id="plain-phone-in-hashed"
        ),
        pytest.param({"hashed_email": JOHN_HASH[:40]}, "hashed_email", "64 hex", id="short-hash"),
        pytest.param({"email": EMAIL, "hashed_email": JOHN_HASH}, "email", "not both", id="email-twice"),
        pytest.param({"phone": PHONE, "hashed_phone": JOHN_HASH}, "phone", "not both", id="phone-twice"),
        pytest.param({"email": "jane@contoso"}, "email", "dot in the domain", id="bad-email"),
        pytest.param({"phone": "425 555 0199"}, "phone", "country code", id="national-phone"),
    ],
)
def test_user_identifiers_reject(kwargs: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        UserIdentifiers(**kwargs)
    assert info.value.field == field
    assert reason in info.value.reason
    for value in kwargs.values():
        assert value not in str(info.value)


def test_user_identifiers_default_region() -> None:
    ids = UserIdentifiers(phone="(425) 555-0199", default_region="US")
    assert ids.hashed_phone == PHONE_HASH


def test_validation_errors_are_value_errors_and_identity_errors_are_validation_errors() -> None:
    assert issubclass(ValidationError, ValueError)
    assert issubclass(InvalidIdentifier, ValidationError)
    with pytest.raises(InvalidIdentifier):
        UserIdentifiers(email="nope")


@settings(max_examples=150, deadline=None)
@given(email=any_emails, phone=any_phones, kind=st.sampled_from(["offline", "uet", "ids"]))
def test_raw_email_and_phone_never_leak(email: str, phone: str, kind: str) -> None:
    digits = phone[1:]
    if kind == "offline":
        obj: Any = offline(identifiers=UserIdentifiers(email=email, phone=phone))
    elif kind == "uet":
        obj = uet_event(user_data=UetUserData(email=email, phone=phone))
    else:
        obj = UserIdentifiers(email=email, phone=phone)
    text = repr(obj) + json.dumps(obj.to_wire())
    local = email.split("@")[0]
    assert email not in text
    assert email.lower() not in text
    assert digits not in text
    if len(local) >= 6:
        assert local not in text


@settings(max_examples=150, deadline=None)
@given(
    garbage=st.one_of(
        st.from_regex(r"[a-z]{4,10}@[a-z]{3,8}", fullmatch=True),
        st.from_regex(r"[a-z]{3,8}\.[a-z]{4,10}@@[a-z]{3,8}\.com", fullmatch=True),
        st.from_regex(r"[0-9]{6,12}", fullmatch=True),
        st.from_regex(r"\+0[0-9]{8,12}", fullmatch=True),
    ),
    field=st.sampled_from(["email", "phone", "hashed_email", "hashed_phone"]),
)
def test_errors_never_contain_the_value(garbage: str, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        UserIdentifiers(**{field: garbage})
    assert garbage not in str(info.value)
    assert garbage not in repr(info.value)
