"""The network edge: the only package that talks HTTP to Microsoft (and the only one importing ``requests``).

The package root never imports this package; the outbox dispatcher and the CLI do, when they need it.
"""

from __future__ import annotations

from .campaign import MAX_BATCH as MAX_BATCH
from .campaign import AccessTokenProvider as AccessTokenProvider
from .campaign import CampaignManagementClient as CampaignManagementClient
from .oauth import FileTokenStore as FileTokenStore
from .oauth import MemoryTokenStore as MemoryTokenStore
from .oauth import RefreshTokenProvider as RefreshTokenProvider
from .oauth import StoredToken as StoredToken
from .oauth import TokenStore as TokenStore
from .results import ApplyResult as ApplyResult
from .results import ItemResult as ItemResult
from .results import UetEventResult as UetEventResult
from .results import UetIssue as UetIssue
from .retry import RetryDecision as RetryDecision
from .retry import RetryPolicy as RetryPolicy
from .retry import parse_retry_after as parse_retry_after
from .uet import UetClient as UetClient

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
