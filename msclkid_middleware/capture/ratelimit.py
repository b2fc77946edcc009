"""A per-client token bucket for the capture endpoint, in memory (pure; issue 19 item 11).

The capture endpoint writes a cookie (and, with a profile store, a row) for whoever asks with a valid
click ID: a script that forges ``Origin`` could churn cookies or fill the profile store as fast as it can
send.  Each client gets ``burst`` requests at once and ``rate`` more per second after that; an emptied
bucket answers 429 with ``Retry-After``.  Buckets live in a bounded LRU (``max_clients``), so memory stays
fixed whatever the number of addresses; time is a monotonic clock (a wall-clock step must not refill every
bucket).  IPv6 clients are counted per ``/64``: one host usually holds a whole ``/64``, so per-address
buckets would give it 2**64 of them.

The limit is per process: with N worker processes a client gets up to N times the rate.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from msclkid_middleware.errors import ConfigError

__all__ = ["DEFAULT_BURST", "DEFAULT_MAX_CLIENTS", "DEFAULT_RATE", "RateLimiter", "client_key"]

#: Requests per second a client may keep up (one a second is far above what a page's snippet sends).
DEFAULT_RATE = 1.0
#: Requests a client may send at once (several tabs opened from one ad, a reload or two).
DEFAULT_BURST = 20
#: Clients remembered; the least recently seen is forgotten first (it comes back with a full bucket).
DEFAULT_MAX_CLIENTS = 10_000


def client_key(address: str | None) -> str:
    """The bucket a client address counts against: the address itself, an IPv6 address's ``/64``."""
    if not address:
        return ""
    if ":" in address:
        try:
            parsed = ipaddress.IPv6Address(address.split("%", 1)[0])
        except ValueError:
            return address[:64]
        if parsed.ipv4_mapped is not None:  # ::ffff:a.b.c.d is an IPv4 client on a dual-stack socket
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return address[:64]


class RateLimiter:
    """Token buckets per client key; :meth:`acquire` answers ``None`` (go on) or the seconds to wait."""

    __slots__ = ("_buckets", "_lock", "burst", "clock", "max_clients", "rate")

    def __init__(
        self,
        rate: float = DEFAULT_RATE,
        burst: int = DEFAULT_BURST,
        *,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate < math.inf:
            raise ConfigError(
                "capture_rate must be a positive number of requests per second (None turns the limit off)",
                setting="MSCLKID_CAPTURE_RATE",
            )
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ConfigError("capture_burst must be a whole number of at least 1", setting="MSCLKID_CAPTURE_BURST")
        if isinstance(max_clients, bool) or not isinstance(max_clients, int) or max_clients < 1:
            raise ConfigError(
                "capture_rate_clients must be a whole number of at least 1", setting="capture_rate_clients"
            )
        self.rate = float(rate)
        self.burst = burst
        self.max_clients = max_clients
        self.clock = clock
        self._lock = threading.Lock()
        # key -> (tokens left, time they were counted)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def acquire(self, address: str | None) -> int | None:
        """Take one token for ``address``: ``None`` when there was one, else whole seconds until there is."""
        key = client_key(address)
        now = self.clock()
        with self._lock:
            buckets = self._buckets
            found = buckets.get(key)
            if found is None:
                tokens = float(self.burst)
                if len(buckets) >= self.max_clients:
                    buckets.popitem(last=False)
            else:
                left, then = found
                # max(): a clock that went backwards (a test double, a broken VM) refills nothing.
                tokens = min(float(self.burst), left + max(0.0, now - then) * self.rate)
                buckets.move_to_end(key)
            if tokens >= 1.0:
                buckets[key] = (tokens - 1.0, now)
                return None
            buckets[key] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate))
