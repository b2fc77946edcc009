"""Values that travel to Microsoft (pure): identity hashing, offline conversions, adjustments, UET events."""

from __future__ import annotations

from msclkid_middleware.conversions.models import CLOCK_SKEW as CLOCK_SKEW
from msclkid_middleware.conversions.models import CURRENCY_CODES as CURRENCY_CODES
from msclkid_middleware.conversions.models import MAX_CONVERSION_NAME_LENGTH as MAX_CONVERSION_NAME_LENGTH
from msclkid_middleware.conversions.models import MAX_CONVERSION_VALUE as MAX_CONVERSION_VALUE
from msclkid_middleware.conversions.models import OFFLINE_MAX_AGE as OFFLINE_MAX_AGE
from msclkid_middleware.conversions.models import UET_MAX_AGE as UET_MAX_AGE
from msclkid_middleware.conversions.models import UET_PAGE_TYPES as UET_PAGE_TYPES
from msclkid_middleware.conversions.models import AdjustmentType as AdjustmentType
from msclkid_middleware.conversions.models import OfflineConversion as OfflineConversion
from msclkid_middleware.conversions.models import OfflineConversionAdjustment as OfflineConversionAdjustment
from msclkid_middleware.conversions.models import OnlineConversionAdjustment as OnlineConversionAdjustment
from msclkid_middleware.conversions.models import UetCustomData as UetCustomData
from msclkid_middleware.conversions.models import UetEvent as UetEvent
from msclkid_middleware.conversions.models import UetEventType as UetEventType
from msclkid_middleware.conversions.models import UetHotelData as UetHotelData
from msclkid_middleware.conversions.models import UetItem as UetItem
from msclkid_middleware.conversions.models import UetPageType as UetPageType
from msclkid_middleware.conversions.models import UetUserData as UetUserData
from msclkid_middleware.conversions.models import UserIdentifiers as UserIdentifiers
from msclkid_middleware.conversions.models import format_time as format_time
from msclkid_middleware.conversions.models import parse_time as parse_time

__all__ = [
    "CLOCK_SKEW",
    "CURRENCY_CODES",
    "MAX_CONVERSION_NAME_LENGTH",
    "MAX_CONVERSION_VALUE",
    "OFFLINE_MAX_AGE",
    "UET_MAX_AGE",
    "UET_PAGE_TYPES",
    "AdjustmentType",
    "OfflineConversion",
    "OfflineConversionAdjustment",
    "OnlineConversionAdjustment",
    "UetCustomData",
    "UetEvent",
    "UetEventType",
    "UetHotelData",
    "UetItem",
    "UetPageType",
    "UetUserData",
    "UserIdentifiers",
    "format_time",
    "parse_time",
]
