"""Values, builders and hypothesis strategies the conversion model tests share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from msclkid_middleware.conversions import (
    CURRENCY_CODES,
    OfflineConversion,
    UetEvent,
    UetUserData,
    UserIdentifiers,
)
from msclkid_middleware.conversions.identity import hash_email, hash_phone

CLICK = "f894f652ea334e739002f7167ab8f8e3"
EMAIL = "Jane.Doe+shop@Contoso.com"
PHONE = "+1 (425) 555-0199"
EMAIL_HASH = hash_email(EMAIL)
PHONE_HASH = hash_phone(PHONE)
JOHN_HASH = "ec81f3ac7b2b19675bab9d54cf416f9f18cff87c97da5cca82c0f0891bc40602"


def recent(**delta: float) -> datetime:
    """A time in the recent past, whole seconds, so it is inside every window at test time."""
    return (datetime.now(UTC) - timedelta(**delta)).replace(microsecond=0)


def offline(**overrides: Any) -> OfflineConversion:
    fields: dict[str, Any] = {
        "conversion_name": "Purchase",
        "conversion_time": recent(hours=2),
        "value": 149.95,
        "currency": "USD",
        "msclkid": CLICK,
    }
    fields.update(overrides)
    return OfflineConversion(**fields)


def uet_event(**overrides: Any) -> UetEvent:
    fields: dict[str, Any] = {
        "event_id": "e-1",
        "event_time": recent(minutes=1),
        "user_data": UetUserData(msclkid=CLICK),
    }
    fields.update(overrides)
    return UetEvent(**fields)


# --- hypothesis strategies ---

NOW = datetime.now(UTC).replace(microsecond=0)
any_times = st.integers(min_value=0, max_value=89 * 24 * 3600).map(lambda s: NOW - timedelta(seconds=s))
any_uet_times = st.integers(min_value=0, max_value=6 * 24 * 3600).map(lambda s: NOW - timedelta(seconds=s))
any_names = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=100
).filter(lambda s: s == s.strip())
any_clicks = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
any_values = st.floats(min_value=0, max_value=999_999_999_999, allow_nan=False)
any_hashes = st.from_regex(r"[0-9a-f]{64}", fullmatch=True)
any_emails = st.builds(
    lambda local, domain: f"{local}@{domain}.com",
    st.from_regex(r"[A-Za-z][A-Za-z0-9.+]{0,15}", fullmatch=True),
    st.from_regex(r"[a-z]{2,12}", fullmatch=True),
)
any_phones = st.from_regex(r"\+[1-9][0-9]{7,13}", fullmatch=True)
any_identifiers = st.one_of(
    st.none(),
    st.builds(UserIdentifiers, hashed_email=st.one_of(st.none(), any_hashes), hashed_phone=any_hashes),
    st.builds(UserIdentifiers, email=any_emails, phone=st.one_of(st.none(), any_phones)),
)


@st.composite
def offline_conversions(draw: st.DrawFn) -> OfflineConversion:
    identifiers = draw(any_identifiers)
    msclkid = draw(any_clicks if identifiers is None else st.one_of(st.none(), any_clicks))
    credit = draw(st.one_of(st.none(), st.floats(min_value=0.001, max_value=1.0)))
    return OfflineConversion(
        conversion_name=draw(any_names),
        conversion_time=draw(any_times),
        value=draw(st.one_of(st.none(), any_values)),
        currency=draw(st.one_of(st.none(), st.sampled_from(sorted(CURRENCY_CODES)))),
        msclkid=msclkid,
        identifiers=identifiers,
        external_attribution_credit=credit,
        external_attribution_model=None if credit is None else draw(any_names),
    )
