"""A strict decoder of IAB TCF v2.x TC strings (the ``euconsent-v2`` value), without dependencies.

Only what decides "may Microsoft (vendor 1126) store and access information on this device"
matters here, so the core segment is decoded completely and every other segment is checked for
shape only.  The decoder is strict on purpose: the popular ``iab-tcf`` package reads bits past
the end of a truncated string as *consented*, so ``"CO5V"`` decodes there as "every purpose
allowed".  Here any read past the end, any character outside base64url, any version but 2, any
inconsistent length or range, and any input longer than :data:`MAX_TC_STRING_LENGTH` raises
:class:`~msclkid_middleware.errors.TcfDecodeError`, and nothing else is ever raised.  Callers
treat that error as "no consent".

Format: IAB Tech Lab, "Transparency and Consent String with Global Vendor List Format" v2.
"""

from __future__ import annotations

import base64
import bisect
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Final

from msclkid_middleware.errors import TcfDecodeError

__all__ = [
    "CREATED_SKEW",
    "MAX_TC_STRING_LENGTH",
    "MICROSOFT_VENDOR_ID",
    "MIN_POLICY_VERSION",
    "PublisherRestriction",
    "RestrictionType",
    "TCString",
    "VendorSet",
    "decode",
    "microsoft_allowed",
]

#: Microsoft Advertising's vendor ID in the IAB Global Vendor List.
MICROSOFT_VENDOR_ID: Final = 1126

#: Longest TC string accepted, all segments and dots included.  Browsers cap a cookie (name and
#: value) at 4096 bytes and the capture endpoint caps its body at 4 KiB, so a longer "TC string"
#: cannot have come from a CMP; refusing it also bounds the work an attacker can cause.
MAX_TC_STRING_LENGTH: Final = 4096

#: TCF policy version 4 arrived with TCF v2.2; the policy says strings with a smaller policy
#: version are invalid since 30 September 2023.
MIN_POLICY_VERSION: Final = 4

#: How far in the future a string's ``Created`` / ``LastUpdated`` may lie (the CMP runs on the visitor's
#: clock, and CMPs round both to midnight UTC): a string from further ahead was not made by a CMP today.
CREATED_SKEW: Final = timedelta(hours=1)

_PURPOSE_STORE_ACCESS: Final = 1  # "Store and/or access information on a device"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_B64URL_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64URL: Final = frozenset(_B64URL_ALPHABET)
_SEGMENT_TYPES: Final = {1: "disclosed_vendors", 2: "allowed_vendors", 3: "publisher_tc"}
# Encoders pad the last segment to a byte (some to 24 bits, a multiple of both 6 and 8); more
# trailing bits than that means the length and the content disagree.
_MAX_PADDING_BITS: Final = 23


class RestrictionType:
    """Publisher restriction types (2 bits); 3 is undefined and rejected by the decoder."""

    NOT_ALLOWED: Final = 0
    REQUIRE_CONSENT: Final = 1
    REQUIRE_LEGITIMATE_INTEREST: Final = 2


@dataclass(frozen=True, slots=True)
class VendorSet:
    """A set of vendor IDs as encoded in a TC string, kept in its compact form.

    Range encoding can describe 65,535 vendors in 33 bits, so ranges are never expanded into a
    Python set (a short hostile string would otherwise cost seconds and megabytes).  Membership is
    a bit test (bit field) or a binary search over sorted, merged ranges.
    """

    max_vendor_id: int
    is_range_encoded: bool
    #: Bit field as an integer; vendor ``v`` is the bit ``max_vendor_id - v`` (only when not range encoded).
    bits: int = 0
    #: Sorted, non-overlapping, inclusive ``(start, end)`` ranges (only when range encoded).
    ranges: tuple[tuple[int, int], ...] = ()

    def __contains__(self, vendor_id: object) -> bool:
        if not isinstance(vendor_id, int) or not 1 <= vendor_id <= self.max_vendor_id:
            return False
        if not self.is_range_encoded:
            return bool((self.bits >> (self.max_vendor_id - vendor_id)) & 1)
        index = bisect.bisect_right(self.ranges, (vendor_id, self.max_vendor_id + 1)) - 1
        return index >= 0 and self.ranges[index][0] <= vendor_id <= self.ranges[index][1]

    def __iter__(self) -> Iterator[int]:
        if self.is_range_encoded:
            for start, end in self.ranges:
                yield from range(start, end + 1)
        else:
            for vendor_id in range(1, self.max_vendor_id + 1):
                if (self.bits >> (self.max_vendor_id - vendor_id)) & 1:
                    yield vendor_id

    def __len__(self) -> int:
        if self.is_range_encoded:
            return sum(end - start + 1 for start, end in self.ranges)
        return self.bits.bit_count()


@dataclass(frozen=True, slots=True)
class PublisherRestriction:
    """One publisher restriction: for ``purpose_id``, ``restriction_type`` applies to ``vendor_ranges``."""

    purpose_id: int
    restriction_type: int
    vendor_ranges: tuple[tuple[int, int], ...]

    def applies_to(self, vendor_id: int) -> bool:
        return any(start <= vendor_id <= end for start, end in self.vendor_ranges)


@dataclass(frozen=True, slots=True)
class TCString:
    """A decoded TC string: the core segment in full and the types of the segments that followed it."""

    version: int
    created: datetime
    last_updated: datetime
    cmp_id: int
    cmp_version: int
    consent_screen: int
    consent_language: str
    vendor_list_version: int
    policy_version: int
    is_service_specific: bool
    use_non_standard_texts: bool
    special_feature_optins: frozenset[int]
    purposes_consent: frozenset[int]
    purposes_legitimate_interest: frozenset[int]
    purpose_one_treatment: bool
    publisher_cc: str
    vendor_consents: VendorSet
    vendor_legitimate_interests: VendorSet
    publisher_restrictions: tuple[PublisherRestriction, ...]
    #: Types of the segments after the core one (1 disclosed vendors, 2 allowed vendors, 3 publisher TC).
    segment_types: tuple[int, ...] = ()

    def restriction_types(self, purpose_id: int, vendor_id: int) -> frozenset[int]:
        """Restriction types the publisher set on ``purpose_id`` for ``vendor_id``."""
        return frozenset(
            r.restriction_type
            for r in self.publisher_restrictions
            if r.purpose_id == purpose_id and r.applies_to(vendor_id)
        )

    def vendor_allowed(self, vendor_id: int = MICROSOFT_VENDOR_ID, *, now: datetime | None = None) -> bool:
        """True when the string lets ``vendor_id`` store and access information on the device.

        ``now`` (default: the current time) is what ``Created`` / ``LastUpdated`` are checked against.
        """
        if now is None:
            now = datetime.now(UTC)
        return (
            self.version == 2
            and self.policy_version >= MIN_POLICY_VERSION
            # TCF v2.2 abolished global scope: only a service-specific string can grant anything (the
            # reference encoder @iabtcf/core still defaults the flag to false; such strings grant nothing here).
            and self.is_service_specific
            and max(self.created, self.last_updated) <= now + CREATED_SKEW
            and _PURPOSE_STORE_ACCESS in self.purposes_consent
            and vendor_id in self.vendor_consents
            # Purpose 1 can only ever be based on consent, so "require consent" / "require
            # legitimate interest" restrictions do not change it; "not allowed" does.
            and RestrictionType.NOT_ALLOWED not in self.restriction_types(_PURPOSE_STORE_ACCESS, vendor_id)
        )


def microsoft_allowed(
    tc: TCString | str | bytes | None, vendor_id: int = MICROSOFT_VENDOR_ID, *, now: datetime | None = None
) -> bool:
    """May ``vendor_id`` (Microsoft, 1126) store and access information on the device, per ``tc``?

    True only when the TCF policy version is at least 4, the string is service-specific
    (``IsServiceSpecific = 1``: TCF v2.2 has no global scope), it was not created more than
    :data:`CREATED_SKEW` after ``now``, Purpose 1 has consent, the vendor has consent, and the
    publisher did not restrict Purpose 1 for the vendor as "not allowed".  A string that does not
    decode strictly (or ``None``) means no.
    """
    if tc is None:
        return False
    if not isinstance(tc, TCString):
        try:
            tc = decode(tc)
        except TcfDecodeError:
            return False
    return tc.vendor_allowed(vendor_id, now=now)


def decode(tc_string: str | bytes) -> TCString:
    """Decode a TC string strictly; raise :class:`TcfDecodeError` for anything not well formed.

    Accepts ``str`` or ASCII ``bytes``.  Surrounding whitespace is not stripped: a cookie value
    is what the CMP wrote, and a string that needs repair is not a string to trust.
    """
    text = _as_ascii(tc_string)
    if not text:
        raise TcfDecodeError("empty TC string")
    segments = text.split(".")
    core = _Bits(_b64url_bits(segments[0]))
    result = _decode_core(core)
    core.finish()

    segment_types: list[int] = []
    for segment in segments[1:]:
        bits = _b64url_bits(segment)
        segment_type = int(bits[:3], 2) if len(bits) >= 3 else -1
        if segment_type not in _SEGMENT_TYPES:
            raise TcfDecodeError("unknown TC string segment type")
        if segment_type in segment_types:
            raise TcfDecodeError(f"TC string repeats the {_SEGMENT_TYPES[segment_type]} segment")
        segment_types.append(segment_type)
    return replace(result, segment_types=tuple(segment_types)) if segment_types else result


# -- internals ---------------------------------------------------------------------------------------


def _as_ascii(value: object) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        if len(value) > MAX_TC_STRING_LENGTH:
            raise TcfDecodeError(f"TC string longer than {MAX_TC_STRING_LENGTH} characters")
        try:
            return bytes(value).decode("ascii")
        except UnicodeDecodeError:
            raise TcfDecodeError("TC string is not ASCII") from None
    if not isinstance(value, str):
        raise TcfDecodeError("TC string must be str or bytes")
    if len(value) > MAX_TC_STRING_LENGTH:
        raise TcfDecodeError(f"TC string longer than {MAX_TC_STRING_LENGTH} characters")
    if not value.isascii():
        raise TcfDecodeError("TC string is not ASCII")
    return value


def _b64url_bits(segment: str) -> str:
    """The segment's bits as a '0'/'1' string; base64url without padding, strictly."""
    if not segment:
        raise TcfDecodeError("empty TC string segment")
    if not _B64URL.issuperset(segment):
        raise TcfDecodeError("TC string segment is not base64url")
    leftover = len(segment) % 4
    if leftover == 1:
        # Four characters carry three bytes; one character left over cannot carry a byte.
        raise TcfDecodeError("TC string segment has an impossible base64url length")
    # base64 drops the low bits of the last character that do not fill a byte (4 bits after two
    # leftover characters, 2 after three); they are padding and must be zero like the rest.
    if leftover and _B64URL_ALPHABET.index(segment[-1]) & (0b1111 if leftover == 2 else 0b11):
        raise TcfDecodeError("TC string has data after its last field")
    data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    return format(int.from_bytes(data, "big"), f"0{len(data) * 8}b")


class _Bits:
    """A cursor over a bit string that refuses to read past the end."""

    __slots__ = ("_bits", "_pos")

    def __init__(self, bits: str) -> None:
        self._bits = bits
        self._pos = 0

    def take(self, width: int) -> str:
        end = self._pos + width
        if end > len(self._bits):
            raise TcfDecodeError("TC string is truncated")
        chunk = self._bits[self._pos : end]
        self._pos = end
        return chunk

    def uint(self, width: int) -> int:
        return int(self.take(width), 2) if width else 0

    def flag(self) -> bool:
        return self.take(1) == "1"

    def letters(self) -> str:
        first, second = self.uint(6), self.uint(6)
        if first > 25 or second > 25:
            raise TcfDecodeError("TC string has an invalid two-letter code")
        return chr(ord("A") + first) + chr(ord("A") + second)

    def id_set(self, width: int) -> frozenset[int]:
        chunk = self.take(width)
        return frozenset(i + 1 for i, bit in enumerate(chunk) if bit == "1")

    def finish(self) -> None:
        rest = self._bits[self._pos :]
        if len(rest) > _MAX_PADDING_BITS or "1" in rest:
            raise TcfDecodeError("TC string has data after its last field")


def _decode_core(bits: _Bits) -> TCString:
    version = bits.uint(6)
    if version != 2:
        raise TcfDecodeError(f"TC string version {version} is not supported (only 2)")
    created = _deciseconds(bits.uint(36))
    last_updated = _deciseconds(bits.uint(36))
    cmp_id = bits.uint(12)
    cmp_version = bits.uint(12)
    consent_screen = bits.uint(6)
    consent_language = bits.letters()
    vendor_list_version = bits.uint(12)
    policy_version = bits.uint(6)
    is_service_specific = bits.flag()
    use_non_standard_texts = bits.flag()
    special_feature_optins = bits.id_set(12)
    purposes_consent = bits.id_set(24)
    purposes_li = bits.id_set(24)
    purpose_one_treatment = bits.flag()
    publisher_cc = bits.letters()
    vendor_consents = _vendor_section(bits)
    vendor_li = _vendor_section(bits)
    restrictions = tuple(_restriction(bits) for _ in range(bits.uint(12)))
    return TCString(
        version=version,
        created=created,
        last_updated=last_updated,
        cmp_id=cmp_id,
        cmp_version=cmp_version,
        consent_screen=consent_screen,
        consent_language=consent_language,
        vendor_list_version=vendor_list_version,
        policy_version=policy_version,
        is_service_specific=is_service_specific,
        use_non_standard_texts=use_non_standard_texts,
        special_feature_optins=special_feature_optins,
        purposes_consent=purposes_consent,
        purposes_legitimate_interest=purposes_li,
        purpose_one_treatment=purpose_one_treatment,
        publisher_cc=publisher_cc,
        vendor_consents=vendor_consents,
        vendor_legitimate_interests=vendor_li,
        publisher_restrictions=restrictions,
    )


def _deciseconds(value: int) -> datetime:
    # 36 bits of deciseconds reach the year 2187, well inside datetime's range.
    return _EPOCH + timedelta(milliseconds=value * 100)


def _vendor_section(bits: _Bits) -> VendorSet:
    max_vendor_id = bits.uint(16)
    if not bits.flag():
        return VendorSet(max_vendor_id, is_range_encoded=False, bits=bits.uint(max_vendor_id))
    ranges = _range_entries(bits, bits.uint(12))
    if ranges and ranges[-1][1] > max_vendor_id:
        raise TcfDecodeError("TC string names a vendor above its MaxVendorId")
    return VendorSet(max_vendor_id, is_range_encoded=True, ranges=ranges)


def _range_entries(bits: _Bits, count: int) -> tuple[tuple[int, int], ...]:
    entries: list[tuple[int, int]] = []
    for _ in range(count):
        is_range = bits.flag()
        start = bits.uint(16)
        end = bits.uint(16) if is_range else start
        if start == 0 or end < start:
            raise TcfDecodeError("TC string has an invalid vendor range")
        entries.append((start, end))
    entries.sort()
    merged: list[tuple[int, int]] = []
    for start, end in entries:
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return tuple(merged)


def _restriction(bits: _Bits) -> PublisherRestriction:
    purpose_id = bits.uint(6)
    restriction_type = bits.uint(2)
    if purpose_id == 0:
        raise TcfDecodeError("TC string has a publisher restriction on purpose 0")
    if restriction_type == 3:
        raise TcfDecodeError("TC string has an undefined publisher restriction type")
    return PublisherRestriction(purpose_id, restriction_type, _range_entries(bits, bits.uint(12)))
