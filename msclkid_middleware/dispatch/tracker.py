"""``ConversionTracker``: the one object a shop talks to.  Record in the request, deliver later.

Every ``record_*`` validates, hashes, applies the consent snapshot, fixes the idempotency key and
commits one outbox row, then returns: it never waits on Microsoft.  Delivery is the dispatcher's
job, run by :meth:`ConversionTracker.flush`, the background thread (:meth:`start`) or ``msclkid
worker``.  Guarantees and states are in ``docs/dispatch.md``.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from msclkid_middleware.capture.clickid import Click, validate_click_id
from msclkid_middleware.capture.consent import Consent
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
    format_time,
)
from msclkid_middleware.dispatch.dispatcher import Dispatcher, DispatchReport, Metrics, utcnow
from msclkid_middleware.dispatch.goal_ages import GoalRegistry
from msclkid_middleware.dispatch.worker import BackgroundWorker, ErrorCallback, run_until_signalled
from msclkid_middleware.errors import (
    AdjustmentError,
    ConfigError,
    StoreError,
    UnknownEvent,
    UnknownGoal,
    ValidationError,
)
from msclkid_middleware.outbox import Kind, NewRow, OutboxRow, OutboxStore, State, open_store
from msclkid_middleware.outbox.sqlite import Durability
from msclkid_middleware.redact import RedactingFilter

__all__ = ["UET_TOKEN_PREFIX", "ConversionTracker", "EventStatus", "offline_key"]

logger = logging.getLogger("msclkid_middleware.dispatch.tracker")

ClickLike = Click | str | None
#: Token-table name prefix of a UET CAPI token stored by ``msclkid uet token`` (``uet:<tag ID>``).
UET_TOKEN_PREFIX = "uet:"  # noqa: S105 - a key prefix, not a secret
#: A syntactically valid click ID used only to run the model's structural checks on a row whose
#: identifiers consent removed; it never reaches the payload.
_PLACEHOLDER_CLICK = "0" * 32
_MAX_EVENT_ID = 255
_UET_MATCH_KEYS = ("anonymous_id", "external_id", "msclkid", "email", "phone", "em", "ph")
#: Loggers that may see Microsoft's answers; the tracker masks its secrets (by value) on all of them.
_LOGGERS = (
    "msclkid_middleware.dispatch.tracker",
    "msclkid_middleware.dispatch.dispatcher",
    "msclkid_middleware.dispatch.worker",
    "msclkid_middleware.microsoft.campaign",
    "msclkid_middleware.microsoft.uet",
    "msclkid_middleware.microsoft.oauth",
)


@dataclass(frozen=True, slots=True)
class EventStatus:
    """Where an event stands.  ``adjustments`` lists restates/retracts recorded for it, oldest first.

    ``created`` is False when the ``record_*`` call that returned this found the event already recorded
    (a no-op).  ``next_attempt_at`` is set only while the event is pending.
    """

    event_id: str
    kind: Kind
    state: State
    attempts: int
    last_error_code: str | None
    last_error_message: str | None
    tracking_id: str | None
    next_attempt_at: datetime | None
    paused_reason: str | None
    warnings: tuple[str, ...]
    idempotency_key: str
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None
    adjustments: tuple[EventStatus, ...] = ()
    created: bool = True

    @property
    def delivered(self) -> bool:
        return self.state == "delivered"

    @property
    def final(self) -> bool:
        return self.state in ("delivered", "rejected", "dead", "suppressed")

    @classmethod
    def from_row(
        cls, row: OutboxRow, *, adjustments: tuple[EventStatus, ...] = (), created: bool = True
    ) -> EventStatus:
        return cls(
            event_id=row.event_id,
            kind=row.kind,
            state=row.state,
            attempts=row.attempts,
            last_error_code=row.last_error_code,
            last_error_message=row.last_error_message,
            tracking_id=row.tracking_id,
            next_attempt_at=row.next_attempt_at if row.state == "pending" else None,
            paused_reason=row.paused_reason,
            warnings=row.warnings,
            idempotency_key=row.idempotency_key,
            created_at=row.created_at,
            updated_at=row.updated_at,
            delivered_at=row.delivered_at,
            adjustments=adjustments,
            created=created,
        )


def _digest(kind: str, *parts: Any) -> str:
    """The idempotency key: the kind plus a SHA-256 of exactly the fields Microsoft de-duplicates on."""
    canonical = json.dumps(list(parts), separators=(",", ":"), ensure_ascii=False)
    return f"{kind}:{hashlib.sha256(canonical.encode()).hexdigest()}"


def offline_key(account: str, wire: Mapping[str, Any]) -> str:
    """Offline: the click ID (or the hashed identifiers) + ConversionName + ConversionTime, as sent."""
    if wire.get("MicrosoftClickId"):
        match: list[Any] = [wire["MicrosoftClickId"]]
    else:
        match = [None, wire.get("HashedEmailAddress"), wire.get("HashedPhoneNumber")]
    return _digest("offline", account, *match, wire["ConversionName"], wire["ConversionTime"])


class ConversionTracker:
    """Record conversions durably and deliver them to Microsoft Advertising.

    Construction opens the store (``store`` or ``store_url``, default ``settings.effective_store_url``)
    and builds the clients; it starts no thread (call :meth:`start`).

    - ``microsoft``: ``None`` builds a ``CampaignManagementClient`` from ``settings`` when every
      ``MSADS_*`` credential is set (the refresh token then lives in this store, seeded from
      ``MSADS_REFRESH_TOKEN`` once); a client instance is used as it is; ``False`` disables
      Campaign Management delivery (rows are recorded and wait).
    - ``uet``: the same for a ``UetClient`` (``UET_TAG_ID`` / ``UET_API_TOKEN``); the tag ID comes
      from ``uet_tag_id`` or ``settings.uet_tag_id``.
    - ``goals``: known conversion goal names (default ``settings.conversion_goals``); when non-empty,
      other names raise :class:`~msclkid_middleware.errors.UnknownGoal` at record time.
    - ``clock``: returns an aware UTC ``datetime``; inject one in tests (nothing here sleeps on it).
    - ``on_error``: called with exceptions the background worker meets; never raises into you.
    """

    def __init__(
        self,
        *,
        store_url: str | None = None,
        store: OutboxStore | None = None,
        microsoft: Any = None,
        uet: Any = None,
        goals: Iterable[str] | None = None,
        settings: Settings | None = None,
        clock: Callable[[], datetime] | None = None,
        retry_policy: Any = None,
        on_error: ErrorCallback | None = None,
        durability: Durability = "crash",
        max_pending: int = 1_000_000,
        retention: timedelta = timedelta(days=90),
        batch_size: int = 1000,
        lease_seconds: float = 300.0,
        poll_interval: float = 1.0,
        uet_tag_id: str | None = None,
        default_region: str | None = None,
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        self.clock: Callable[[], datetime] = clock or utcnow
        self.goals: tuple[str, ...] = tuple(goals) if goals is not None else self.settings.conversion_goals
        self.retention = retention
        self.poll_interval = poll_interval
        self.default_region = default_region
        self.on_error = on_error
        self._store_options: dict[str, Any] = {"durability": durability, "max_pending": max_pending}
        self._owns_store = store is None
        self.store: OutboxStore = (
            store
            if store is not None
            else open_store(store_url or self.settings.effective_store_url, **self._store_options)
        )
        self._microsoft_arg = microsoft
        self._uet_arg = uet
        self._retry_policy = retry_policy
        self._batch_size = batch_size
        self._lease_seconds = lease_seconds
        self.uet_tag_id = uet_tag_id or self.settings.uet_tag_id
        self.metrics_registry = Metrics()
        #: Goal creation times (``msclkid goals create``): conversions for younger goals are held 2 hours.
        self.goal_registry = GoalRegistry(self.store)
        # Secrets are redacted by value in every record our loggers emit, including tokens that
        # rotate later (the token store teaches the filter each new one).
        self.redactor = RedactingFilter(self.settings.secrets())
        for name in _LOGGERS:
            logging.getLogger(name).addFilter(self.redactor)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._started = False
        self._atexit_registered = False
        self._worker: BackgroundWorker | None = None
        try:
            self._build_dispatch()
        except BaseException:
            for name in _LOGGERS:
                logging.getLogger(name).removeFilter(self.redactor)
            if self._owns_store:
                self.store.close()
            raise

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> ConversionTracker:
        """Everything from ``MSCLKID_*`` / ``MSADS_*`` / ``UET_*`` (``config.Settings.from_env``).

        ``options`` are this class's keyword arguments; ``None`` values are ignored.
        """
        options = {k: v for k, v in options.items() if v is not None}
        settings = options.pop("settings", None) or Settings.from_env(environ)
        return cls(settings=settings, **options)

    def _build_dispatch(self) -> None:
        self.campaign = self._campaign_client(self._microsoft_arg)
        self.uet = self._uet_client(self._uet_arg)
        self.account = str(getattr(self.campaign, "account_id", None) or self.settings.account_id or "-")
        self.dispatcher = Dispatcher(
            self.store,
            campaign=self.campaign,
            uet=self.uet,
            retry_policy=self._retry_policy,
            clock=self.clock,
            batch_size=self._batch_size,
            lease_seconds=self._lease_seconds,
            metrics=self.metrics_registry,
            goal_ages=self.goal_registry,
        )

    def _campaign_client(self, microsoft: Any) -> Any:
        if microsoft is False:
            return None
        if microsoft is not None:
            if not callable(getattr(microsoft, "apply_offline_conversions", None)):
                # Fail here, not at the first flush with rows stuck in flight.
                raise ConfigError(
                    "microsoft= takes a CampaignManagementClient, None (build one from the MSADS_* settings) or "
                    "False (no Campaign Management delivery)",
                    setting="microsoft",
                )
            return microsoft
        s = self.settings
        if not s.microsoft_configured and not self._stored_refresh_token():
            return None
        from msclkid_middleware.microsoft import CampaignManagementClient, RefreshTokenProvider
        from msclkid_middleware.outbox.tokens import OutboxTokenStore

        tokens = OutboxTokenStore(self.store, redactor=self.redactor)
        provider = RefreshTokenProvider.from_settings(s, token_store=tokens)
        return CampaignManagementClient(
            api_url=s.effective_api_url,
            developer_token=s.developer_token or "",
            customer_id=s.customer_id or "",
            account_id=s.account_id or "",
            token_provider=provider,
        )

    def _uet_client(self, uet: Any) -> Any:
        if uet is False:
            return None
        if uet is not None:
            if not callable(getattr(uet, "send_events", None)):
                raise ConfigError(
                    "uet= takes a UetClient, None (build one from UET_TAG_ID / UET_API_TOKEN) or False",
                    setting="uet",
                )
            return uet
        s = self.settings
        stored_name = f"{UET_TOKEN_PREFIX}{s.uet_tag_id}" if s.uet_tag_id else None
        token = s.uet_api_token or self._stored_secret(stored_name)
        if not (s.uet_tag_id and token):
            return None
        from msclkid_middleware.microsoft import UetClient

        return UetClient(api_url=s.uet_api_url, api_token=token)

    def _stored_refresh_token(self) -> bool:
        """A refresh token stored by ``msclkid auth`` stands in for ``MSADS_REFRESH_TOKEN``."""
        s = self.settings
        if not all((s.developer_token, s.client_id, s.customer_id, s.account_id)):
            return False
        return self._stored_secret("microsoft") is not None

    def _stored_secret(self, name: str | None) -> str | None:
        """A secret from the store's token table (``msclkid auth``, ``msclkid uet token``); the redactor learns it."""
        if name is None:
            return None
        try:
            record = self.store.load_token(name)
        except StoreError:
            return None
        if record is None or not record.refresh_token:
            return None
        self.redactor.add(record.refresh_token)
        return record.refresh_token

    def __repr__(self) -> str:
        return f"ConversionTracker(store={self.store.url!r}, kinds={self.dispatcher.kinds!r})"

    def __enter__(self) -> ConversionTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- fork safety (PostHog's model) ------------------------------------------------------------
    def _check_fork(self) -> None:
        """After ``fork()`` the parent's thread is gone and its HTTP sessions must not be shared."""
        if os.getpid() == self._pid:
            return
        with self._lock:
            if os.getpid() == self._pid:
                return
            self._pid = os.getpid()
            self._worker = None
            if self._microsoft_arg is None or self._uet_arg is None:
                self._build_dispatch()  # fresh clients (and sessions) for this process
            if self._started:
                self._start_worker()

    # -- recording --------------------------------------------------------------------------------
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
        connection: Any = None,
    ) -> EventStatus:
        """Record an offline conversion (a sale or a qualified lead) for upload.

        ``click`` is a :class:`~msclkid_middleware.conversions.models.Click`, a click-ID string or ``None``
        (then ``email`` or ``phone`` is required: Microsoft matches on hashed identifiers alone).
        Raw email and phone are normalised and hashed here and never stored.  Recording the same
        ``event_id`` again returns the existing status without storing anything.  ``connection``:
        the application's own database connection, to commit the row in its transaction.
        """
        self._check_fork()
        event_id = _event_id(event_id)
        self._check_goal(conversion_name)
        snapshot = self._consent(consent)
        msclkid = _click_id(click)
        identifiers = UserIdentifiers(
            email=email,
            phone=phone,
            hashed_email=hashed_email,
            hashed_phone=hashed_phone,
            default_region=self.default_region,
        )
        now = self.clock()
        dropped = _denied_drop(snapshot, msclkid=msclkid, identifiers=bool(identifiers))
        if not snapshot.granted:
            msclkid, identifiers = None, UserIdentifiers()
        elif msclkid is None and not identifiers:
            raise ValidationError("click", "give a click (or its msclkid) or the customer's email or phone")
        conversion = OfflineConversion(
            conversion_name=conversion_name,
            conversion_time=conversion_time,
            value=value,
            currency=currency,
            msclkid=msclkid if (msclkid or identifiers) else _PLACEHOLDER_CLICK,
            identifiers=identifiers or None,
            external_attribution_credit=external_attribution_credit,
            external_attribution_model=external_attribution_model,
            validate_times=False,
        )
        conversion.check_window(now)
        wire = conversion.to_wire()
        matchable = bool(msclkid or identifiers)
        if matchable:
            key = offline_key(self.account, wire)
        else:
            # Never sent, so Microsoft's key does not apply; the event ID keeps distinct events apart.
            wire.pop("MicrosoftClickId", None)
            key = _digest("offline", self.account, "suppressed", event_id)
        row = NewRow(
            kind="offline",
            account=self.account,
            event_id=event_id,
            idempotency_key=key,
            payload=wire,
            conversion_name=conversion.conversion_name,
            consent=_snapshot(snapshot, dropped, click=click if snapshot.granted else None),
            expires_at=conversion.conversion_time + OFFLINE_MAX_AGE,
            **_suppression(snapshot, has_match_key=matchable),
        )
        return self._enqueue(row, connection)

    def restate(
        self,
        event_id: str,
        value: float,
        currency: str | None = None,
        adjustment_time: datetime | None = None,
        *,
        connection: Any = None,
    ) -> EventStatus:
        """Change the value of a recorded offline conversion (a partial refund, a corrected total).

        The adjustment reuses the original's exact ConversionName, ConversionTime and click ID or
        hashed identifiers, found by ``event_id``; it is sent only after the original is delivered.
        """
        return self._adjust_offline(event_id, "Restate", value, currency, adjustment_time, connection)

    def retract(self, event_id: str, adjustment_time: datetime | None = None, *, connection: Any = None) -> EventStatus:
        """Withdraw a recorded offline conversion (a full refund, a cancelled order)."""
        return self._adjust_offline(event_id, "Retract", None, None, adjustment_time, connection)

    def _adjust_offline(
        self,
        event_id: str,
        adjustment_type: AdjustmentType,
        value: float | None,
        currency: str | None,
        adjustment_time: datetime | None,
        connection: Any,
    ) -> EventStatus:
        self._check_fork()
        event_id = _event_id(event_id)
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
        row = NewRow(
            kind="offline_adjustment",
            account=original.account,
            event_id=event_id,
            # The value and currency are part of the key too: two different restates within the same
            # second are two adjustments, the same restate retried is one.
            idempotency_key=_digest(
                "offline_adjustment",
                original.idempotency_key,
                adjustment_type,
                wire["AdjustmentTime"],
                wire.get("AdjustmentValue"),
                wire.get("AdjustmentCurrencyCode"),
            ),
            payload=wire,
            conversion_name=base.conversion_name,
            consent=original.consent,
            depends_on=original.id,
            expires_at=original.expires_at,
        )
        return self._enqueue(row, connection)

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
        connection: Any = None,
    ) -> EventStatus:
        """Restate or retract an online (UET) conversion by the ``transaction_id`` UET reported with it.

        ``event_id`` (default: the transaction ID) is what :meth:`status` looks it up by.
        """
        self._check_fork()
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
        row = NewRow(
            kind="online_adjustment",
            account=self.account,
            event_id=_event_id(event_id if event_id is not None else transaction_id),
            idempotency_key=_digest(
                "online_adjustment",
                self.account,
                wire["TransactionId"],
                wire["ConversionName"],
                adjustment_type,
                wire["AdjustmentTime"],
                wire.get("AdjustmentValue"),
                wire.get("AdjustmentCurrencyCode"),
            ),
            payload=wire,
            conversion_name=adjustment.conversion_name,
            expires_at=adjustment.adjustment_time + OFFLINE_MAX_AGE,
        )
        return self._enqueue(row, connection)

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
        connection: Any = None,
    ) -> EventStatus:
        """Record a UET Conversions API event (``custom``, or ``pageLoad`` with ``event_source_url``).

        ``event_id`` is UET's deduplication key: use the browser tag's ``event_id`` for the same event.
        ``adStorageConsent`` comes from the consent snapshot; a denied snapshot drops the click ID and
        email/phone (the event is still sent with ``"D"`` when another identifier remains).
        """
        self._check_fork()
        event_id = _event_id(event_id)
        tag = tag_id or self.uet_tag_id
        if not tag:
            raise ConfigError("UET_TAG_ID is required to record UET events", setting="UET_TAG_ID")
        snapshot = self._consent(consent)
        msclkid = _click_id(click)
        has_hashes = any(v is not None for v in (email, phone, hashed_email, hashed_phone))
        dropped = _denied_drop(snapshot, msclkid=msclkid, identifiers=has_hashes)
        user: dict[str, Any] = {
            "anonymous_id": anonymous_id,
            "external_id": external_id,
            "client_ip_address": client_ip_address,
            "client_user_agent": client_user_agent,
            "default_region": self.default_region,
        }
        if snapshot.granted:
            user.update(msclkid=msclkid, email=email, phone=phone, em=hashed_email, ph=hashed_phone)
        has_match_key = any(user.get(k) is not None for k in _UET_MATCH_KEYS)
        if snapshot.granted and not has_match_key:
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
        now = self.clock()
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
            consent=snapshot,
            validate_times=False,
        )
        event.check_window(now)
        wire = event.to_wire()
        if not has_match_key:
            wire["userData"] = {k: v for k, v in wire["userData"].items() if k != "externalId"}
        row = NewRow(
            kind="uet",
            account=str(tag),
            event_id=event_id,
            idempotency_key=_digest("uet", str(tag), wire["eventId"]),
            payload=wire,
            conversion_name=event_name,
            consent=_snapshot(snapshot, dropped),
            expires_at=event.event_time + UET_MAX_AGE,
            **_suppression(snapshot, has_match_key=has_match_key),
        )
        return self._enqueue(row, connection)

    def _enqueue(self, row: NewRow, connection: Any) -> EventStatus:
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
            worker = self._worker
            if worker is not None:
                worker.wake()
        return self._status_of(result.row, created=True)

    # -- checks -----------------------------------------------------------------------------------
    def _check_goal(self, name: object) -> None:
        if not isinstance(name, str):
            raise ValidationError("conversion_name", "must be a string")
        if self.goals and name not in self.goals:
            self.metrics_registry.add("rejected_at_record", reason="unknown_goal")
            raise UnknownGoal(len(name), self.goals)

    def _consent(self, consent: Consent | None) -> Consent:
        if consent is None:
            # No snapshot from the app: the site's configured default decides (``granted`` unless
            # the site runs opt-in, where the app must pass the visitor's decision).
            return Consent(self.settings.consent_default, "default")
        if not isinstance(consent, Consent):
            raise ValidationError("consent", "must be a Consent value (for example middleware.get_consent(environ))")
        return consent

    # -- delivery ---------------------------------------------------------------------------------
    def flush(
        self, timeout: float | None = 30.0, *, on_step: Callable[[DispatchReport], None] | None = None
    ) -> DispatchReport:
        """Deliver everything that is due now, in this thread; returns what happened.

        Rows waiting for a later retry stay pending (see ``report.remaining``).  ``timeout`` is
        measured with the tracker's clock.
        """
        self._check_fork()
        report = self.dispatcher.drain(timeout=timeout, on_step=on_step)
        self.dispatcher.maintain(retention=self.retention)
        return report

    def start(self) -> None:
        """Start the background delivery thread in this process (idempotent, fork-aware)."""
        self._check_fork()
        with self._lock:
            if not self._started and not self._atexit_registered:
                # At interpreter exit, finish the request in flight and release the rest instead of
                # leaving leases to expire (shutdown never raises).
                atexit.register(self.shutdown, 5.0)
                self._atexit_registered = True
            self._started = True
            self._start_worker()

    def _start_worker(self) -> None:
        if self._worker is not None and self._worker.alive:
            return
        self._worker = BackgroundWorker(
            self.dispatcher, poll_interval=self.poll_interval, on_error=self.on_error, retention=self.retention
        )
        self._worker.start()

    def shutdown(self, timeout: float | None = 10.0) -> bool:
        """Stop the background thread: it finishes the request in flight, records the outcome and
        releases rows it had not sent yet.  Returns True when the thread has ended."""
        with self._lock:
            self._started = False
            worker, self._worker = self._worker, None
        if worker is None:
            return True
        try:
            return worker.stop(timeout)
        except Exception:  # never raise into the caller (often an atexit hook)
            logger.exception("error while stopping the dispatch thread")
            return False

    def run_worker(self) -> DispatchReport:
        """Run the delivery loop in this thread until SIGTERM/SIGINT (``msclkid worker``)."""
        worker = BackgroundWorker(
            self.dispatcher, poll_interval=self.poll_interval, on_error=self.on_error, retention=self.retention
        )
        return run_until_signalled(worker)

    def close(self) -> None:
        """Stop the thread and close connections and HTTP sessions this tracker opened."""
        self.shutdown()
        for client in (self.campaign, self.uet):
            if client is not None and client not in (self._microsoft_arg, self._uet_arg):
                client.close()
                provider = getattr(client, "token_provider", None)
                if provider is not None and hasattr(provider, "close"):
                    provider.close()
        if self._atexit_registered:
            atexit.unregister(self.shutdown)
            self._atexit_registered = False
        if self._owns_store:
            self.store.close()
        for name in _LOGGERS:
            logging.getLogger(name).removeFilter(self.redactor)

    # -- inspection -------------------------------------------------------------------------------
    def status(self, event_id: str) -> EventStatus:
        """The delivery status of an event (raises :class:`~msclkid_middleware.errors.UnknownEvent`)."""
        rows = self.store.find(event_id)
        if not rows:
            raise UnknownEvent(event_id)
        primary = next((r for r in rows if r.kind in ("offline", "uet")), rows[0])
        return self._status_of(primary, rows=rows)

    def _status_of(self, row: OutboxRow, *, created: bool = True, rows: list[OutboxRow] | None = None) -> EventStatus:
        adjustments: tuple[EventStatus, ...] = ()
        # A row this call just created cannot have adjustments yet: skip the lookup on the hot path.
        if row.kind in ("offline", "uet") and not (created and rows is None):
            siblings = rows if rows is not None else self.store.find(row.event_id)
            adjustments = tuple(
                EventStatus.from_row(r) for r in siblings if r.kind == "offline_adjustment" and r.depends_on == row.id
            )
        return EventStatus.from_row(row, adjustments=adjustments, created=created)

    def metrics(self) -> dict[str, int]:
        """Counters per outcome and reason (``delivered``, ``rejected.5604 ...``, ``suppressed.consent_denied``,
        ``store_errors.storage_full`` ...) for this process, plus the store's own counters."""
        counts = self.metrics_registry.snapshot()
        for name, value in self.store.metrics().items():
            counts[f"store.{name}"] = value
        return counts

    def retry_dead(self, *, include_rejected: bool = False, event_id: str | None = None) -> int:
        """Give dead (and optionally rejected) events another try; returns how many were requeued."""
        return self.store.retry_dead(now=self.clock(), include_rejected=include_rejected, event_id=event_id)

    def resume(self) -> int:
        """Resume every paused row now (after fixing credentials); returns how many."""
        return self.store.resume(now=self.clock())


# -- helpers ---------------------------------------------------------------------------------------
def _event_id(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("event_id", "must be a non-empty string (for example your order ID)")
    if len(value) > _MAX_EVENT_ID:
        raise ValidationError("event_id", f"must be at most {_MAX_EVENT_ID} characters")
    return value


def _click_id(click: object) -> str | None:
    if click is None:
        return None
    if isinstance(click, Click):
        return click.msclkid
    if isinstance(click, str):
        try:
            return validate_click_id(click)
        except ValidationError as exc:
            raise ValidationError("click", exc.reason) from None
    raise ValidationError("click", "must be a Click, a click ID string or None")


def _denied_drop(consent: Consent, *, msclkid: str | None, identifiers: bool) -> tuple[str, ...]:
    if consent.granted:
        return ()
    dropped = []
    if msclkid is not None:
        dropped.append("msclkid")
    if identifiers:
        dropped.append("identifiers")
    return tuple(dropped)


def _snapshot(consent: Consent, dropped: tuple[str, ...], *, click: object = None) -> dict[str, Any]:
    snap: dict[str, Any] = {"state": consent.state, "basis": consent.basis}
    if isinstance(click, Click):
        # Provenance of what was captured under this consent; the report uses the click time to warn about
        # conversions uploaded less than an hour after their click (Microsoft advises waiting an hour).
        snap["click_captured_at"] = format_time(click.captured_at)
    if dropped:
        snap["dropped"] = list(dropped)
        snap["reason"] = f"consent denied ({consent.basis})"
    return snap


def _suppression(consent: Consent, *, has_match_key: bool) -> dict[str, Any]:
    if has_match_key:
        return {}
    state: Literal["suppressed"] = "suppressed"
    if not consent.granted:
        return {
            "state": state,
            "error_code": "consent_denied",
            "error_message": f"consent denied ({consent.basis}): no click ID or identifier may be sent",
        }
    return {"state": state, "error_code": "no_identifier", "error_message": "nothing to match the event on"}
