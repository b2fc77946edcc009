"""A TC string encoder for tests: builds TCF v2 strings field by field, written from the IAB spec.

It is deliberately independent of ``msclkid_middleware.capture.tcf`` (no shared helpers), so round trips
check the decoder against a second reading of the format.  ``TCSpec`` holds every core field with
a valid default (policy version 4, Purpose 1 and Microsoft's vendor 1126 consented), so a test
changes only the field it is about: ``TCSpec(purposes_consent=(2,)).encode()``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
Encoding = Literal["bitfield", "range"]
Range = tuple[int, int]


def uint(value: int, width: int) -> str:
    if not 0 <= value < (1 << width):
        raise ValueError(f"{value} does not fit in {width} bits")
    return format(value, f"0{width}b") if width else ""


def letters(code: str) -> str:
    first, second = code.upper()[0], code.upper()[1]
    return uint(ord(first) - ord("A"), 6) + uint(ord(second) - ord("A"), 6)


def id_bits(ids: Iterable[int], width: int) -> str:
    chosen = set(ids)
    return "".join("1" if i in chosen else "0" for i in range(1, width + 1))


def to_ranges(ids: Iterable[int]) -> list[Range]:
    ranges: list[Range] = []
    for vendor_id in sorted(set(ids)):
        if ranges and vendor_id == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], vendor_id)
        else:
            ranges.append((vendor_id, vendor_id))
    return ranges


def range_entries(ranges: Sequence[Range]) -> str:
    out = [uint(len(ranges), 12)]
    for start, end in ranges:
        if start == end:
            out.append("0" + uint(start, 16))
        else:
            out.append("1" + uint(start, 16) + uint(end, 16))
    return "".join(out)


def vendor_section(
    ids: Iterable[int], encoding: Encoding, max_vendor_id: int | None = None, ranges: Sequence[Range] | None = None
) -> str:
    ids = set(ids)
    highest = max((end for _, end in ranges), default=0) if ranges is not None else max(ids, default=0)
    max_id = highest if max_vendor_id is None else max_vendor_id
    if encoding == "bitfield":
        return uint(max_id, 16) + "0" + id_bits(ids, max_id)
    return uint(max_id, 16) + "1" + range_entries(to_ranges(ids) if ranges is None else ranges)


def to_b64url(bits: str, pad_to: int = 24) -> str:
    """Pad ``bits`` with zeros to a multiple of ``pad_to`` (24 as the IAB's library does, 8 = bytes) and encode."""
    if len(bits) % pad_to:
        bits += "0" * (pad_to - len(bits) % pad_to)
    if len(bits) % 6:
        bits += "0" * (6 - len(bits) % 6)
    return "".join(ALPHABET[int(bits[i : i + 6], 2)] for i in range(0, len(bits), 6))


def deciseconds(moment: datetime) -> int:
    return round(moment.timestamp() * 10)


@dataclass(frozen=True)
class Restriction:
    purpose_id: int
    restriction_type: int
    vendors: tuple[int, ...] = ()
    ranges: tuple[Range, ...] | None = None

    def covered(self) -> set[int]:
        if self.ranges is None:
            return set(self.vendors)
        return {v for start, end in self.ranges for v in range(start, end + 1)}

    def bits(self) -> str:
        ranges = list(self.ranges) if self.ranges is not None else to_ranges(self.vendors)
        return uint(self.purpose_id, 6) + uint(self.restriction_type, 2) + range_entries(ranges)


@dataclass(frozen=True)
class TCSpec:
    """Every core-segment field of a TC string, defaulting to "Microsoft may store" under policy 4."""

    version: int = 2
    created: datetime = datetime(2025, 3, 1, 12, 0, 0, 100000, tzinfo=UTC)
    last_updated: datetime = datetime(2025, 3, 2, 8, 30, 0, tzinfo=UTC)
    cmp_id: int = 300
    cmp_version: int = 7
    consent_screen: int = 2
    consent_language: str = "DE"
    vendor_list_version: int = 120
    policy_version: int = 4
    is_service_specific: bool = True
    use_non_standard_texts: bool = False
    special_feature_optins: tuple[int, ...] = ()
    purposes_consent: tuple[int, ...] = (1, 2, 3, 4, 7, 9, 10)
    purposes_li: tuple[int, ...] = (2, 7, 9, 10)
    purpose_one_treatment: bool = False
    publisher_cc: str = "DE"
    vendor_consents: tuple[int, ...] = (32, 755, 1126)
    vendor_consent_encoding: Encoding = "bitfield"
    vendor_consent_max: int | None = None
    vendor_consent_ranges: tuple[Range, ...] | None = None
    vendor_li: tuple[int, ...] = (32,)
    vendor_li_encoding: Encoding = "bitfield"
    restrictions: tuple[Restriction, ...] = ()
    #: Raw segments appended after the core one, already encoded (see :func:`segment`).
    segments: tuple[str, ...] = ()
    pad_to: int = 24
    extra_core_bits: str = field(default="")

    def replace(self, **changes: object) -> TCSpec:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def core_bits(self) -> str:
        parts = [
            uint(self.version, 6),
            uint(deciseconds(self.created), 36),
            uint(deciseconds(self.last_updated), 36),
            uint(self.cmp_id, 12),
            uint(self.cmp_version, 12),
            uint(self.consent_screen, 6),
            letters(self.consent_language),
            uint(self.vendor_list_version, 12),
            uint(self.policy_version, 6),
            "1" if self.is_service_specific else "0",
            "1" if self.use_non_standard_texts else "0",
            id_bits(self.special_feature_optins, 12),
            id_bits(self.purposes_consent, 24),
            id_bits(self.purposes_li, 24),
            "1" if self.purpose_one_treatment else "0",
            letters(self.publisher_cc),
            vendor_section(
                self.vendor_consents,
                self.vendor_consent_encoding,
                self.vendor_consent_max,
                self.vendor_consent_ranges,
            ),
            vendor_section(self.vendor_li, self.vendor_li_encoding),
            uint(len(self.restrictions), 12),
            *(r.bits() for r in self.restrictions),
            self.extra_core_bits,
        ]
        return "".join(parts)

    def encode(self) -> str:
        return ".".join([to_b64url(self.core_bits(), self.pad_to), *self.segments])


def segment(segment_type: int, vendors: Iterable[int] = (1, 9)) -> str:
    """A disclosed-vendors (1) / allowed-vendors (2) style segment: type, then a vendor section."""
    return to_b64url(uint(segment_type, 3) + vendor_section(vendors, "bitfield"))


def publisher_tc_segment(consents: Iterable[int] = (1,), li: Iterable[int] = (), custom: int = 0) -> str:
    """A publisher purposes segment (type 3): purposes consent, purposes LI, custom purpose bits."""
    bits = uint(3, 3) + id_bits(consents, 24) + id_bits(li, 24) + uint(custom, 6) + "0" * (2 * custom)
    return to_b64url(bits)
