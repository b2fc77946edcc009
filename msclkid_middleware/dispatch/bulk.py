"""Offline conversions in bulk (``import-csv``): the rows ``record_offline`` stores, built without its models.

``record_offline`` builds a ``UserIdentifiers`` and an ``OfflineConversion``, turns the model into its wire object,
derives the idempotency key from that and encodes two JSON columns: most of an import's time.  The rows of one
file share their goal, currency, account and consent decision, so :class:`OfflineRows` checks those once and
builds each row from its own checked fields.

The models stay the one rule set.  :meth:`OfflineRows.row` builds a row only when it can vouch that the model path
accepts it: values a file repeats (the goal name, the currency) go through the models' own checks once and are
remembered; each row's own values through the same functions (``hash_email``, ``hash_phone``, ``valid_hash``,
``is_valid_click_id``) or through comparisons that accept a part of what the models accept (a float in
[0, maximum], a UTC time inside the window).  For anything else it returns ``None`` and the caller takes the model
path (``Recording.offline_row``), which raises the model's error with its wording.  What it builds is what the model
path stores, byte for byte (``tests/dispatch/test_bulk.py`` compares the two on many rows, hostile ones included).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from msclkid_middleware.capture.clickid import Click, is_valid_click_id
from msclkid_middleware.capture.consent import Consent
from msclkid_middleware.capture.context import request_consent
from msclkid_middleware.conversions import CLOCK_SKEW, MAX_CONVERSION_VALUE, OFFLINE_MAX_AGE
from msclkid_middleware.conversions.base import valid_conversion_name, valid_currency, valid_hash
from msclkid_middleware.conversions.identity import hash_email, hash_phone
from msclkid_middleware.dispatch.subject import MAX_EVENT_ID, Subject, check_goal
from msclkid_middleware.errors import MsclkidError, ValidationError
from msclkid_middleware.outbox import EncodedRow
from msclkid_middleware.outbox.rows import dumps

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.dispatch.recording import Recording

__all__ = ["OfflineRows"]


def _json(text: str) -> str:
    """``text`` as a JSON string, as ``rows.dumps`` and ``subject.digest`` write it (``ensure_ascii=False``)."""
    return json.dumps(text, ensure_ascii=False)


class OfflineRows:
    """The outbox rows ``record_offline`` would store for many conversions of one account under one consent.

    ``clock`` is read once per row for the time window, as ``record_offline`` reads the tracker's clock.  Build one
    with :meth:`of` (a tracker's account, goals, region and consent decision) for an import, or directly (any
    account, ``Consent("granted", ...)``) to check rows without a tracker (``validate``).
    """

    def __init__(
        self,
        *,
        account: str,
        goals: Sequence[str],
        consent: Consent,
        clock: Callable[[], datetime],
        default_region: str | None = None,
    ) -> None:
        self.account, self.goals, self.consent, self.clock = account, tuple(goals), consent, clock
        self.default_region = default_region
        # Only a granted decision is built here: a denied one drops what it must and may store a row suppressed,
        # which the model path does.  An account NewRow would refuse is left to it too.
        self._usable = consent.granted and 0 < len(account) <= 255
        self._account_json = _json(account)
        self._consent_json = dumps(Subject(consent, None).snapshot())
        #: Goal name -> its JSON, for the names that passed check_goal and the model's name rule; None: failed.
        self._names: dict[str, str | None] = {}
        #: Currency as given -> as stored, for those the model accepts; None: refused.
        self._currencies: dict[str, str | None] = {}

    @classmethod
    def of(cls, tracker: Recording) -> OfflineRows:
        """For ``tracker``: its account, goals and default region, and the consent ``record_offline`` would take
        when given none (the handled request's decision, else the configured default)."""
        consent = request_consent() or Consent(tracker.settings.consent_default, "default")
        return cls(
            account=tracker.account,
            goals=tracker.goals,
            consent=consent,
            clock=tracker.clock,
            default_region=tracker.default_region,
        )

    def _name(self, name: str) -> str | None:
        if name not in self._names:
            try:
                check_goal(name, self.goals)
                self._names[name] = _json(valid_conversion_name(name))
            except ValidationError:
                self._names[name] = None
        return self._names[name]

    def _currency(self, currency: str) -> str | None:
        if currency not in self._currencies:
            try:
                self._currencies[currency] = valid_currency("currency", currency)
            except ValidationError:
                self._currencies[currency] = None
        return self._currencies[currency]

    def _hashes(
        self, email: str | None, phone: str | None, hashed_email: str | None, hashed_phone: str | None
    ) -> tuple[str | None, str | None] | None:
        """The two digests ``UserIdentifiers`` keeps (by its own functions), or ``None`` where it would raise."""
        try:
            if email is not None:
                if hashed_email is not None:
                    return None  # both given: the model's error
                hashed_email = hash_email(email)
            elif hashed_email is not None:
                hashed_email = valid_hash("hashed_email", hashed_email)
            if phone is not None:
                if hashed_phone is not None:
                    return None
                hashed_phone = hash_phone(phone, self.default_region)
            elif hashed_phone is not None:
                hashed_phone = valid_hash("hashed_phone", hashed_phone)
        except (MsclkidError, ValueError):
            return None  # the model path raises the same error (or, with other fields wrong too, the one before)
        return hashed_email, hashed_phone

    def row(
        self,
        event_id: str,
        conversion_name: str,
        conversion_time: datetime,
        value: float | None,
        currency: str | None,
        click: Click | str | None,
        email: str | None,
        phone: str | None,
        hashed_email: str | None,
        hashed_phone: str | None,
    ) -> EncodedRow | None:
        """The row ``record_offline`` stores for these arguments, or ``None``: take the model path for this one."""
        if not self._usable or type(event_id) is not str or len(event_id) > MAX_EVENT_ID or not event_id.strip():
            return None
        name = self._name(conversion_name) if type(conversion_name) is str else None
        # A Click's ID is taken as it is by the models; a string must be a valid click ID.
        msclkid = click.msclkid if isinstance(click, Click) else click
        if name is None or (msclkid is not None and not is_valid_click_id(msclkid)):
            return None
        if email is None and phone is None and hashed_email is None and hashed_phone is None:
            if msclkid is None:
                return None  # nothing to match on: the model path says so
        else:
            hashes = self._hashes(email, phone, hashed_email, hashed_phone)
            if hashes is None:
                return None
            hashed_email, hashed_phone = hashes
        if value is not None and not (type(value) is float and 0.0 <= value <= MAX_CONVERSION_VALUE):
            return None  # NaN, infinities, negative, too large or not a float: the model path decides
        if currency is not None and (currency := self._currency(currency)) is None:
            return None
        # The time as the model keeps it (UTC, whole seconds) and check_window's comparisons.  check_window truncates
        # ``now`` to whole seconds; comparing with the untruncated clock is the same for "not in the future" (both
        # sides whole seconds but now) and stricter for "not older than 90 days": a row it refuses here goes to the
        # model path, which decides.
        now = self.clock()
        if type(conversion_time) is not datetime or conversion_time.tzinfo is not UTC or now.tzinfo is not UTC:
            return None
        when = conversion_time.replace(microsecond=0) if conversion_time.microsecond else conversion_time
        if when > now + CLOCK_SKEW or now - when > OFFLINE_MAX_AGE:
            return None
        time = when.isoformat()[:-6] + "Z"  # conversions.format_time of a UTC whole-second time
        consent = self._consent_json if msclkid is click else dumps(Subject(self.consent, msclkid).snapshot(click))
        key = self._key(msclkid, hashed_email, hashed_phone, name, time)
        payload = self._payload(name, time, value, currency, msclkid, hashed_email, hashed_phone)
        expires = when + OFFLINE_MAX_AGE
        return EncodedRow(
            "offline",
            self.account,
            event_id,
            key,
            payload,
            conversion_name,
            consent,
            "pending",
            expires,
            None,
            None,
            None,
        )

    def _key(self, msclkid: str | None, email: str | None, phone: str | None, name: str, time: str) -> str:
        """``subject.offline_key`` of the wire item: the digest of the account, the match key, the name and time."""
        # subject.digest's json.dumps of that list (compact); the click ID, the digests and the time need no escaping.
        match = f'"{msclkid}"' if msclkid else f"null,{_or_null(email)},{_or_null(phone)}"
        canonical = f'[{self._account_json},{match},{name},"{time}"]'
        return "offline:" + hashlib.sha256(canonical.encode()).hexdigest()

    @staticmethod
    def _payload(
        name: str,
        time: str,
        value: float | None,
        currency: str | None,
        msclkid: str | None,
        email: str | None,
        phone: str | None,
    ) -> str:
        """``rows.dumps`` of the wire item: its members in sorted order, ``None`` left out."""
        parts = [f'"ConversionCurrencyCode":"{currency}"'] if currency is not None else []
        parts.append(f'"ConversionName":{name},"ConversionTime":"{time}"')
        if value is not None:
            parts.append(f'"ConversionValue":{value!r}')
        if email is not None:
            parts.append(f'"HashedEmailAddress":"{email}"')
        if phone is not None:
            parts.append(f'"HashedPhoneNumber":"{phone}"')
        if msclkid is not None:
            parts.append(f'"MicrosoftClickId":"{msclkid}"')
        return "{" + ",".join(parts) + "}"


def _or_null(text: str | None) -> str:
    return "null" if text is None else f'"{text}"'
