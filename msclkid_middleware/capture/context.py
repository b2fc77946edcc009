"""The request being handled, for code that runs inside it without the request object in hand.

A checkout handler calls ``tracker.record_offline(...)`` without ``consent=``: the tracker must use the
consent of the request it runs in (a visitor who sent ``Sec-GPC: 1`` or refused in the banner must not be
tracked because a handler forgot an argument).  Every adapter (WSGI, Flask, ASGI, Django) brackets the app
call with :func:`enter_request` / :func:`leave_request`; the value lives in a :class:`~contextvars.ContextVar`,
so it is right for threads and async tasks alike, and ``asyncio.to_thread`` (the tracker's ``a…`` calls)
carries it into the worker thread.  Outside any request :func:`request_consent` answers ``None`` and the
configured default applies.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token

from msclkid_middleware.capture.consent import Consent

__all__ = ["ConsentSource", "enter_request", "leave_request", "request_consent"]

#: Answers the handled request's consent (decided once, on first use) or ``None`` when it cannot tell.
ConsentSource = Callable[[], Consent | None]

# One module-level ContextVar is the documented way to use them (a new one per call would leak); it holds
# per-context values, not shared state.
_CURRENT: ContextVar[ConsentSource | None] = ContextVar("msclkid_middleware.request_consent", default=None)


#: Mark the start of a handled request; the source is called only if someone asks (lazy, cheap).  The
#: ContextVar's own methods, not wrappers: every request of every adapter pays for this pair.
enter_request: Callable[[ConsentSource | None], Token[ConsentSource | None]] = _CURRENT.set
#: End the bracket opened by :func:`enter_request` (in the same context).
leave_request: Callable[[Token[ConsentSource | None]], None] = _CURRENT.reset


def request_consent() -> Consent | None:
    """The consent decision of the request being handled, or ``None`` outside any handled request.

    A source that fails counts as a refusal: a privacy promise must not turn into tracking by error.
    """
    source = _CURRENT.get()
    if source is None:
        return None
    try:
        consent = source()
    except Exception:
        return Consent.denied_by("default")
    return consent if isinstance(consent, Consent) or consent is None else Consent.denied_by("default")
