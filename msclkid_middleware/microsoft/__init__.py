"""The network edge: the only package that talks HTTP to Microsoft (and the only one importing ``requests``).

The package root never imports this package; the outbox dispatcher and the CLI do, when they need it.
"""

from __future__ import annotations

from msclkid_middleware.microsoft.campaign import MAX_BATCH as MAX_BATCH
from msclkid_middleware.microsoft.campaign import AccessTokenProvider as AccessTokenProvider
from msclkid_middleware.microsoft.campaign import CampaignManagementClient as CampaignManagementClient
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

__all__ = [
    "MAX_BATCH",
    "AccessTokenProvider",
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
