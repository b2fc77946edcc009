"""The strict TCF v2 decoder: round trips through an independent encoder, hostile input, the Microsoft gate."""

from __future__ import annotations

import dataclasses
import importlib.util
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msclkid_middleware.capture.tcf import (
    CREATED_SKEW,
    MAX_TC_STRING_LENGTH,
    MICROSOFT_VENDOR_ID,
    TCString,
    VendorSet,
    decode,
    microsoft_allowed,
)
from msclkid_middleware.errors import TcfDecodeError
from tests.tcf_encoder import (
    Restriction,
    TCSpec,
    publisher_tc_segment,
    range_entries,
    segment,
    to_b64url,
    uint,
)

ALLOWED = TCSpec()

#: Strings every consent check must read as "no consent" (reliability-security.md, appendix A.1:
#: iab-tcf 0.2.2 reads the first two as "every purpose allowed").
HOSTILE = [
    pytest.param("CO5V", id="truncated-CO5V"),
    pytest.param("CAAAAAAAAAAAAAAA", id="truncated-CAAAAAAAAAAAAAAA"),
    pytest.param("C", id="one-char"),
    pytest.param("!!!!", id="not-base64url"),
    pytest.param("A" * 5000, id="over-long"),
    pytest.param("\udcff", id="lone-surrogate"),
    pytest.param("", id="empty"),
    pytest.param(".", id="only-dot"),
    pytest.param("BObdrPUOevsguAfDqFENCNAAAAAmeAAA", id="tcf-v1-string"),
    pytest.param(b"\xff\xfe", id="non-ascii-bytes"),
    pytest.param("CO5VTlWO5VTlWH1AAAENAwCwAIAAAAAAAIAAAAoAAAAA=", id="base64-padding"),
    pytest.param("CO5VTlWO5VTlWH1AAAENAwCwAIAAAAAAAIAAAAoAAAAA ", id="trailing-space"),
    pytest.param("CO5VTlWO5VTlWH1A+AENAwCwAIAAAAAAAIAAAAoAAAAA", id="plain-base64-char"),
    pytest.param("COÅVTlWO5VTlWH1AAAENAwCwAIAAAAAAAIAAAAoAAAAA", id="non-ascii-char"),
    pytest.param(None, id="none"),
    pytest.param(1126, id="int"),
]


def expect_decoded(spec: TCSpec, tc: TCString) -> None:
    assert tc.version == spec.version
    assert tc.created == spec.created
    assert tc.last_updated == spec.last_updated
    assert (tc.cmp_id, tc.cmp_version, tc.consent_screen) == (spec.cmp_id, spec.cmp_version, spec.consent_screen)
    assert tc.consent_language == spec.consent_language
    assert tc.vendor_list_version == spec.vendor_list_version
    assert tc.policy_version == spec.policy_version
    assert tc.is_service_specific is spec.is_service_specific
    assert tc.use_non_standard_texts is spec.use_non_standard_texts
    assert tc.special_feature_optins == frozenset(spec.special_feature_optins)
    assert tc.purposes_consent == frozenset(spec.purposes_consent)
    assert tc.purposes_legitimate_interest == frozenset(spec.purposes_li)
    assert tc.purpose_one_treatment is spec.purpose_one_treatment
    assert tc.publisher_cc == spec.publisher_cc
    assert sorted(tc.vendor_consents) == sorted(set(spec.vendor_consents))
    assert len(tc.vendor_consents) == len(set(spec.vendor_consents))
    assert tc.vendor_consents.is_range_encoded is (spec.vendor_consent_encoding == "range")
    assert sorted(tc.vendor_legitimate_interests) == sorted(set(spec.vendor_li))
    assert len(tc.publisher_restrictions) == len(spec.restrictions)
    for got, want in zip(tc.publisher_restrictions, spec.restrictions, strict=True):
        assert (got.purpose_id, got.restriction_type) == (want.purpose_id, want.restriction_type)
        assert {v for s, e in got.vendor_ranges for v in range(s, e + 1)} == want.covered()


def oracle_allowed(spec: TCSpec, vendor_id: int = MICROSOFT_VENDOR_ID) -> bool:
    """The Microsoft gate computed from the encoder's parameters, not from decoded data."""
    restricted = any(
        r.purpose_id == 1 and r.restriction_type == 0 and vendor_id in r.covered() for r in spec.restrictions
    )
    return (
        spec.policy_version >= 4
        and spec.is_service_specific
        and max(spec.created, spec.last_updated) <= datetime.now(UTC) + CREATED_SKEW
        and 1 in spec.purposes_consent
        and vendor_id in spec.vendor_consents
        and not restricted
    )


# -- round trips ------------------------------------------------------------------------------------

ROUND_TRIPS = [
    pytest.param(ALLOWED, id="defaults"),
    pytest.param(TCSpec(vendor_consent_encoding="range"), id="vendor-consents-range"),
    pytest.param(TCSpec(vendor_li_encoding="range", vendor_li=(1, 2, 3, 10, 11, 1126)), id="vendor-li-range"),
    pytest.param(TCSpec(vendor_consents=()), id="no-vendors-bitfield"),
    pytest.param(TCSpec(vendor_consents=(), vendor_consent_encoding="range"), id="no-vendors-range"),
    pytest.param(TCSpec(vendor_consents=tuple(range(1, 1400))), id="1399-vendors-bitfield"),
    pytest.param(
        TCSpec(vendor_consents=tuple(range(1, 1400)), vendor_consent_encoding="range"), id="1399-vendors-range"
    ),
    pytest.param(TCSpec(purposes_consent=tuple(range(1, 25)), purposes_li=tuple(range(1, 25))), id="all-purposes"),
    pytest.param(TCSpec(special_feature_optins=(1, 2, 12)), id="special-features"),
    pytest.param(
        TCSpec(is_service_specific=False, use_non_standard_texts=True, purpose_one_treatment=True), id="flags"
    ),
    pytest.param(TCSpec(consent_language="ZZ", publisher_cc="AA"), id="letters-edges"),
    pytest.param(TCSpec(policy_version=5, version=2, vendor_list_version=4095, cmp_id=4095), id="max-values"),
    pytest.param(
        TCSpec(
            restrictions=(
                Restriction(1, 0, (1126, 1127, 1128)),
                Restriction(2, 1, (32,)),
                Restriction(7, 2, (5, 6, 9)),
            )
        ),
        id="restrictions",
    ),
    pytest.param(TCSpec(segments=(segment(1), segment(2, (53,)), publisher_tc_segment())), id="all-segments"),
    pytest.param(TCSpec(pad_to=8), id="byte-padding"),
    pytest.param(TCSpec(pad_to=8, vendor_consents=(1126, 1127, 1128)), id="byte-padding-2"),
    pytest.param(
        TCSpec(created=datetime(2023, 9, 30, tzinfo=UTC), last_updated=datetime(2023, 9, 30, tzinfo=UTC)),
        id="day-precision-dates",
    ),
]


@pytest.mark.parametrize("spec", ROUND_TRIPS)
def test_round_trip(spec: TCSpec) -> None:
    tc = decode(spec.encode())
    expect_decoded(spec, tc)
    assert microsoft_allowed(tc) is oracle_allowed(spec)


def test_segment_types_are_reported() -> None:
    tc = decode(TCSpec(segments=(segment(1), publisher_tc_segment())).encode())
    assert tc.segment_types == (1, 3)
    assert decode(ALLOWED.encode()).segment_types == ()


def test_bytes_input_is_accepted() -> None:
    assert decode(ALLOWED.encode().encode("ascii")) == decode(ALLOWED.encode())


def test_decoded_value_is_frozen() -> None:
    tc = decode(ALLOWED.encode())
    with pytest.raises(AttributeError):
        tc.policy_version = 9  # type: ignore[misc]
    assert hash(tc.vendor_consents) == hash(decode(ALLOWED.encode()).vendor_consents)


def test_interop_vector_from_another_implementation() -> None:
    # The Go library SirDataFR/iabtcfv2 tests its decoder with this CMP-made string (core with
    # range-encoded vendors, disclosed vendors, publisher TC); it must decode here too.
    value = (
        "COxR03kOxR1CqBcABCENAgCMAP_AAH_AAAqIF3EXySoGY2thI2YVFxBEIYwfJxyigMgChgQIsSwNQIeFLBoGLiAAHBGYJAQAGBAEEACBAQIk"
        "HGBMCQAAgAgBiRCMQEGMCzNIBIBAggEbY0FACCVmHkHSmZCY7064O__QLuIJEFQMAkSBAIACLECIQwAQDiAAAYAlAAABAhIaAAgIWBQEeAAAAC"
        "AwAAgAAABBAAACAAQAAICIAAABAAAgAiAQAAAAGgIQAACBABACRIAAAEANCAAgiCEAQg4EAo4AAA.IF3EXySoGY2tho2YVFzBEIYwfJxyigMgSh"
        "gQIsS0NQIeFLBoGPiAAHBGYJAQAGBAkkACBAQIsHGBMCQABgAgRiRCMQEGMDzNIBIBAggkbY0FACCVmnkHS3ZCY70-6u__QA.elAAAAAAAWA"
    )
    tc = decode(value)
    assert (tc.version, tc.cmp_id, tc.consent_language, tc.publisher_cc) == (2, 92, "EN", "FR")
    assert tc.purposes_consent == frozenset(range(1, 11))
    assert tc.segment_types == (1, 3)
    assert tc.policy_version == 2
    assert not microsoft_allowed(tc)  # policy version 2 is invalid since September 2023


def test_reference_appendix_string_decodes_as_documented() -> None:
    # reliability-security.md A.1: "well-formed string, correct": purpose 1 only, policy version 2.
    tc = decode("CO5VTlWO5VTlWH1AAAENAwCwAIAAAAAAAIAAAAoAAAAA.YAAAAAAAAAA")
    assert tc.purposes_consent == frozenset({1})
    assert tc.policy_version == 2
    assert MICROSOFT_VENDOR_ID not in tc.vendor_consents
    assert not microsoft_allowed(tc)


# -- the Microsoft gate -----------------------------------------------------------------------------

R = Restriction
GATE = [
    pytest.param(ALLOWED, True, id="p1+vendor+policy4"),
    pytest.param(TCSpec(policy_version=5), True, id="policy-5"),
    pytest.param(TCSpec(vendor_consent_encoding="range"), True, id="vendor-in-range-encoding"),
    pytest.param(
        TCSpec(vendor_consents=(1, 1126), vendor_consent_ranges=((1, 2000),), vendor_consent_encoding="range"),
        True,
        id="vendor-inside-wide-range",
    ),
    pytest.param(
        TCSpec(purposes_consent=(1,), purposes_li=(), vendor_consents=(1126,), vendor_li=()), True, id="minimal-grant"
    ),
    pytest.param(TCSpec(policy_version=2), False, id="policy-2"),
    pytest.param(TCSpec(policy_version=3), False, id="policy-3"),
    # TCF v2.2 abolished global scope (issue 19): IsServiceSpecific = 0 grants nothing, whatever
    # @iabtcf/core's TCModel defaults the flag to.
    pytest.param(TCSpec(is_service_specific=False), False, id="global-scope-grants-nothing"),
    pytest.param(TCSpec(policy_version=0), False, id="policy-0"),
    pytest.param(TCSpec(purposes_consent=(2, 3, 4)), False, id="vendor-without-p1"),
    pytest.param(TCSpec(purposes_consent=(), purposes_li=(1,)), False, id="p1-legitimate-interest-only"),
    pytest.param(TCSpec(vendor_consents=(32, 755)), False, id="p1-without-vendor"),
    pytest.param(TCSpec(vendor_consents=(1125, 1127)), False, id="neighbours-only"),
    pytest.param(TCSpec(vendor_consents=(32,), vendor_li=(1126,)), False, id="vendor-li-only"),
    pytest.param(TCSpec(vendor_consents=(1, 1125), vendor_consent_encoding="range"), False, id="range-ends-below"),
    pytest.param(TCSpec(vendor_consents=(), vendor_consent_max=2000), False, id="empty-bitfield-max-2000"),
    pytest.param(TCSpec(restrictions=(R(1, 0, (1126,)),)), False, id="restriction-0-on-p1"),
    pytest.param(TCSpec(restrictions=(R(1, 0, (), ((1000, 1200),)),)), False, id="restriction-0-range-on-p1"),
    pytest.param(TCSpec(restrictions=(R(2, 1, (7,)), R(1, 0, (1126,)))), False, id="restriction-0-second-entry"),
    pytest.param(TCSpec(restrictions=(R(1, 0, (32,)),)), True, id="restriction-0-other-vendor"),
    pytest.param(TCSpec(restrictions=(R(2, 0, (1126,)),)), True, id="restriction-0-other-purpose"),
    pytest.param(TCSpec(restrictions=(R(1, 1, (1126,)),)), True, id="restriction-1-on-p1"),
    pytest.param(TCSpec(restrictions=(R(1, 2, (1126,)),)), True, id="restriction-2-on-p1"),
    pytest.param(TCSpec(purpose_one_treatment=True, purposes_consent=()), False, id="p1-not-disclosed"),
    pytest.param(TCSpec(segments=(segment(1),)), True, id="with-disclosed-vendors-segment"),
]


@pytest.mark.parametrize(("spec", "allowed"), GATE)
def test_microsoft_gate(spec: TCSpec, allowed: bool) -> None:
    value = spec.encode()
    assert microsoft_allowed(value) is allowed
    assert microsoft_allowed(decode(value)) is allowed
    if spec.vendor_consent_ranges is None:
        assert oracle_allowed(spec) is allowed


def test_other_vendor_id() -> None:
    value = TCSpec(vendor_consents=(32,), restrictions=(R(1, 0, (1126,)),)).encode()
    assert microsoft_allowed(value, vendor_id=32)
    assert not microsoft_allowed(value)


def test_none_means_no_consent() -> None:
    assert microsoft_allowed(None) is False


# -- hostile and malformed input --------------------------------------------------------------------


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_strings_mean_no_consent(value: Any) -> None:
    with pytest.raises(TcfDecodeError):
        decode(value)
    assert microsoft_allowed(value) is False


def _with_core_bits(bits: str, *segments: str) -> str:
    return ".".join([to_b64url(bits), *segments])


def _header(spec: TCSpec = ALLOWED) -> str:
    """The 213 fixed-width bits of a valid core segment."""
    return spec.core_bits()[:213]


MALFORMED = [
    pytest.param(TCSpec(version=1).encode(), id="version-1"),
    pytest.param(TCSpec(version=3).encode(), id="version-3"),
    pytest.param(TCSpec(version=0).encode(), id="version-0"),
    pytest.param(_with_core_bits(_header()), id="no-vendor-sections"),
    pytest.param(_with_core_bits(_header() + uint(1126, 16) + "0" + "1" * 600), id="bitfield-shorter-than-max"),
    pytest.param(
        TCSpec(vendor_consent_encoding="range", vendor_consent_max=1000).encode(), id="range-above-max-vendor"
    ),
    pytest.param(
        TCSpec(
            vendor_consent_encoding="range", vendor_consent_ranges=((1126, 1000),), vendor_consent_max=1126
        ).encode(),
        id="range-end-before-start",
    ),
    pytest.param(
        TCSpec(vendor_consent_encoding="range", vendor_consent_ranges=((0, 1126),)).encode(), id="range-from-vendor-0"
    ),
    pytest.param(
        TCSpec(vendor_consent_encoding="range", vendor_consent_ranges=((0, 0),), vendor_consent_max=5).encode(),
        id="single-vendor-0",
    ),
    pytest.param(
        _with_core_bits(_header() + uint(1126, 16) + "1" + uint(3, 12) + "0" + uint(1126, 16)),
        id="range-count-larger-than-entries",
    ),
    pytest.param(TCSpec(restrictions=(R(1, 3, (1126,)),)).encode(), id="restriction-type-3"),
    pytest.param(TCSpec(restrictions=(R(0, 0, (1126,)),)).encode(), id="restriction-purpose-0"),
    pytest.param(TCSpec(restrictions=(R(1, 0, (), ((1126, 1),)),)).encode(), id="restriction-range-reversed"),
    pytest.param(TCSpec(extra_core_bits=uint(2, 12) + "0" + uint(1126, 16)).encode(), id="restriction-count-lies"),
    pytest.param(TCSpec(extra_core_bits="1").encode(), id="trailing-one-bit"),
    pytest.param(TCSpec(extra_core_bits="0" * 24, pad_to=8).encode(), id="trailing-24-zero-bits"),
    pytest.param(TCSpec(extra_core_bits="0" * 100).encode(), id="trailing-garbage-zeros"),
    pytest.param(ALLOWED.encode() + "AAAA", id="extra-characters"),
    pytest.param(ALLOWED.encode() + ".", id="empty-trailing-segment"),
    pytest.param(ALLOWED.encode() + "..IAAA", id="empty-middle-segment"),
    pytest.param("." + ALLOWED.encode(), id="empty-core"),
    pytest.param(ALLOWED.encode() + ".AAAA", id="segment-type-0"),
    pytest.param(ALLOWED.encode() + "." + to_b64url(uint(4, 3) + "0" * 21), id="segment-type-4"),
    pytest.param(ALLOWED.encode() + "." + to_b64url(uint(7, 3) + "0" * 21), id="segment-type-7"),
    pytest.param(ALLOWED.encode() + "." + segment(1) + "." + segment(1), id="segment-repeated"),
    pytest.param(ALLOWED.encode() + ".I!AA", id="segment-not-base64url"),
    pytest.param(ALLOWED.encode() + ".IAAAA", id="segment-impossible-length"),
    pytest.param(ALLOWED.encode() + "." + segment(1) + "é", id="segment-non-ascii"),
    pytest.param(ALLOWED.encode()[:-4] + ALLOWED.encode()[-4:].replace("A", "a", 1), id="padding-not-zero"),
]


@pytest.mark.parametrize("value", MALFORMED)
def test_malformed_strings_are_rejected(value: str) -> None:
    with pytest.raises(TcfDecodeError):
        decode(value)
    assert microsoft_allowed(value) is False


def test_invalid_letters_are_rejected() -> None:
    bits = ALLOWED.core_bits()
    language_at = 6 + 36 + 36 + 12 + 12 + 6
    broken = bits[:language_at] + uint(26, 6) + bits[language_at + 6 :]
    with pytest.raises(TcfDecodeError, match="two-letter"):
        decode(to_b64url(broken))
    cc_at = 213 - 12
    broken = bits[:cc_at] + uint(4, 6) + uint(63, 6) + bits[cc_at + 12 :]
    with pytest.raises(TcfDecodeError, match="two-letter"):
        decode(to_b64url(broken))


def test_every_truncation_is_an_error_or_only_drops_padding() -> None:
    value = TCSpec(vendor_consent_encoding="range", restrictions=(R(1, 1, (5,)),), segments=(segment(1),)).encode()
    full = decode(value)
    for end in range(len(value)):
        prefix = value[:end]
        try:
            tc = decode(prefix)
        except TcfDecodeError:
            continue
        # Only padding characters may go: the decoded value must be the same string.
        assert tc.vendor_consents == full.vendor_consents
        assert tc.publisher_restrictions == full.publisher_restrictions
        assert end >= value.index(".") - 3


def test_length_cap_is_exact() -> None:
    core = ALLOWED.encode()
    filler_length = MAX_TC_STRING_LENGTH - len(core) - 1
    # A segment of type 1 ("I" = 001000) is only checked for shape, so it can pad to the cap;
    # keep its length a valid base64url length.
    while filler_length % 4 == 1:
        filler_length -= 1
    at_cap = core + "." + "I" + "A" * (filler_length - 1)
    assert len(at_cap) <= MAX_TC_STRING_LENGTH
    assert decode(at_cap).segment_types == (1,)
    over = core + "." + "I" + "A" * (MAX_TC_STRING_LENGTH - len(core) - 1)
    assert len(over) == MAX_TC_STRING_LENGTH + 1
    with pytest.raises(TcfDecodeError, match="longer than 4096"):
        decode(over)
    with pytest.raises(TcfDecodeError, match="longer than 4096"):
        decode(over.encode())


def test_hostile_ranges_are_not_expanded() -> None:
    # 700 range entries (what fits under the cap) each covering every vendor ID: 46 million IDs if expanded.
    ranges = ((1, 65535),) * 700
    bits = _header() + uint(65535, 16) + "1" + range_entries(ranges) + uint(0, 16) + "0" + uint(0, 12)
    value = to_b64url(bits)
    assert len(value) <= MAX_TC_STRING_LENGTH
    started = time.perf_counter()
    tc = decode(value)
    elapsed = time.perf_counter() - started
    assert tc.vendor_consents.ranges == ((1, 65535),)
    assert MICROSOFT_VENDOR_ID in tc.vendor_consents
    assert len(tc.vendor_consents) == 65535
    assert elapsed < 1.0


def test_vendor_set_membership_edges() -> None:
    bitfield = VendorSet(max_vendor_id=3, is_range_encoded=False, bits=0b101)
    assert list(bitfield) == [1, 3]
    assert [v in bitfield for v in (0, 1, 2, 3, 4, -1)] == [False, True, False, True, False, False]
    assert "1" not in bitfield
    ranged = VendorSet(max_vendor_id=20, is_range_encoded=True, ranges=((2, 4), (10, 10), (15, 20)))
    assert [v for v in range(23) if v in ranged] == [2, 3, 4, 10, 15, 16, 17, 18, 19, 20]
    assert list(ranged) == [2, 3, 4, 10, 15, 16, 17, 18, 19, 20]
    assert len(ranged) == 10


def test_overlapping_ranges_are_merged() -> None:
    spec = TCSpec(
        vendor_consent_encoding="range",
        vendor_consent_ranges=((10, 20), (1, 3), (15, 30), (4, 4), (40, 40)),
        vendor_consent_max=1126,
    )
    assert decode(spec.encode()).vendor_consents.ranges == ((1, 4), (10, 30), (40, 40))


# -- properties -------------------------------------------------------------------------------------

vendor_ids = st.integers(min_value=1, max_value=1400)
purposes = st.lists(st.integers(min_value=1, max_value=24), max_size=24).map(lambda v: tuple(sorted(set(v))))
restrictions = st.lists(
    st.builds(
        Restriction,
        purpose_id=st.integers(min_value=1, max_value=11),
        restriction_type=st.integers(min_value=0, max_value=2),
        vendors=st.lists(st.sampled_from([1, 32, 1125, 1126, 1127, 1400]), min_size=1, max_size=4).map(
            lambda v: tuple(sorted(set(v)))
        ),
    ),
    max_size=4,
).map(tuple)
specs = st.builds(
    TCSpec,
    created=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)).map(
        lambda d: d.replace(microsecond=d.microsecond // 100000 * 100000)
    ),
    cmp_id=st.integers(min_value=0, max_value=4095),
    consent_language=st.sampled_from(["EN", "DE", "FR", "ZZ", "AA"]),
    policy_version=st.integers(min_value=0, max_value=63),
    is_service_specific=st.booleans(),
    special_feature_optins=st.lists(st.integers(min_value=1, max_value=12), max_size=12).map(
        lambda v: tuple(sorted(set(v)))
    ),
    purposes_consent=purposes,
    purposes_li=purposes,
    purpose_one_treatment=st.booleans(),
    vendor_consents=st.lists(st.one_of(vendor_ids, st.just(1126)), max_size=60).map(lambda v: tuple(sorted(set(v)))),
    vendor_consent_encoding=st.sampled_from(["bitfield", "range"]),
    vendor_li=st.lists(vendor_ids, max_size=20).map(lambda v: tuple(sorted(set(v)))),
    vendor_li_encoding=st.sampled_from(["bitfield", "range"]),
    restrictions=restrictions,
    segments=st.lists(st.sampled_from([1, 2]), unique=True).map(lambda ts: tuple(segment(t) for t in ts)),
    pad_to=st.sampled_from([8, 24]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs)
def test_property_round_trip_and_gate(spec: TCSpec) -> None:
    tc = decode(spec.encode())
    expect_decoded(spec, tc)
    assert microsoft_allowed(tc) is oracle_allowed(spec)


@settings(max_examples=1000, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300), st.text(alphabet="ABCDEFGIQgw-_.", max_size=300)))
def test_property_any_input_decodes_or_raises_tcf_error(value: str | bytes) -> None:
    try:
        tc = decode(value)
    except TcfDecodeError:
        assert microsoft_allowed(value) is False
    else:
        assert tc.version == 2
        assert microsoft_allowed(value) is tc.vendor_allowed()


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_property_mutated_valid_strings_never_raise_anything_else(data: st.DataObject) -> None:
    value = data.draw(st.sampled_from([ALLOWED.encode(), TCSpec(vendor_consent_encoding="range").encode()]))
    position = data.draw(st.integers(min_value=0, max_value=len(value) - 1))
    action = data.draw(st.sampled_from(["replace", "delete", "insert", "truncate"]))
    char = data.draw(st.characters(codec="utf-8") | st.sampled_from(list("AB_-.")))
    if action == "replace":
        mutated = value[:position] + char + value[position + 1 :]
    elif action == "delete":
        mutated = value[:position] + value[position + 1 :]
    elif action == "insert":
        mutated = value[:position] + char + value[position:]
    else:
        mutated = value[:position]
    try:
        decode(mutated)
    except TcfDecodeError:
        assert microsoft_allowed(mutated) is False


def _load_fuzz_harness() -> Any:
    path = Path(__file__).resolve().parents[2] / "fuzz" / "fuzz_tcf.py"
    spec = importlib.util.spec_from_file_location("fuzz_tcf", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fuzz_harness_seed_corpus_passes() -> None:
    harness = _load_fuzz_harness()
    corpus = sorted((Path(__file__).resolve().parents[2] / "fuzz" / "corpus_tcf").iterdir())
    assert len(corpus) >= 10
    for seed in corpus:
        harness.check_one(seed.read_bytes())
    # The seeds carry a string that allows Microsoft, so the harness's invariants see both outcomes.
    assert any(microsoft_allowed(seed.read_bytes()[1:]) for seed in corpus)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_property_fuzz_harness_invariants(data: bytes) -> None:
    _load_fuzz_harness_cached().check_one(data)


_HARNESS: list[Any] = []


def _load_fuzz_harness_cached() -> Any:
    if not _HARNESS:
        _HARNESS.append(_load_fuzz_harness())
    return _HARNESS[0]


@pytest.mark.parametrize(
    ("vendors", "leftover"), [pytest.param((1126,), 2, id="two-leftover-chars"), pytest.param((5, 6), 3, id="three")]
)
def test_bits_base64_drops_must_be_zero_too(vendors: tuple[int, ...], leftover: int) -> None:
    # With byte padding the last character holds bits that base64 drops; they are padding too.
    value = TCSpec(vendor_consents=vendors, pad_to=8).encode()
    assert len(value) % 4 == leftover
    decode(value)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    flipped = value[:-1] + alphabet[alphabet.index(value[-1]) | 1]
    with pytest.raises(TcfDecodeError, match="after its last field"):
        decode(flipped)


# -- issue 19: no global scope, no strings from the future ------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "allowed"),
    [
        pytest.param(timedelta(days=-400), True, id="last-year"),
        pytest.param(timedelta(0), True, id="now"),
        pytest.param(CREATED_SKEW - timedelta(seconds=1), True, id="inside-the-skew"),
        pytest.param(CREATED_SKEW + timedelta(seconds=1), False, id="past-the-skew"),
        pytest.param(timedelta(days=365 * 50), False, id="fifty-years-ahead"),
    ],
)
def test_created_in_the_future_grants_nothing(offset: timedelta, allowed: bool) -> None:
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    created = (now + offset).replace(microsecond=0)
    tc = decode(TCSpec(created=created, last_updated=created).encode())
    assert tc.vendor_allowed(now=now) is allowed
    assert microsoft_allowed(tc, now=now) is allowed


def test_last_updated_in_the_future_grants_nothing() -> None:
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    tc = decode(TCSpec(created=now - timedelta(days=1), last_updated=now + timedelta(days=2)).encode())
    assert tc.vendor_allowed(now=now) is False


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs, ahead=st.integers(min_value=int(CREATED_SKEW.total_seconds()) + 1, max_value=10**9))
def test_property_global_scope_or_future_never_grants(spec: TCSpec, ahead: int) -> None:
    global_scope = dataclasses.replace(spec, is_service_specific=False)
    assert microsoft_allowed(global_scope.encode()) is False
    now = datetime(2030, 1, 1, tzinfo=UTC)
    future = now + timedelta(seconds=ahead)
    if future.year < 2180:  # 36 bits of deciseconds end in 2187
        ahead_spec = dataclasses.replace(spec, created=future, last_updated=future)
        assert microsoft_allowed(ahead_spec.encode(), now=now) is False
