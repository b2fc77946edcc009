"""Local emulator of Microsoft Advertising's conversion endpoints (OAuth, Campaign Management, UET CAPI).

Importing this package starts nothing; see :func:`msclkid_middleware.testing.run_emulator` and
``msclkid emulator``.  Documentation: ``docs/emulator.md``.
"""

from __future__ import annotations

from msclkid_middleware.emulator.app import Emulator
from msclkid_middleware.emulator.faults import FaultRule
from msclkid_middleware.emulator.server import EmulatorServer
from msclkid_middleware.emulator.settings import EmulatorConfig, load_config_file
from msclkid_middleware.emulator.state import Goal, ReceivedItem, RequestRecord, TokenRecord, UetTag

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
