"""Our Campaign Management wire JSON, checked against Microsoft's own REST SDK request models.

``msads`` (Microsoft's Python SDK) ships pydantic models generated from the Campaign Management
REST API.  Every body we build must validate against them (strict types: ``ConversionValue`` must
be a JSON float, names must be exactly Microsoft's aliases) and survive the SDK's own ``to_dict``
unchanged, except that the SDK holds times as ``datetime`` objects.  The UET Conversions API has no
SDK model; its wire shape is pinned in ``tests/conversions/test_uet.py``.
"""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError as PydanticValidationError
from pydantic.warnings import PydanticDeprecatedSince20

from msclkid_middleware.conversions import (
    CURRENCY_CODES,
    OfflineConversion,
    OfflineConversionAdjustment,
    OnlineConversionAdjustment,
    UserIdentifiers,
    format_time,
    parse_time,
)

# The SDK's generated models still use pydantic v1 hooks; that deprecation is Microsoft's, not ours.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", PydanticDeprecatedSince20)
    from openapi_client.api_client import ApiClient
    from openapi_client.models.campaign.apply_offline_conversion_adjustments_request import (
        ApplyOfflineConversionAdjustmentsRequest,
    )
    from openapi_client.models.campaign.apply_offline_conversions_request import ApplyOfflineConversionsRequest
    from openapi_client.models.campaign.apply_online_conversion_adjustments_request import (
        ApplyOnlineConversionAdjustmentsRequest,
    )
    from openapi_client.models.campaign.offline_conversion import OfflineConversion as SdkOfflineConversion
    from openapi_client.models.campaign.offline_conversion_adjustment import (
        OfflineConversionAdjustment as SdkOfflineConversionAdjustment,
    )
    from openapi_client.models.campaign.online_conversion_adjustment import (
        OnlineConversionAdjustment as SdkOnlineConversionAdjustment,
    )

CLICK = "f894f652ea334e739002f7167ab8f8e3"
_TIME_KEYS = ("ConversionTime", "AdjustmentTime")
_NOW = datetime.now(UTC).replace(microsecond=0)


def _times_as_text(data: dict[str, Any]) -> dict[str, Any]:
    """The SDK keeps times as datetimes; render them our way to compare everything else exactly."""
    return {key: format_time(value) if key in _TIME_KEYS else value for key, value in data.items()}


def _check(wire: dict[str, Any], request_model: Any, list_key: str, item_model: Any) -> None:
    # Doubles are always JSON floats ("149.0"), whatever number type the caller passed.
    for key in ("ConversionValue", "AdjustmentValue", "ExternalAttributionCredit"):
        if key in wire:
            assert type(wire[key]) is float
    body = json.loads(json.dumps({list_key: [wire]}))
    request = request_model.model_validate(body)
    item = getattr(request, next(iter(request_model.model_fields)))[0]
    assert isinstance(item, item_model)
    # The SDK parsed our time strings into the same instants.
    for key in _TIME_KEYS:
        if key in wire:
            parsed = item.to_dict()[key]
            assert isinstance(parsed, datetime)
            assert parsed == parse_time(wire[key])
    assert _times_as_text(item.to_dict()) == wire
    assert [_times_as_text(entry) for entry in request.to_dict()[list_key]] == [wire]
    # What the SDK itself would put on the wire, times aside, is what we put on the wire.
    sent = ApiClient.sanitize_for_serialization(ApiClient.__new__(ApiClient), request)
    assert [{k: v for k, v in entry.items() if k not in _TIME_KEYS} for entry in sent[list_key]] == [
        {k: v for k, v in wire.items() if k not in _TIME_KEYS}
    ]
    assert [{k: parse_time(entry[k]) for k in _TIME_KEYS if k in entry} for entry in sent[list_key]] == [
        {k: parse_time(wire[k]) for k in _TIME_KEYS if k in wire}
    ]


def _check_offline(model: OfflineConversion) -> None:
    _check(model.to_wire(), ApplyOfflineConversionsRequest, "OfflineConversions", SdkOfflineConversion)


def _check_offline_adjustment(model: OfflineConversionAdjustment) -> None:
    _check(
        model.to_wire(),
        ApplyOfflineConversionAdjustmentsRequest,
        "OfflineConversionAdjustments",
        SdkOfflineConversionAdjustment,
    )


def _check_online_adjustment(model: OnlineConversionAdjustment) -> None:
    _check(
        model.to_wire(),
        ApplyOnlineConversionAdjustmentsRequest,
        "OnlineConversionAdjustments",
        SdkOnlineConversionAdjustment,
    )


_ORIGINAL = OfflineConversion(
    conversion_name="Purchase",
    conversion_time=_NOW - timedelta(days=3),
    value=149,
    currency="USD",
    msclkid=CLICK,
    identifiers=UserIdentifiers(email="jane@contoso.com", phone="+14255550199"),
)


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(_ORIGINAL, id="full"),
        pytest.param(
            OfflineConversion(conversion_name="Lead", conversion_time=_NOW - timedelta(hours=1), msclkid=CLICK),
            id="click-only",
        ),
        pytest.param(
            OfflineConversion(
                conversion_name="Lead",
                conversion_time=_NOW - timedelta(hours=1),
                identifiers=UserIdentifiers(email="jane@contoso.com"),
            ),
            id="email-only",
        ),
        pytest.param(
            OfflineConversion(
                conversion_name="Purchase",
                conversion_time=_NOW - timedelta(days=89),
                value=0,
                currency="JPY",
                msclkid=CLICK,
                external_attribution_credit=1,
                external_attribution_model="DataDriven",
            ),
            id="external-attribution-int-inputs",
        ),
    ],
)
def test_offline_conversion_matches_sdk(model: OfflineConversion) -> None:
    _check_offline(model)


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(OfflineConversionAdjustment.restate(_ORIGINAL, 99, "EUR"), id="restate"),
        pytest.param(OfflineConversionAdjustment.retract(_ORIGINAL), id="retract"),
    ],
)
def test_offline_adjustment_matches_sdk(model: OfflineConversionAdjustment) -> None:
    _check_offline_adjustment(model)


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(
            OnlineConversionAdjustment(
                adjustment_type="Restate",
                conversion_name="Purchase",
                transaction_id="ord_10492",
                adjustment_time=_NOW,
                value=5,
                currency="GBP",
            ),
            id="restate",
        ),
        pytest.param(
            OnlineConversionAdjustment(
                adjustment_type="Retract",
                conversion_name="Purchase",
                transaction_id="ord_10492",
                adjustment_time=_NOW,
            ),
            id="retract",
        ),
    ],
)
def test_online_adjustment_matches_sdk(model: OnlineConversionAdjustment) -> None:
    _check_online_adjustment(model)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        pytest.param({"ConversionValue": "149.95"}, "float", id="string-value"),
        pytest.param({"ConversionTime": "last tuesday"}, "datetime", id="bad-time"),
        pytest.param({"MicrosoftClickId": 42}, "string", id="numeric-click"),
    ],
)
def test_the_sdk_check_has_teeth(body: dict[str, Any], problem: str) -> None:
    # The SDK models are strict: a string value or a non-time string would be refused, so the
    # acceptance above proves our types, not just our key names.
    with pytest.raises(PydanticValidationError, match=problem):
        SdkOfflineConversion.model_validate(body)


def test_a_misspelled_key_would_be_caught() -> None:
    wire = _ORIGINAL.to_wire()
    wire["MicrosoftClickID"] = wire.pop("MicrosoftClickId")
    item = SdkOfflineConversion.model_validate(wire)
    assert _times_as_text(item.to_dict()) != wire


_hashes = st.from_regex(r"[0-9a-f]{64}", fullmatch=True)
_names = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=100
).filter(lambda s: s == s.strip())


@st.composite
def _offline(draw: st.DrawFn) -> OfflineConversion:
    hashed_email = draw(st.one_of(st.none(), _hashes))
    msclkid = draw(st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)) if hashed_email is None else None
    credit = draw(st.one_of(st.none(), st.floats(min_value=0.01, max_value=1)))
    return OfflineConversion(
        conversion_name=draw(_names),
        conversion_time=_NOW - timedelta(seconds=draw(st.integers(0, 89 * 86400))),
        value=draw(st.one_of(st.none(), st.integers(0, 10**9), st.floats(0, 1e11))),
        currency=draw(st.one_of(st.none(), st.sampled_from(sorted(CURRENCY_CODES)))),
        msclkid=msclkid,
        identifiers=UserIdentifiers(hashed_email=hashed_email) if hashed_email else None,
        external_attribution_credit=credit,
        external_attribution_model=None if credit is None else draw(_names),
    )


@settings(max_examples=60, deadline=None)
@given(_offline(), st.one_of(st.none(), st.floats(0, 1e9)))
def test_any_accepted_model_matches_sdk(conversion: OfflineConversion, restate_to: float | None) -> None:
    _check_offline(conversion)
    if restate_to is None:
        adjustment = OfflineConversionAdjustment.retract(conversion)
    else:
        adjustment = OfflineConversionAdjustment.restate(conversion, restate_to, "USD")
    _check_offline_adjustment(adjustment)
