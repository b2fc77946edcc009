"""Hashed email and phone for enhanced conversions, and the rule that a conversion needs a match key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import InitVar, dataclass
from typing import Any, Final, Protocol, Self

from msclkid_middleware.conversions.base import FlatWireField, compact, valid_click_id, valid_hash, wire_mapping
from msclkid_middleware.conversions.identity import hash_email, hash_phone
from msclkid_middleware.errors import ValidationError

__all__ = ["IDENTIFIERS_WIRE", "MatchKeyed", "UserIdentifiers", "hash_identifiers", "set_match_key"]


@dataclass(frozen=True, slots=True, kw_only=True)
class UserIdentifiers:
    """Hashed email and/or phone for enhanced conversions.

    Give plain values as ``email=`` / ``phone=`` (normalised and hashed here, then forgotten: they
    are not fields, so they are never in ``repr``, equality, the outbox or an error) or ready
    SHA-256 hex digests as ``hashed_email=`` / ``hashed_phone=``.  A plain value given to a hashed
    field is an error, never hashed silently.  ``default_region`` (``"US"``) lets national phone
    numbers be read (needs the ``msclkid-middleware[phone]`` extra).  Empty identifiers are allowed
    and falsy, so callers can build them from optional form fields.
    """

    hashed_email: str | None = None
    hashed_phone: str | None = None
    email: InitVar[str | None] = None
    phone: InitVar[str | None] = None
    default_region: InitVar[str | None] = None

    def __post_init__(self, email: str | None, phone: str | None, default_region: str | None) -> None:
        hash_identifiers(self, "hashed_email", "hashed_phone", email, phone, default_region)

    def __bool__(self) -> bool:
        return self.hashed_email is not None or self.hashed_phone is not None

    def to_wire(self) -> dict[str, Any]:
        """The Campaign Management fields ``HashedEmailAddress`` / ``HashedPhoneNumber``."""
        return compact((("HashedEmailAddress", self.hashed_email), ("HashedPhoneNumber", self.hashed_phone)))

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        # No unknown-member check: these members sit beside the conversion's own in one object.
        data = wire_mapping("identifiers", data)
        return cls(hashed_email=data.get("HashedEmailAddress"), hashed_phone=data.get("HashedPhoneNumber"))


def hash_identifiers(
    obj: object,
    email_field: str,
    phone_field: str,
    email: str | None,
    phone: str | None,
    default_region: str | None,
) -> None:
    """Set ``obj``'s two hash fields from ready digests or from plain ``email`` / ``phone`` (never both)."""
    hashed_email = valid_hash(email_field, getattr(obj, email_field))
    hashed_phone = valid_hash(phone_field, getattr(obj, phone_field))
    if email is not None:
        if hashed_email is not None:
            raise ValidationError("email", f"give email or {email_field}, not both")
        hashed_email = hash_email(email)
    if phone is not None:
        if hashed_phone is not None:
            raise ValidationError("phone", f"give phone or {phone_field}, not both")
        hashed_phone = hash_phone(phone, default_region)
    object.__setattr__(obj, email_field, hashed_email)
    object.__setattr__(obj, phone_field, hashed_phone)


class MatchKeyed(Protocol):
    """A Campaign Management item matched by click ID and/or hashed identifiers."""

    @property
    def msclkid(self) -> str | None: ...

    @property
    def identifiers(self) -> UserIdentifiers | None: ...


def set_match_key(obj: MatchKeyed) -> None:
    """Normalise ``obj.msclkid`` and ``obj.identifiers`` and require at least one of them."""
    msclkid = valid_click_id(obj.msclkid)
    identifiers: object = obj.identifiers
    if identifiers is not None and not isinstance(identifiers, UserIdentifiers):
        raise ValidationError("identifiers", "must be a UserIdentifiers value")
    # Empty identifiers carry nothing; storing None keeps equality and round trips simple.
    identifiers = identifiers or None
    object.__setattr__(obj, "msclkid", msclkid)
    object.__setattr__(obj, "identifiers", identifiers)
    if msclkid is None and identifiers is None:
        raise ValidationError(
            "msclkid", "a click ID or a hashed email/phone (identifiers) is required to match the conversion"
        )


def _identifiers_from_wire(data: Mapping[str, Any]) -> UserIdentifiers | None:
    if data.get("HashedEmailAddress") is None and data.get("HashedPhoneNumber") is None:
        return None
    return UserIdentifiers.from_wire(data)


def _identifiers_to_wire(identifiers: UserIdentifiers) -> dict[str, Any]:
    return identifiers.to_wire()


#: The hashed identifiers of a Campaign Management item: top-level members beside ConversionName.
IDENTIFIERS_WIRE: Final = FlatWireField(
    "identifiers", ("HashedEmailAddress", "HashedPhoneNumber"), _identifiers_to_wire, _identifiers_from_wire
)
