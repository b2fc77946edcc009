"""Test-only crash hooks: ``hit("after_claim")`` kills the process when asked to, else does nothing.

The crash tests run a worker subprocess with ``MSCLKID_FAULT_POINT=<name>`` (or ``<name>@<n>`` to
die on the n-th hit) and restart it, proving that leases recover everything.  Unset (always, in
production) the hook is one environment lookup.
"""

from __future__ import annotations

import os
import signal
import threading

__all__ = ["ENV_VAR", "POINTS", "armed", "hit"]

ENV_VAR = "MSCLKID_FAULT_POINT"
#: Where the dispatcher and store call :func:`hit`:
#:
#: - ``after_claim``: the claim transaction has committed, nothing is sent yet;
#: - ``building_batch``: the request body is being built from the claimed rows;
#: - ``after_send``: Microsoft answered, the outcomes are not recorded yet;
#: - ``settle_txn``: inside the transaction that records outcomes (before its COMMIT);
#: - ``after_settle``: the outcomes are committed;
#: - ``enqueue_txn``: inside ``record_*``'s outbox transaction (before its COMMIT);
#: - ``token_write``: inside the refresh-token write (before its COMMIT).
POINTS = (
    "after_claim",
    "building_batch",
    "after_send",
    "settle_txn",
    "after_settle",
    "enqueue_txn",
    "token_write",
)

_hits: dict[str, int] = {}
_lock = threading.Lock()


def armed() -> bool:
    """Is any point set?  One environment lookup: a loop over a batch's rows asks once, and hits each row only then."""
    return bool(os.environ.get(ENV_VAR))


def hit(name: str) -> None:
    """SIGKILL this process if ``MSCLKID_FAULT_POINT`` names this point (and hit count)."""
    wanted = os.environ.get(ENV_VAR)
    if not wanted:
        return
    point, _, nth = wanted.partition("@")
    # An unknown name stays inert: a stray variable must never break production (the crash tests
    # assert the SIGKILL, so a typo there fails loudly anyway).
    if point != name:
        return
    with _lock:
        _hits[name] = count = _hits.get(name, 0) + 1
    if not nth or count >= int(nth):
        # SIGKILL, not an exception: nothing may run after this (no finally, no atexit, no flush).
        os.kill(os.getpid(), signal.SIGKILL)
