"""Values that travel to Microsoft (pure): identity hashing, offline conversions, adjustments, UET events.

``base`` holds the one validation and wire recipe the kinds share; ``identifiers`` the hashed match keys;
``offline``, ``adjustments`` and ``uet`` one module per kind.  Callers import from the package.
"""

from __future__ import annotations

from msclkid_middleware.conversions import adjustments, base, identifiers, offline, uet
from msclkid_middleware.conversions.adjustments import AdjustmentType as AdjustmentType
from msclkid_middleware.conversions.adjustments import OfflineConversionAdjustment as OfflineConversionAdjustment
from msclkid_middleware.conversions.adjustments import OnlineConversionAdjustment as OnlineConversionAdjustment
from msclkid_middleware.conversions.base import CLOCK_SKEW as CLOCK_SKEW
from msclkid_middleware.conversions.base import CURRENCY_CODES as CURRENCY_CODES
from msclkid_middleware.conversions.base import MAX_CONVERSION_NAME_LENGTH as MAX_CONVERSION_NAME_LENGTH
from msclkid_middleware.conversions.base import MAX_CONVERSION_VALUE as MAX_CONVERSION_VALUE
from msclkid_middleware.conversions.base import OFFLINE_MAX_AGE as OFFLINE_MAX_AGE
from msclkid_middleware.conversions.base import UET_MAX_AGE as UET_MAX_AGE
from msclkid_middleware.conversions.base import format_time as format_time
from msclkid_middleware.conversions.base import parse_time as parse_time
from msclkid_middleware.conversions.identifiers import UserIdentifiers as UserIdentifiers
from msclkid_middleware.conversions.offline import OfflineConversion as OfflineConversion
from msclkid_middleware.conversions.uet import UET_PAGE_TYPES as UET_PAGE_TYPES
from msclkid_middleware.conversions.uet import UetCustomData as UetCustomData
from msclkid_middleware.conversions.uet import UetEvent as UetEvent
from msclkid_middleware.conversions.uet import UetEventType as UetEventType
from msclkid_middleware.conversions.uet import UetHotelData as UetHotelData
from msclkid_middleware.conversions.uet import UetItem as UetItem
from msclkid_middleware.conversions.uet import UetPageType as UetPageType
from msclkid_middleware.conversions.uet import UetUserData as UetUserData

# The package's public names: the ones imported above (``X as X``: what mypy --strict re-exports), listed once there.
__all__ = [name for m in (base, identifiers, offline, adjustments, uet) for name in m.__all__ if name in globals()]
