"""The recording recipe every ``record_*`` call follows, and the four kinds of event built on it.

One recipe, in this order: validate the event ID (and goal) -> take the consent snapshot and drop what it
forbids -> build the model and its wire value (the model validates; the window is checked against our clock)
-> fix the idempotency key -> commit one outbox row -> return its :class:`EventStatus`.  Only the middle
step differs per kind.  Nothing here waits on Microsoft.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Unpack

from msclkid_middleware.capture.consent import Consent
from msclkid_middleware.capture.context import request_consent
from msclkid_middleware.config import Settings
from msclkid_middleware.conversions import (
    OFFLINE_MAX_AGE,
    UET_MAX_AGE,
    AdjustmentType,
    OfflineConversion,
    OfflineConversionAdjustment,
    OnlineConversionAdjustment,
    UetCustomData,
    UetEvent,
    UetEventType,
    UetItem,
    UetPageType,
    UetUserData,
    UserIdentifiers,
)
from msclkid_middleware.dispatch.report import Metrics
from msclkid_middleware.dispatch.status import EventStatus
from msclkid_middleware.dispatch.subject import (
    NO_MATCH_KEY,
    ClickLike,
    OfflineArguments,
    Subject,
    adjustment_key,
    check_event_id,
    check_goal,
    click_id,
    digest,
    offline_key,
)
from msclkid_middleware.errors import (
    AdjustmentError,
    ConfigError,
    StoreError,
    UnknownEvent,
    UnknownGoal,
    ValidationError,
)
from msclkid_middleware.outbox import EncodedRow, NewRow, OutboxRow, OutboxStore

__all__ = ["Recording"]

logger = logging.getLogger("msclkid_middleware.dispatch.tracker")

#: A syntactically valid click ID used only to run the model's structural checks on a row whose
#: identifiers consent removed; it never reaches the payload.
_PLACEHOLDER_CLICK = "0" * 32
_UET_MATCH_KEYS = ("anonymous_id", "external_id", "msclkid", "email", "phone", "em", "ph")


class Recording:
    """The ``record_*`` half of :class:`~msclkid_middleware.dispatch.tracker.ConversionTracker`."""

    settings: Settings
    store: OutboxStore
    clock: Callable[[], datetime]
    goals: tuple[str, ...]
    default_region: str | None
    account: str
    uet_tag_id: str | None
    metrics_registry: Metrics

    # -- the recipe -------------------------------------------------------------------------------
    def _before_record(self) -> None:
        """Hook run first by every ``record_*`` (the tracker re-creates its worker after ``fork()``)."""

    def _begin(self, event_id: object, *, goal: object = None) -> str:
        self._before_record()
        checked = check_event_id(event_id)
        if goal is not None:
            self._check_goal(goal)
        return checked

    def _subject(self, consent: Consent | None, click: object) -> Subject:
        if consent is None:
            # No snapshot from the app: inside a request handled by one of our adapters, that request's own
            # decision (a visitor who sent Sec-GPC or refused in the banner stays refused); outside any request
            # (a worker, a script, a webhook without the middleware), the site's configured default.
            consent = request_consent() or Consent(self.settings.consent_default, "default")
        elif not isinstance(consent, Consent):
            raise ValidationError("consent", "must be a Consent value (for example middleware.get_consent(environ))")
        return Subject(consent, click_id(click))

    def _check_goal(self, name: object) -> None:
        try:
            check_goal(name, self.goals)
        except UnknownGoal:
            self.metrics_registry.add("rejected_at_record", reason="unknown_goal")
            raise

    def _commit(self, row: NewRow, connection: object) -> EventStatus:
        try:
            result = self.store.enqueue(row, now=self.clock(), connection=connection)
        except StoreError as exc:
            self.metrics_registry.add("store_errors", reason=exc.reason)
            logger.error("could not record %s event: %s", row.kind, exc)
            raise
        if not result.created:
            self.metrics_registry.add("duplicates", reason=row.kind)
            return self._status_of(result.row, created=False)
        if result.row.state == "suppressed":
            self.metrics_registry.add("suppressed", reason=result.row.last_error_code)
        else:
            self.metrics_registry.add("recorded", reason=row.kind)
            self._recorded()
        return self._status_of(result.row, created=True)

    def _recorded(self) -> None:
        """Hook after a new row is committed (the tracker wakes its worker)."""

    def _status_of(self, row: OutboxRow, *, created: bool = True, rows: list[OutboxRow] | None = None) -> EventStatus:
        adjustments: tuple[EventStatus, ...] = ()
        # A row this call just created cannot have adjustments yet: skip the lookup on the hot path.
        if row.kind in ("offline", "uet") and not (created and rows is None):
            siblings = rows if rows is not None else self.store.find(row.event_id)
            adjustments = tuple(
                EventStatus.from_row(r) for r in siblings if r.kind == "offline_adjustment" and r.depends_on == row.id
            )
        return EventStatus.from_row(row, adjustments=adjustments, created=created)

    # -- the four kinds ---------------------------------------------------------------------------
    def record_offline(
        self,
        event_id: str,
        conversion_name: str,
        conversion_time: datetime,
        value: float | None = None,
        currency: str | None = None,
        click: ClickLike = None,
        email: str | None = None,
        phone: str | None = None,
        consent: Consent | None = None,
        *,
        hashed_email: str | None = None,
        hashed_phone: str | None = None,
        external_attribution_credit: float | None = None,
        external_attribution_model: str | None = None,
        connection: object = None,
    ) -> EventStatus:
        """Record an offline conversion (a sale or a qualified lead) for upload.

        ``click`` is a :class:`~msclkid_middleware.capture.clickid.Click`, a click-ID string or ``None``
        (then ``email`` or ``phone`` is required: Microsoft matches on hashed identifiers alone).
        Raw email and phone are normalised and hashed here and never stored.  Recording the same
        ``event_id`` again returns the existing status without storing anything.  ``connection``:
        the application's own database connection, to commit the row in its transaction.  ``consent``
        omitted: the decision of the request being handled (inside the middleware), else the configured
        ``MSCLKID_CONSENT_DEFAULT`` (docs/consent.md).
        """
        row = self.offline_row(
            event_id=event_id,
            conversion_name=conversion_name,
            conversion_time=conversion_time,
            value=value,
            currency=currency,
            click=click,
            email=email,
            phone=phone,
            consent=consent,
            hashed_email=hashed_email,
            hashed_phone=hashed_phone,
            external_attribution_credit=external_attribution_credit,
            external_attribution_model=external_attribution_model,
        )
        return self._commit(row, connection)

    def record_offline_rows(self, rows: Sequence[NewRow | EncodedRow], *, connection: object = None) -> int:
        """Store rows from :meth:`offline_row` or ``dispatch.bulk`` in one batched insert; returns how many were new.

        Rows already stored (the same event or key) are skipped, as :meth:`record_offline` skips them.
        """
        self._before_record()
        if not rows:
            return 0
        try:
            created = self.store.enqueue_many(rows, now=self.clock(), connection=connection)
        except StoreError as exc:
            self.metrics_registry.add("store_errors", reason=exc.reason)
            logger.error("could not record %d offline events: %s", len(rows), exc)
            raise
        self.metrics_registry.add("duplicates", len(rows) - created, reason="offline")
        if created:
            self.metrics_registry.add("recorded", created, reason="offline")
            self._recorded()
        return created

    def offline_row(self, **arguments: Unpack[OfflineArguments]) -> NewRow:
        """The outbox row :meth:`record_offline` stores for these arguments (by name; all but ``connection``):
        every check made, nothing stored.

        For bulk imports, which hand a batch of them to :meth:`record_offline_rows` (one insert per batch).
        """
        event_id = self._begin(arguments["event_id"], goal=arguments["conversion_name"])
        click = arguments.get("click")
        subject = self._subject(arguments.get("consent"), click)
        identifiers = UserIdentifiers(
            email=arguments.get("email"),
            phone=arguments.get("phone"),
            hashed_email=arguments.get("hashed_email"),
            hashed_phone=arguments.get("hashed_phone"),
            default_region=self.default_region,
        )
        subject = dataclasses.replace(subject, identifiers=bool(identifiers))
        msclkid = subject.msclkid
        if not subject.granted:
            msclkid, identifiers = None, UserIdentifiers()
        elif msclkid is None and not identifiers:
            raise ValidationError("click", NO_MATCH_KEY)
        conversion = OfflineConversion(
            conversion_name=arguments["conversion_name"],
            conversion_time=arguments["conversion_time"],
            value=arguments.get("value"),
            currency=arguments.get("currency"),
            msclkid=msclkid if (msclkid or identifiers) else _PLACEHOLDER_CLICK,
            identifiers=identifiers or None,
            external_attribution_credit=arguments.get("external_attribution_credit"),
            external_attribution_model=arguments.get("external_attribution_model"),
            validate_times=False,
        )
        conversion.check_window(self.clock())
        wire = conversion.to_wire()
        matchable = bool(msclkid or identifiers)
        if matchable:
            key = offline_key(self.account, wire)
        else:
            # Never sent, so Microsoft's key does not apply; the event ID keeps distinct events apart.
            wire.pop("MicrosoftClickId", None)
            key = digest("offline", self.account, "suppressed", event_id)
        return NewRow(
            kind="offline",
            account=self.account,
            event_id=event_id,
            idempotency_key=key,
            payload=wire,
            conversion_name=conversion.conversion_name,
            consent=subject.snapshot(click if subject.granted else None),
            expires_at=conversion.conversion_time + OFFLINE_MAX_AGE,
            **subject.suppression(matchable=matchable),
        )

    def restate(
        self,
        event_id: str,
        value: float,
        currency: str | None = None,
        adjustment_time: datetime | None = None,
        *,
        connection: object = None,
    ) -> EventStatus:
        """Change the value of a recorded offline conversion (a partial refund, a corrected total).

        The adjustment reuses the original's exact ConversionName, ConversionTime and click ID or
        hashed identifiers, found by ``event_id``; it is sent only after the original is delivered.
        """
        return self._adjust_offline(event_id, "Restate", value, currency, adjustment_time, connection)

    def retract(
        self, event_id: str, adjustment_time: datetime | None = None, *, connection: object = None
    ) -> EventStatus:
        """Withdraw a recorded offline conversion (a full refund, a cancelled order)."""
        return self._adjust_offline(event_id, "Retract", None, None, adjustment_time, connection)

    def _adjust_offline(
        self,
        event_id: str,
        adjustment_type: AdjustmentType,
        value: float | None,
        currency: str | None,
        adjustment_time: datetime | None,
        connection: object,
    ) -> EventStatus:
        event_id = self._begin(event_id)
        original = self._adjustable(event_id)
        base = OfflineConversion.from_wire(original.payload)
        now = self.clock()
        adjustment = OfflineConversionAdjustment(
            adjustment_type=adjustment_type,
            conversion_name=base.conversion_name,
            conversion_time=base.conversion_time,
            adjustment_time=adjustment_time if adjustment_time is not None else now,
            value=value,
            currency=(currency if currency is not None else base.currency) if adjustment_type == "Restate" else None,
            msclkid=base.msclkid,
            identifiers=base.identifiers,
            validate_times=False,
        )
        adjustment.check_window(now)
        wire = adjustment.to_wire()
        # The value and currency are part of the key too: two different restates within the same
        # second are two adjustments, the same restate retried is one.
        key = digest("offline_adjustment", original.idempotency_key, *adjustment_key(wire, adjustment_type))
        row = NewRow(
            kind="offline_adjustment",
            account=original.account,
            event_id=event_id,
            idempotency_key=key,
            payload=wire,
            conversion_name=base.conversion_name,
            consent=original.consent,
            depends_on=original.id,
            expires_at=original.expires_at,
        )
        return self._commit(row, connection)

    def _adjustable(self, event_id: str) -> OutboxRow:
        """The original offline conversion of ``event_id``, if Microsoft can still adjust it."""
        originals = self.store.find(event_id, kind="offline")
        if not originals:
            raise UnknownEvent(event_id)
        original = originals[0]
        if original.state in ("rejected", "dead", "suppressed"):
            raise AdjustmentError(
                f"the original conversion {event_id!r} is {original.state}: Microsoft has nothing to adjust"
            )
        for previous in self.store.find(event_id, kind="offline_adjustment"):
            if previous.payload.get("AdjustmentType") == "Retract" and previous.state not in ("rejected", "dead"):
                raise AdjustmentError(f"conversion {event_id!r} is already retracted")
        return original

    def adjust_online(
        self,
        transaction_id: str,
        conversion_name: str,
        adjustment_type: AdjustmentType,
        value: float | None = None,
        currency: str | None = None,
        adjustment_time: datetime | None = None,
        *,
        event_id: str | None = None,
        connection: object = None,
    ) -> EventStatus:
        """Restate or retract an online (UET) conversion by the ``transaction_id`` UET reported with it.

        ``event_id`` (default: the transaction ID) is what :meth:`status` looks it up by.
        """
        self._before_record()
        self._check_goal(conversion_name)
        now = self.clock()
        adjustment = OnlineConversionAdjustment(
            adjustment_type=adjustment_type,
            conversion_name=conversion_name,
            transaction_id=transaction_id,
            adjustment_time=adjustment_time if adjustment_time is not None else now,
            value=value,
            currency=currency,
            validate_times=False,
        )
        adjustment.check_window(now)
        wire = adjustment.to_wire()
        key_fields = (wire["TransactionId"], wire["ConversionName"], *adjustment_key(wire, adjustment_type))
        row = NewRow(
            kind="online_adjustment",
            account=self.account,
            event_id=check_event_id(event_id if event_id is not None else transaction_id),
            idempotency_key=digest("online_adjustment", self.account, *key_fields),
            payload=wire,
            conversion_name=adjustment.conversion_name,
            expires_at=adjustment.adjustment_time + OFFLINE_MAX_AGE,
        )
        return self._commit(row, connection)

    def record_uet_event(
        self,
        event_id: str,
        event_name: str | None,
        event_time: datetime,
        event_type: UetEventType = "custom",
        click: ClickLike = None,
        *,
        email: str | None = None,
        phone: str | None = None,
        hashed_email: str | None = None,
        hashed_phone: str | None = None,
        anonymous_id: str | None = None,
        external_id: str | None = None,
        client_ip_address: str | None = None,
        client_user_agent: str | None = None,
        value: float | None = None,
        currency: str | None = None,
        transaction_id: str | None = None,
        event_category: str | None = None,
        event_label: str | None = None,
        event_value: float | None = None,
        page_type: UetPageType | None = None,
        items: Iterable[UetItem] = (),
        item_ids: Iterable[str] = (),
        event_source_url: str | None = None,
        page_load_id: str | None = None,
        referrer_url: str | None = None,
        page_title: str | None = None,
        keywords: str | None = None,
        consent: Consent | None = None,
        tag_id: str | None = None,
        connection: object = None,
    ) -> EventStatus:
        """Record a UET Conversions API event (``custom``, or ``pageLoad`` with ``event_source_url``).

        ``event_id`` is UET's deduplication key: use the browser tag's ``event_id`` for the same event.
        ``adStorageConsent`` comes from the consent snapshot; a denied snapshot drops the click ID, email/phone
        and ``external_id``, and the client IP and user agent unless ``MSCLKID_UET_DENIED_SEND_CLIENT_INFO`` is
        on (the event is still sent with ``"D"`` when an ``anonymous_id`` remains).
        """
        event_id = self._begin(event_id)
        tag = tag_id or self.uet_tag_id
        if not tag:
            raise ConfigError("UET_TAG_ID is required to record UET events", setting="UET_TAG_ID")
        has_hashes = any(v is not None for v in (email, phone, hashed_email, hashed_phone, external_id))
        subject = dataclasses.replace(self._subject(consent, click), identifiers=has_hashes)
        user: dict[str, Any] = {"anonymous_id": anonymous_id, "default_region": self.default_region}
        if subject.granted:
            user.update(msclkid=subject.msclkid, email=email, phone=phone, em=hashed_email, ph=hashed_phone)
            user.update(external_id=external_id)
        if subject.granted or self.settings.uet_denied_client_info:
            # adStorageConsent=D: no click ID, hashes or external ID; the IP and user agent only when the
            # site says so (MSCLKID_UET_DENIED_SEND_CLIENT_INFO, docs/uet.md).
            user.update(client_ip_address=client_ip_address, client_user_agent=client_user_agent)
        has_match_key = any(user.get(k) is not None for k in _UET_MATCH_KEYS)
        if subject.granted and not has_match_key:
            raise ValidationError(
                "click", "give a click, the customer's email or phone, an anonymous_id or an external_id"
            )
        items, item_ids = tuple(items), tuple(item_ids)
        custom = None
        if any(v is not None for v in (value, currency, transaction_id, event_category, event_label, event_value)) or (
            page_type is not None or items or item_ids
        ):
            custom = UetCustomData(
                value=value,
                currency=currency,
                transaction_id=transaction_id,
                event_category=event_category,
                event_label=event_label,
                event_value=event_value,
                page_type=page_type,
                items=items,
                item_ids=item_ids,
            )
        user_data = UetUserData(**user) if has_match_key else UetUserData(**{**user, "external_id": "-"})
        event = UetEvent(
            event_id=event_id,
            event_time=event_time,
            user_data=user_data,
            event_type=event_type,
            event_name=event_name,
            event_source_url=event_source_url,
            page_load_id=page_load_id,
            referrer_url=referrer_url,
            page_title=page_title,
            keywords=keywords,
            custom_data=custom,
            consent=subject.consent,
            validate_times=False,
        )
        event.check_window(self.clock())
        wire = event.to_wire()
        if not has_match_key:
            wire["userData"] = {k: v for k, v in wire["userData"].items() if k != "externalId"}
        row = NewRow(
            kind="uet",
            account=str(tag),
            event_id=event_id,
            idempotency_key=digest("uet", str(tag), wire["eventId"]),
            payload=wire,
            conversion_name=event_name,
            consent=subject.snapshot(),
            expires_at=event.event_time + UET_MAX_AGE,
            **subject.suppression(matchable=has_match_key),
        )
        return self._commit(row, connection)
