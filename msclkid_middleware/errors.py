"""Every exception the toolkit raises, in one place.

The hierarchy follows itsdangerous: one base class (:class:`MsclkidError`), plain attributes
instead of parsed messages, and input errors that are also :class:`ValueError` so generic
``except ValueError`` code keeps working.  No message ever contains a secret, a raw email
address or a raw phone number; callers may log ``str(exc)`` safely.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "AdjustmentError",
    "ApiFault",
    "AuthenticationError",
    "ClosedError",
    "ConfigError",
    "InvalidClickId",
    "InvalidIdentifier",
    "MicrosoftError",
    "MsclkidError",
    "OAuthClientError",
    "OutboxFull",
    "ReconsentRequired",
    "StoreError",
    "TcfDecodeError",
    "TimeWindowError",
    "TransientError",
    "UnknownEvent",
    "UnknownGoal",
    "ValidationError",
]


class MsclkidError(Exception):
    """Base class of every error raised by msclkid-middleware."""


class ConfigError(MsclkidError, ValueError):
    """The toolkit was configured in a way that cannot work; the message says what to change.

    Raised at construction time (``MsclkidMiddleware(...)``, ``Settings.from_env()``, ...),
    never on the request path.
    """

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class ValidationError(MsclkidError, ValueError):
    """A value given to the toolkit breaks one of Microsoft's (or our) rules.

    ``field`` names the offending field as the caller knows it (``"conversion_time"``) and
    ``reason`` says which rule it broke.  The offending value itself is never included,
    because it may be personal data.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class InvalidClickId(ValidationError):
    """A Microsoft click ID (msclkid) is malformed."""

    def __init__(self, reason: str, *, field: str = "msclkid") -> None:
        super().__init__(field, reason)


class InvalidIdentifier(ValidationError):
    """An email address or phone number cannot be normalised the way Microsoft requires."""


class UnknownGoal(ValidationError):
    """A conversion name is not one of the configured conversion goals.

    Microsoft silently ignores conversions for unknown goal names, so we refuse them early.
    """

    def __init__(self, name_length: int, known: tuple[str, ...]) -> None:
        hint = ", ".join(repr(k) for k in known[:10])
        super().__init__(
            "conversion_name",
            f"not one of the configured conversion goals ({hint}); names must match exactly, including case and spaces",
        )
        self.known = known
        self.name_length = name_length


class TcfDecodeError(MsclkidError, ValueError):
    """A TCF v2 consent string could not be decoded strictly; it must be treated as no consent."""


class StoreError(MsclkidError):
    """The outbox, profile or token store failed (disk full, database locked, connection lost).

    The event was *not* stored; the caller still holds it and decides what to do.
    """

    def __init__(self, message: str, *, reason: str = "storage_error") -> None:
        super().__init__(message)
        self.reason = reason


class OutboxFull(StoreError):
    """The outbox holds its configured maximum of pending rows; the new event was rejected."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"outbox is full ({limit} pending rows); start a worker or raise max_pending",
            reason="outbox_full",
        )
        self.limit = limit


class ClosedError(StoreError):
    """The store (or the tracker holding it) was closed: nothing more is read or recorded through it.

    Raised to callers that arrive after ``close()``; what was recorded before ``close()`` is kept.
    """

    def __init__(self, what: str = "outbox") -> None:
        super().__init__(f"the {what} is closed; open a new one to record more", reason="closed")


class UnknownEvent(MsclkidError, LookupError):
    """No recorded event has this event ID (for example, a restate of an order never recorded)."""

    def __init__(self, event_id: str) -> None:
        super().__init__(f"no recorded event with event_id {event_id!r}")
        self.event_id = event_id


class AdjustmentError(MsclkidError, ValueError):
    """An adjustment cannot be applied to its original event (wrong kind, already retracted, ...)."""


class MicrosoftError(MsclkidError):
    """A call to a Microsoft endpoint failed.

    Attributes carry what Microsoft said: the HTTP ``status`` (``None`` for network errors),
    the numeric ``code`` (``109``), the symbolic ``error_code`` (``AuthenticationTokenExpired``),
    Microsoft's ``message`` and the ``tracking_id`` that support asks for.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        error_code: str | None = None,
        tracking_id: str | None = None,
        retry_after: float | None = None,
        details: tuple[Mapping[str, Any], ...] = (),
    ) -> None:
        super().__init__(message)
        # Plain attributes, one per keyword (the module's rule): alike in shape to other such objects, nothing to share.
        self.message = message
        self.status = status
        self.code = code
        self.error_code = error_code
        self.tracking_id = tracking_id
        self.retry_after = retry_after
        self.details = details

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.code is not None or self.error_code:
            parts.append(f"code {self.code} {self.error_code or ''}".strip())
        if self.tracking_id:
            parts.append(f"TrackingId {self.tracking_id}")
        return " | ".join(parts)


class TransientError(MicrosoftError):
    """A failure worth retrying later: network errors, timeouts, 5xx, throttling (429, 117)."""


class ApiFault(MicrosoftError):
    """Microsoft rejected the whole request (an ``AdApiFaultDetail`` or ``ApiFaultDetail``)."""


class AuthenticationError(MicrosoftError):
    """Credentials were refused (bad developer token, expired access token, wrong account)."""


class ReconsentRequired(AuthenticationError):
    """The refresh token is invalid, expired or revoked: a person must run ``msclkid auth`` again.

    Dispatch for the affected account pauses (no attempts are spent) until a refresh succeeds.
    """


class TimeWindowError(ValidationError):
    """A conversion or event time is outside the window Microsoft accepts at this moment.

    ``expired`` is true when the time is too old (it will never be accepted again: the
    dispatcher moves the event to ``dead``) and false when it is in the future beyond the
    allowed clock skew (it may become acceptable later).
    """

    def __init__(self, field: str, reason: str, *, expired: bool) -> None:
        super().__init__(field, reason)
        self.expired = expired


class OAuthClientError(AuthenticationError, ConfigError):
    """The token endpoint refused the *application* (``invalid_client``, ``unauthorized_client``).

    A wrong ``MSADS_CLIENT_ID`` or ``MSADS_CLIENT_SECRET`` (or an app registration that does not allow this
    flow) is a configuration error, not a grant a person must renew: running ``msclkid auth`` again cannot fix
    it.  It is a :class:`ConfigError` (``setting`` names the variable to check) and an
    :class:`AuthenticationError` (``status``, AADSTS ``code`` and OAuth ``error_code`` as Microsoft sent them).
    """

    def __init__(
        self, message: str, *, setting: str, status: int | None = None, code: int | None = None, error_code: str
    ) -> None:
        AuthenticationError.__init__(self, message, status=status, code=code, error_code=error_code)
        self.setting = setting
