"""Campaign Management v13 REST client: the three conversion ``Apply`` operations.

One call in, one :class:`~.results.ItemResult` per input item out (in input order), whatever happens on the
wire: inputs larger than 1,000 items are split into several requests, ``PartialErrors`` are mapped back by
``Index`` (it may be ``[]``, ``null`` or absent), and an ``ApiFaultDetail`` whose ``BatchErrors`` name the
offending items is turned into per-item rejections followed by one resend of the remaining items (the
fault means *nothing* was applied, so the innocent items must go again; Microsoft ignores duplicates, so a
resend is always safe).  Whole-request failures raise the typed errors of ``errors.py``.

The client never sleeps and never retries on its own, with one exception that Microsoft documents: an
expired access token (code 109, or HTTP 401) is refreshed once and the request retried once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import requests

from msclkid_middleware.config import DEFAULT_API_URL
from msclkid_middleware.errors import AuthenticationError, ConfigError, TransientError
from msclkid_middleware.microsoft.faults import as_int, batch_errors, error_from_fault, unwrap_fault
from msclkid_middleware.microsoft.http import (
    DEFAULT_TIMEOUT,
    ServerClock,
    SessionClient,
    Timeout,
    json_body,
    retry_after,
)
from msclkid_middleware.microsoft.limits import MAX_BATCH
from msclkid_middleware.microsoft.results import ApplyResult, ItemResult
from msclkid_middleware.microsoft.wirejson import WireJson, json_object

if TYPE_CHECKING:
    from msclkid_middleware.config import Settings
    from msclkid_middleware.tokens import TokenStore

__all__ = ["AccessTokenProvider", "Answer", "CampaignManagementClient", "HasWire", "WireItem", "to_wire"]

log = logging.getLogger("msclkid_middleware.microsoft.campaign")

_BASE_PATH = "/CampaignManagement/v13"


@runtime_checkable
class HasWire(Protocol):
    def to_wire(self) -> dict[str, Any]: ...


#: A model object (``OfflineConversion`` ...), its wire dict, or its stored JSON (:class:`WireJson`).
WireItem = HasWire | Mapping[str, Any] | WireJson
#: An item as it goes into a request body.
Wire = dict[str, Any] | WireJson
#: One Campaign Management answer: HTTP status, parsed body, TrackingId, Retry-After seconds.
Answer = tuple[int, Any, str | None, float | None]


class AccessTokenProvider(Protocol):
    """What the client needs from OAuth (``RefreshTokenProvider`` implements it)."""

    def access_token(self) -> str: ...

    def force_refresh(self) -> str: ...


def to_wire(item: WireItem) -> Wire:
    """The wire dict of a model or a mapping, or stored JSON as it is (the UET client shares this).

    Plain checks, cheapest first: an ``isinstance`` against the runtime-checkable :class:`HasWire` costs
    microseconds per item, on every item of every batch.
    """
    if isinstance(item, WireJson):
        return item
    if type(item) is dict:
        return dict(item)
    convert = getattr(item, "to_wire", None)
    if callable(convert):
        return convert()  # type: ignore[no-any-return]
    if isinstance(item, Mapping):
        return dict(item)
    raise TypeError(f"expected a model with to_wire() or a mapping, not {type(item).__name__}")


class CampaignManagementClient(SessionClient):
    """Campaign Management REST client for one customer account.

    A client holds one ``requests.Session`` (connection pooling); use one client per thread, as with any
    ``requests.Session``.  Inputs larger than 1,000 items are sent as several requests; if a later request
    fails as a whole, the exception is raised and the earlier requests' results are not returned, so the
    caller resends everything, which is safe because Microsoft ignores duplicates.  The dispatcher sends
    at most 1,000 items per call, which makes one call one request.

    >>> client = CampaignManagementClient(api_url=..., developer_token=..., customer_id="1000001",
    ...     account_id="2000001", token_provider=RefreshTokenProvider(...))      # doctest: +SKIP
    >>> result = client.apply_offline_conversions([conversion.to_wire()])       # doctest: +SKIP
    >>> [r.accepted for r in result], result.tracking_ids                        # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        api_url: str = DEFAULT_API_URL,
        developer_token: str,
        customer_id: str | int,
        account_id: str | int,
        token_provider: AccessTokenProvider,
        timeout: Timeout = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
        batch_size: int = MAX_BATCH,
    ) -> None:
        if not developer_token:
            raise ConfigError("MSADS_DEVELOPER_TOKEN is required", setting="MSADS_DEVELOPER_TOKEN")
        # Checked before str(): str(None) is "None", which must never reach Microsoft as a header value.
        # Microsoft requires both headers for the conversion operations, so there is nothing to omit.
        for value, setting in ((customer_id, "MSADS_CUSTOMER_ID"), (account_id, "MSADS_ACCOUNT_ID")):
            if not _is_id(value):
                raise ConfigError(f"{setting} is required: the ID shown in Microsoft Advertising", setting=setting)
        if not 1 <= batch_size <= MAX_BATCH:
            raise ConfigError(f"batch_size must be between 1 and {MAX_BATCH}")
        super().__init__(timeout=timeout, session=session)
        self.api_url = api_url.rstrip("/")
        self._developer_token = developer_token
        self.customer_id = str(customer_id).strip()
        self.account_id = str(account_id).strip()
        self.token_provider = token_provider
        self.batch_size = batch_size
        #: Microsoft's ``Date`` header of the last answer beside our clock (``msclkid doctor``'s skew check).
        self.last_server_clock: ServerClock | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        token_provider: AccessTokenProvider | None = None,
        token_store: TokenStore | None = None,
        session: requests.Session | None = None,
    ) -> CampaignManagementClient:
        """A client for ``settings`` (``MSADS_*``); builds a :class:`RefreshTokenProvider` unless given one.

        With a ``token_provider`` (its refresh token may live in a store, from ``msclkid auth``), the settings
        need no ``MSADS_REFRESH_TOKEN``; the constructor still checks the developer token and account IDs.
        """
        if token_provider is None and not settings.microsoft_configured:
            raise ConfigError(
                "Microsoft Advertising is not configured: set MSADS_DEVELOPER_TOKEN, MSADS_CLIENT_ID, "
                "MSADS_REFRESH_TOKEN, MSADS_CUSTOMER_ID and MSADS_ACCOUNT_ID",
                setting="MSADS_DEVELOPER_TOKEN",
            )
        if token_provider is None:
            from msclkid_middleware.microsoft.oauth import RefreshTokenProvider

            token_provider = RefreshTokenProvider.from_settings(settings, token_store=token_store, session=session)
        return cls(
            api_url=settings.effective_api_url,
            developer_token=settings.developer_token or "",
            customer_id=settings.customer_id or "",
            account_id=settings.account_id or "",
            token_provider=token_provider,
            session=session,
        )

    def __repr__(self) -> str:
        return f"CampaignManagementClient(api_url={self.api_url!r}, account_id={self.account_id!r})"

    # -- operations -------------------------------------------------------------------------------------------

    def apply_offline_conversions(self, items: Iterable[WireItem]) -> ApplyResult:
        return self._apply("OfflineConversions/Apply", "OfflineConversions", items)

    def apply_offline_conversion_adjustments(self, items: Iterable[WireItem]) -> ApplyResult:
        return self._apply("OfflineConversionAdjustments/Apply", "OfflineConversionAdjustments", items)

    def apply_online_conversion_adjustments(self, items: Iterable[WireItem]) -> ApplyResult:
        return self._apply("OnlineConversionAdjustments/Apply", "OnlineConversionAdjustments", items)

    # -- internals --------------------------------------------------------------------------------------------

    def _apply(self, operation: str, wrapper: str, items: Iterable[WireItem]) -> ApplyResult:
        wire = [to_wire(item) for item in items]
        if not wire:
            return ApplyResult((), ())
        results: list[ItemResult | None] = [None] * len(wire)
        tracking_ids: list[str] = []
        for start in range(0, len(wire), self.batch_size):
            chunk = list(range(start, min(start + self.batch_size, len(wire))))
            self._apply_chunk(operation, wrapper, wire, chunk, results, tracking_ids)
        done = [r for r in results if r is not None]
        assert len(done) == len(wire)  # noqa: S101 - every index is decided before _apply_chunk returns
        return ApplyResult(tuple(done), tuple(tracking_ids))

    def _apply_chunk(
        self,
        operation: str,
        wrapper: str,
        wire: Sequence[Wire],
        indexes: list[int],
        results: list[ItemResult | None],
        tracking_ids: list[str],
    ) -> None:
        pending = indexes
        while pending:
            items = [wire[i] for i in pending]
            # Stored items (WireJson) are spliced into the body as they are: no decode, no re-encode.
            payload = json_object({}, wrapper, items) if _has_stored(items) else {wrapper: items}
            status, body, tracking_id, wait = self.post_operation(operation, payload)
            if tracking_id:
                tracking_ids.append(tracking_id)
            if status == 200 and isinstance(body, Mapping) and unwrap_fault(body) is None:
                errors = body.get("PartialErrors")
                by_index = _index_errors(errors if isinstance(errors, list) else [], len(pending))
                for position, index in enumerate(pending):
                    results[index] = _item_result(index, by_index.get(position), tracking_id)
                log.debug(
                    "%s: %d items, %d rejected, TrackingId %s", operation, len(pending), len(by_index), tracking_id
                )
                return
            fault = unwrap_fault(body)
            named = _index_errors(batch_errors(fault), len(pending))
            error = error_from_fault(status, body, tracking_id=tracking_id, retry_after=wait, what=operation)
            operation_level = fault is not None and any(fault.get(key) for key in ("Errors", "OperationErrors"))
            if not named or (operation_level and isinstance(error, TransientError | AuthenticationError)):
                raise error
            # ApiFaultDetail naming items: those get their own outcome (a transient item code such as 5612 is
            # then the retry policy's business), the operation applied nothing, so the rest is sent again.
            for position, batch_error in named.items():
                index = pending[position]
                results[index] = _item_result(index, batch_error, tracking_id)
            log.debug("%s: fault names %d of %d items; resending the rest", operation, len(named), len(pending))
            pending = [index for position, index in enumerate(pending) if position not in named]

    def post_operation(self, operation: str, payload: dict[str, Any] | str, *, method: str = "POST") -> Answer:
        """Send one Campaign Management operation (``"OfflineConversions/Apply"`` ...) with this account's headers.

        An expired access token (109/105 or a bare 401) is refreshed once and the request sent again; the
        answer is returned as it is, for the caller to interpret (the goals and account clients share this path).
        ``method`` is ``PUT`` for the REST updates (``UpdateConversionGoals``).
        """
        url = f"{self.api_url}{_BASE_PATH}/{operation}"
        headers = {
            "DeveloperToken": self._developer_token,
            "CustomerId": self.customer_id,
            "CustomerAccountId": self.account_id,
        }
        refreshed = False
        token = self.token_provider.access_token()
        while True:
            response = self.post_json(url, payload, token=token, headers=headers, what=operation, method=method)
            self.last_server_clock = ServerClock.from_response(response, datetime.now(UTC)) or self.last_server_clock
            body = json_body(response)
            tracking_id = response.headers.get("TrackingId") or _body_tracking_id(body)
            if not refreshed and _token_expired(response.status_code, body):
                log.info("%s: access token refused (TrackingId %s); refreshing once", operation, tracking_id)
                token = self.token_provider.force_refresh()
                refreshed = True
                continue
            return response.status_code, body, tracking_id, retry_after(response)


def _is_id(value: object) -> bool:
    """A customer or account ID given at all: not ``None``/a bool, not blank, not a stringified ``None``."""
    if value is None or isinstance(value, bool) or not isinstance(value, str | int):
        return False
    text = str(value).strip()
    return bool(text) and text.lower() not in ("none", "null")


def _has_stored(items: Sequence[Wire]) -> bool:
    return any(isinstance(item, WireJson) for item in items)


def _body_tracking_id(body: Any) -> str | None:
    fault = unwrap_fault(body)
    value = fault.get("TrackingId") if fault is not None else None
    return str(value) if value else None


def _token_expired(status: int, body: Any) -> bool:
    """Is a refreshed access token likely to succeed?

    Code 109 AuthenticationTokenExpired, code 105 InvalidCredentials (an access token Microsoft no longer
    knows; the reference allows "at most one token refresh, then fail": a wrong developer token also gives
    105 and fails again after the refresh), or a bare HTTP 401 without a fault code.
    """
    fault = unwrap_fault(body)
    if fault is not None:
        codes = {
            str(error.get("Code"))
            for key in ("Errors", "OperationErrors")
            for error in (fault.get(key) or [])
            if isinstance(error, Mapping) and error.get("Code") is not None
        }
        if codes & {"109", "105"}:
            return True
        return status == 401 and not codes
    return status == 401


def _index_errors(errors: Iterable[Any], size: int) -> dict[int, Mapping[str, Any]]:
    """``Index`` -> the first error naming that item (indexes outside the batch are ignored, and logged)."""
    by_index: dict[int, Mapping[str, Any]] = {}
    for error in errors:
        if not isinstance(error, Mapping):
            continue
        # Index is an int32; a digit string is read too, because an unreadable Index would make a rejected
        # item count as accepted.
        index = as_int(error.get("Index"))
        if index is not None and 0 <= index < size:
            by_index.setdefault(index, error)
        else:
            log.warning("ignoring a batch error without a valid Index (code %s)", error.get("Code"))
    return by_index


def _item_result(index: int, error: Mapping[str, Any] | None, tracking_id: str | None) -> ItemResult:
    if error is None:
        return ItemResult(index=index, accepted=True, tracking_id=tracking_id)
    return ItemResult(
        index=index,
        accepted=False,
        code=as_int(error.get("Code")),
        error_code=str(error["ErrorCode"]) if error.get("ErrorCode") else None,
        message=str(error["Message"]) if error.get("Message") else None,
        field_path=str(error["FieldPath"]) if error.get("FieldPath") else None,
        details=str(error["Details"]) if error.get("Details") else None,
        tracking_id=tracking_id,
    )
