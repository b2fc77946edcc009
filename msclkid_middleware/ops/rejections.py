"""What a rejection or dead-letter code means and what to do about it, in words a merchant can act on.

Keys are the codes rows carry in ``last_error_code``: Microsoft's numeric code (``"5604 Offline..."`` is looked up
by its first word), a UET CAPI ``errorCode`` (``InvalidEventTime``) or one of the toolkit's own
:class:`~msclkid_middleware.dispatch.status.Code` values.  Microsoft's meanings follow its operation error codes
list (Campaign Management operation error codes); the advice is ours.
"""

from __future__ import annotations

from dataclasses import dataclass

from msclkid_middleware.dispatch.status import Code

__all__ = ["Advice", "advice"]


@dataclass(frozen=True, slots=True)
class Advice:
    """``meaning``: what the code says happened; ``action``: what to do about it."""

    meaning: str
    action: str


_RESEND = "fix the cause, then `msclkid retry-dead --include-rejected` sends these rows again"
_ADVICE: dict[str, Advice] = {
    "5603": Advice(
        "no click ID, or hashed email/phone only for a goal without enhanced conversions",
        "capture the msclkid on the landing page, or turn on enhanced conversions for the goal; " + _RESEND,
    ),
    "5604": Advice(
        "Microsoft did not accept the click ID's format",
        "send the msclkid exactly as captured (32 hex characters, no changes of case); check the CRM export",
    ),
    "5605": Advice("the conversion name was empty", "give every conversion a goal name"),
    "5606": Advice(
        "no offline conversion goal of this exact name in the account",
        "create the goal (`msclkid goals create`) or fix MSADS_CONVERSION_GOALS: names must match exactly; " + _RESEND,
    ),
    "5607": Advice("the conversion time could not be read", "send an ISO 8601 time with a zone"),
    "5609": Advice(
        "the conversion time is outside the goal's conversion window or older than 90 days",
        "upload sooner: run the worker continuously; older conversions cannot be sent any more",
    ),
    "5610": Advice("the conversion value is invalid", "send a number from 0 upwards with at most 3 decimals"),
    "5611": Advice(
        "the currency code is not one Microsoft supports for conversion revenue",
        "use a 3-letter ISO code from Microsoft's list (EUR, USD, ...); " + _RESEND,
    ),
    "5613": Advice(
        "the customer is not enabled for offline conversions",
        "create an offline conversion goal in the account first (it enables the feature)",
    ),
    "5614": Advice(
        "the conversion time was in the future",
        "check the server clock (NTP) and the time zone of the CRM export",
    ),
    "5615": Advice(
        "the goal was younger than 2 hours",
        "nothing: such rows are held and sent automatically once the goal is 2 hours old",
    ),
    "5616": Advice(
        "the conversion time is earlier than the click",
        "record the time of the sale, not of the visit; check time zones",
    ),
    "5617": Advice(
        "the click is outside the goal's conversion window",
        "widen the goal's window (`msclkid goals`) if such late sales should count",
    ),
    "5620": Advice("the adjustment is dated before the conversion", "date restatements and retractions after the sale"),
    "5622": Advice("the adjustment time was in the future", "check the server clock (NTP)"),
    "5623": Advice("the adjustment time is outside the window", "adjust within 90 days of the conversion"),
    "5626": Advice("a restatement needs a currency", "give the currency with the new value"),
    "5627": Advice(
        "the goal does not accept restatements or retractions",
        "use an offline goal with a variable revenue, or stop adjusting this goal",
    ),
    "8004": Advice(
        "the email address was not hashed as Microsoft requires",
        "pass raw emails as email= (the toolkit hashes them), or SHA-256 lowercase hex",
    ),
    "105": Advice(
        "Microsoft refused the credentials (developer token or access token)",
        "check MSADS_DEVELOPER_TOKEN is for this environment, run `msclkid auth --check`, then `msclkid retry-dead`",
    ),
    "106": Advice(
        "the signed-in user may not use this account",
        "sign in (`msclkid auth`) with a user who manages MSADS_ACCOUNT_ID, then `msclkid retry-dead`",
    ),
    "InvalidEventTime": Advice(
        "the UET event's time was missing, in the future or older than 7 days",
        "send UET events promptly; check the server clock",
    ),
    "InvalidEnumValue": Advice("the UET event type is not one Microsoft knows", "use pageLoad or custom"),
    "Empty": Advice("a required UET field was empty", "give eventTime and eventType on every event"),
    Code.ATTEMPTS_EXHAUSTED: Advice(
        "every retry of a temporary failure (network, Microsoft busy) was used up",
        "check connectivity and `msclkid status`, then `msclkid retry-dead`",
    ),
    Code.EXPIRED: Advice(
        "Microsoft's window closed before the row could be sent (90 days offline, 7 days UET)",
        "nothing can send these now; keep a worker running so it does not happen again",
    ),
    Code.CONFIG_ERROR: Advice(
        "a setting was missing or wrong when sending",
        "fix the setting the worker's log names (`msclkid auth --check` tests Microsoft's), then `msclkid retry-dead`",
    ),
    Code.CLIENT_ERROR: Advice(
        "a custom client raised an error", "see the worker's log for the exception, then `msclkid retry-dead`"
    ),
    Code.ORIGINAL_NOT_DELIVERED: Advice(
        "a restatement or retraction whose original conversion was never delivered",
        "deliver (or fix) the original first; the adjustment follows it",
    ),
    Code.RECONSENT_REQUIRED: Advice(
        "Microsoft refused the refresh token: sending is paused", "run `msclkid auth` (sending resumes by itself)"
    ),
    Code.CONSENT_DENIED: Advice(
        "the visitor refused consent: nothing identifying could be sent", "nothing: this is the visitor's choice"
    ),
    Code.NO_IDENTIFIER: Advice(
        "no click ID, email or phone to match the conversion on",
        "capture the msclkid on landing pages and pass the customer's email when you have it",
    ),
}
_UNKNOWN = Advice(
    "a code this report does not know", "see `msclkid status EVENT_ID` and Microsoft's operation error codes"
)


def advice(code: str | None) -> Advice:
    """The meaning of ``code`` and what to do (a generic hint for a code not listed)."""
    if not code:
        return _UNKNOWN
    found = _ADVICE.get(code) or _ADVICE.get(code.split(" ", 1)[0])
    return found or _UNKNOWN
