"""The network edge: the only package that talks HTTP to Microsoft (and the only one importing ``requests``).

Names are resolved lazily (module ``__getattr__``): importing this package, or a requests-free module of it
(``limits``, ``results``, ``retry``), does not import ``requests``.  The tracker records conversions without
it; only building or using a client loads the HTTP layer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from msclkid_middleware.microsoft.account import AccountClient as AccountClient
    from msclkid_middleware.microsoft.campaign import AccessTokenProvider as AccessTokenProvider
    from msclkid_middleware.microsoft.campaign import CampaignManagementClient as CampaignManagementClient
    from msclkid_middleware.microsoft.limits import MAX_BATCH as MAX_BATCH
    from msclkid_middleware.microsoft.oauth import RefreshTokenProvider as RefreshTokenProvider
    from msclkid_middleware.microsoft.results import ApplyResult as ApplyResult
    from msclkid_middleware.microsoft.results import ItemResult as ItemResult
    from msclkid_middleware.microsoft.results import UetEventResult as UetEventResult
    from msclkid_middleware.microsoft.results import UetIssue as UetIssue
    from msclkid_middleware.microsoft.retry import RetryDecision as RetryDecision
    from msclkid_middleware.microsoft.retry import RetryPolicy as RetryPolicy
    from msclkid_middleware.microsoft.retry import parse_retry_after as parse_retry_after
    from msclkid_middleware.microsoft.uet import UetClient as UetClient
    from msclkid_middleware.tokens import FileTokenStore as FileTokenStore
    from msclkid_middleware.tokens import MemoryTokenStore as MemoryTokenStore
    from msclkid_middleware.tokens import StoredToken as StoredToken
    from msclkid_middleware.tokens import TokenStore as TokenStore

_WHERE = {
    "MAX_BATCH": "msclkid_middleware.microsoft.limits",
    "AccountClient": "msclkid_middleware.microsoft.account",
    "AccessTokenProvider": "msclkid_middleware.microsoft.campaign",
    "CampaignManagementClient": "msclkid_middleware.microsoft.campaign",
    "RefreshTokenProvider": "msclkid_middleware.microsoft.oauth",
    "ApplyResult": "msclkid_middleware.microsoft.results",
    "ItemResult": "msclkid_middleware.microsoft.results",
    "UetEventResult": "msclkid_middleware.microsoft.results",
    "UetIssue": "msclkid_middleware.microsoft.results",
    "RetryDecision": "msclkid_middleware.microsoft.retry",
    "RetryPolicy": "msclkid_middleware.microsoft.retry",
    "parse_retry_after": "msclkid_middleware.microsoft.retry",
    "UetClient": "msclkid_middleware.microsoft.uet",
    "FileTokenStore": "msclkid_middleware.tokens",
    "MemoryTokenStore": "msclkid_middleware.tokens",
    "StoredToken": "msclkid_middleware.tokens",
    "TokenStore": "msclkid_middleware.tokens",
}

__all__ = [
    "MAX_BATCH",
    "AccessTokenProvider",
    "AccountClient",
    "ApplyResult",
    "CampaignManagementClient",
    "FileTokenStore",
    "ItemResult",
    "MemoryTokenStore",
    "RefreshTokenProvider",
    "RetryDecision",
    "RetryPolicy",
    "StoredToken",
    "TokenStore",
    "UetClient",
    "UetEventResult",
    "UetIssue",
    "parse_retry_after",
]


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolve once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
