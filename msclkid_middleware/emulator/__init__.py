"""Local emulator of Microsoft Advertising's conversion endpoints (OAuth, Campaign Management, UET CAPI).

Importing this package starts nothing; see :func:`msclkid_middleware.testing.run_emulator` and
``msclkid emulator``.  Documentation: ``docs/emulator.md``.
"""

from __future__ import annotations

from .app import Emulator
from .faults import FaultRule
from .server import EmulatorServer
from .settings import EmulatorConfig, load_config_file
from .state import Goal, ReceivedItem, RequestRecord, TokenRecord, UetTag

__all__ = [
    "Emulator",
    "EmulatorConfig",
    "EmulatorServer",
    "FaultRule",
    "Goal",
    "ReceivedItem",
    "RequestRecord",
    "TokenRecord",
    "UetTag",
    "load_config_file",
]
