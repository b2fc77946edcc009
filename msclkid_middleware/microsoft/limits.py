"""Microsoft's documented limits that both the clients and the dispatcher obey (defined once, here).

Free of the HTTP layer, so the dispatcher and the goal registry import them without pulling in ``requests``.
"""

from __future__ import annotations

from datetime import timedelta

__all__ = ["GOAL_MIN_AGE", "MAX_BATCH"]

#: "You can add a maximum of 1,000 offline conversions per service request." (the same for both adjustment
#: kinds and for UET CAPI events per request).
MAX_BATCH = 1000
#: "After creating an OfflineConversionGoal, you'll need to wait two hours before sending ... any offline
#: conversions" (error 5615 otherwise).
GOAL_MIN_AGE = timedelta(hours=2)
