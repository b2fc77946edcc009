"""UET Conversions API (CAPI) client: ``POST {api_url}/v1/{tagId}/events``, one outcome per event.

Microsoft's answer names at most the first 10 problems ("only the first 10 errors and warnings are
shown"), so one response rarely explains a batch of 1,000.  :meth:`UetClient.send_events` therefore loops:
after a 400 it records the events the answer names as rejected and sends the rest again, until every event
has its own outcome; when a 400 names no event (or only warnings), it bisects the group.

``continueOnValidationError``: we send ``false`` by default.  With ``true`` Microsoft accepts the valid
events of a batch in the same round trip (fewer requests when a batch has a few bad events), but when more
than 10 problems exist it silently skips events it does not name, and the only way to find them is to send
events that were already accepted again; that relies on CAPI's ``eventId`` deduplication, whose window
Microsoft does not document.  With ``false`` nothing is accepted until a request is entirely valid, so an
event is never sent again after it was accepted.  Pass ``continue_on_validation_error=True`` to trade that
guarantee for fewer round trips; the loop resolves every event either way.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import requests

from msclkid_middleware.config import DEFAULT_UET_API_URL
from msclkid_middleware.errors import ApiFault, AuthenticationError, ConfigError, TransientError
from msclkid_middleware.microsoft.campaign import Wire, WireItem, to_wire
from msclkid_middleware.microsoft.http import DEFAULT_TIMEOUT, SessionClient, Timeout, json_body, retry_after
from msclkid_middleware.microsoft.limits import MAX_BATCH
from msclkid_middleware.microsoft.results import UetEventResult, UetIssue
from msclkid_middleware.microsoft.wirejson import WireJson, json_object

if TYPE_CHECKING:
    from msclkid_middleware.config import Settings

__all__ = ["DATA_PROVIDER", "UetClient"]

log = logging.getLogger("msclkid_middleware.microsoft.uet")

DATA_PROVIDER = "msclkid-middleware"
_PROPERTY_PREFIX = re.compile(r"^data\[\d+\]\.?")
_PROPERTY_INDEX = re.compile(r"^data\[(\d{1,4})\]")


@dataclass
class _State:
    """What we know about one event while its batch is being resolved."""

    warnings: list[UetIssue] = field(default_factory=list)
    result: UetEventResult | None = None

    def warn(self, issue: UetIssue) -> None:
        if all((w.error_code, w.property_name) != (issue.error_code, issue.property_name) for w in self.warnings):
            self.warnings.append(issue)


class UetClient(SessionClient):
    """UET CAPI client.  ``api_token`` is one token, or a mapping of tag ID -> token (tokens are per tag)."""

    def __init__(
        self,
        *,
        api_url: str = DEFAULT_UET_API_URL,
        api_token: str | Mapping[str, str],
        data_provider: str = DATA_PROVIDER,
        continue_on_validation_error: bool = False,
        timeout: Timeout = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
        batch_size: int = MAX_BATCH,
    ) -> None:
        if not api_token:
            raise ConfigError("UET_API_TOKEN is required", setting="UET_API_TOKEN")
        if not 1 <= batch_size <= MAX_BATCH:
            raise ConfigError(f"batch_size must be between 1 and {MAX_BATCH}")
        super().__init__(timeout=timeout, session=session)
        self.api_url = api_url.rstrip("/")
        self._tokens: str | dict[str, str] = api_token if isinstance(api_token, str) else dict(api_token)
        self.data_provider = data_provider
        self.continue_on_validation_error = continue_on_validation_error
        self.batch_size = batch_size

    @classmethod
    def from_settings(cls, settings: Settings, *, session: requests.Session | None = None) -> UetClient:
        """A client for ``settings`` (``UET_API_URL``, ``UET_TAG_ID``, ``UET_API_TOKEN``)."""
        if not settings.uet_configured or not settings.uet_api_token:
            raise ConfigError("UET CAPI is not configured: set UET_TAG_ID and UET_API_TOKEN", setting="UET_API_TOKEN")
        return cls(api_url=settings.uet_api_url, api_token=settings.uet_api_token, session=session)

    def __repr__(self) -> str:
        return f"UetClient(api_url={self.api_url!r}, data_provider={self.data_provider!r})"

    def _token(self, tag_id: str) -> str:
        if isinstance(self._tokens, str):
            return self._tokens
        token = self._tokens.get(tag_id)
        if not token:
            raise ConfigError(f"no UET API token configured for tag {tag_id}", setting="UET_API_TOKEN")
        return token

    # -- public -----------------------------------------------------------------------------------------------

    def send_events(self, tag_id: str | int, events: Iterable[WireItem]) -> list[UetEventResult]:
        """Send ``events`` (models with ``to_wire()`` or wire dicts); one result per event, in input order.

        Raises :class:`AuthenticationError` on 401 (the tag's token is wrong: stop for this tag),
        :class:`TransientError` on network errors, timeouts, 429 and 5xx (resend later: events carry stable
        ``eventId`` values), :class:`ApiFault` on other unexpected answers.
        """
        tag = str(tag_id).strip()
        if not tag:
            raise ConfigError("UET_TAG_ID is required", setting="UET_TAG_ID")
        token = self._token(tag)
        wire = [to_wire(event) for event in events]
        states = [_State() for _ in wire]
        for start in range(0, len(wire), self.batch_size):
            self._resolve(tag, token, wire, list(range(start, min(start + self.batch_size, len(wire)))), states)
        results: list[UetEventResult] = []
        for state in states:
            assert state.result is not None  # noqa: S101 - _resolve decides every event
            results.append(state.result)
        return results

    # -- the 10-detail loop -----------------------------------------------------------------------------------

    def _resolve(self, tag: str, token: str, wire: Sequence[Wire], indexes: list[int], states: list[_State]) -> None:
        groups: deque[tuple[list[int], bool]] = deque([(indexes, self.continue_on_validation_error)])
        budget = 4 * len(indexes) + 8  # each round rejects >= 1 event or halves a group: bounded by ~3n
        while groups:
            budget -= 1
            if budget < 0:
                raise ApiFault("UET CAPI: could not resolve every event's outcome (too many rounds)")
            group, keep_going = groups.popleft()
            status, body, wait, trace = self._post(tag, token, [wire[i] for i in group], keep_going)
            details = _details(body)
            for position, issue in details:
                if issue.is_warning and position is not None and position < len(group):
                    states[group[position]].warn(issue)
            errors = {p: i for p, i in reversed(details) if not i.is_warning and p is not None and p < len(group)}
            if status == 200:
                for position, issue in errors.items():
                    self._reject(states, wire, group[position], issue)
                rest = [index for position, index in enumerate(group) if position not in errors]
                received = body.get("eventsReceived") if isinstance(body, Mapping) else None
                if keep_going and isinstance(received, int) and received < len(rest):
                    # Microsoft skipped events it did not name (more than 10 problems): find them strictly.
                    log.info("UET %s: %d events skipped without details; resolving them", tag, len(rest) - received)
                    groups.append((rest, False))
                    continue
                for index in rest:
                    self._deliver(states, wire, index)
                log.debug("UET %s: %d events delivered, %d rejected (trace %s)", tag, len(rest), len(errors), trace)
                continue
            if status == 401:
                raise AuthenticationError(
                    f"UET CAPI refused the API token for tag {tag}; copy a new token from the UET tag settings",
                    status=status,
                    error_code=_error_code(body) or "Unauthorized",
                )
            if status in (408, 429) or status >= 500:
                raise TransientError(
                    f"UET CAPI unavailable for tag {tag}",
                    status=status,
                    error_code=_error_code(body),
                    retry_after=wait,
                )
            if status != 413 and (status != 400 or not _error(body)):
                # Only Microsoft's own validation answer (or "payload too large") tells us about the events;
                # a proxy's HTML 400 says nothing about them, so bisecting would wrongly reject them all.
                raise ApiFault(f"UET CAPI: unexpected HTTP {status}", status=status, error_code=_error_code(body))
            if errors:
                for position, issue in errors.items():
                    self._reject(states, wire, group[position], issue)
                rest = [index for position, index in enumerate(group) if position not in errors]
                if rest:
                    groups.append((rest, keep_going))
                continue
            # A 400 that names no event (or only warnings, the errors hidden past the first 10): bisect.
            if len(group) == 1:
                issue = _first_issue(details) or UetIssue(_error_code(body), None, _message(body), False)
                self._reject(states, wire, group[0], issue)
                continue
            half = len(group) // 2
            groups.append((group[:half], keep_going))
            groups.append((group[half:], keep_going))

    def _reject(self, states: list[_State], wire: Sequence[Wire], index: int, issue: UetIssue) -> None:
        state = states[index]
        state.result = UetEventResult(
            index=index,
            event_id=_event_id(wire[index]),
            status="rejected",
            warnings=tuple(state.warnings),
            error_code=issue.error_code,
            property_name=issue.property_name,
            message=issue.message,
        )

    def _deliver(self, states: list[_State], wire: Sequence[Wire], index: int) -> None:
        state = states[index]
        state.result = UetEventResult(
            index=index, event_id=_event_id(wire[index]), status="delivered", warnings=tuple(state.warnings)
        )

    def _post(
        self, tag: str, token: str, data: list[Wire], keep_going: bool
    ) -> tuple[int, Any, float | None, str | None]:
        url = f"{self.api_url}/v1/{quote(tag, safe='')}/events"
        fields = {"dataProvider": self.data_provider, "continueOnValidationError": keep_going}
        # Stored events (WireJson) are spliced into the body as they are: no decode, no re-encode.
        payload: dict[str, Any] | str = (
            json_object(fields, "data", data)
            if any(isinstance(event, WireJson) for event in data)
            else {"data": data, **fields}
        )
        # A read timeout after the POST leaves the outcome unknown; resending is safe because CAPI
        # deduplicates by eventId, which the outbox fixes when the event is recorded.
        response = self.post_json(url, payload, token=token, headers={}, what=f"UET CAPI tag {tag}")
        body = json_body(response)
        trace = body.get("traceId") if isinstance(body, Mapping) else None
        return response.status_code, body, retry_after(response), str(trace) if trace else None


def _event_id(event: Wire) -> str | None:
    value = (event.decoded() if isinstance(event, WireJson) else event).get("eventId")
    return str(value) if value else None


def _error(body: Any) -> Mapping[str, Any]:
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        return body["error"]  # type: ignore[no-any-return]
    return {}


def _error_code(body: Any) -> str | None:
    code = _error(body).get("code")
    return str(code) if code else None


def _message(body: Any) -> str | None:
    message = _error(body).get("message")
    return str(message) if message else None


def _details(body: Any) -> list[tuple[int | None, UetIssue]]:
    details = _error(body).get("details")
    found: list[tuple[int | None, UetIssue]] = []
    if not isinstance(details, list):
        return found
    for detail in details:
        if not isinstance(detail, Mapping):
            continue
        index = detail.get("index")
        position = index if isinstance(index, int) and not isinstance(index, bool) and index >= 0 else None
        prop = detail.get("propertyName")
        if position is None and isinstance(prop, str):
            # "data[12].userData.em" names the event as well as the field.
            named = _PROPERTY_INDEX.match(prop)
            position = int(named.group(1)) if named else None
        found.append(
            (
                position,
                UetIssue(
                    error_code=str(detail["errorCode"]) if detail.get("errorCode") else None,
                    # "data[12].userData.em" -> "userData.em": the index is relative to the request we sent.
                    property_name=_PROPERTY_PREFIX.sub("", str(prop)) or None if prop else None,
                    message=str(detail["errorMessage"]) if detail.get("errorMessage") else None,
                    is_warning=detail.get("isWarning") is True,
                ),
            )
        )
    return found


def _first_issue(details: list[tuple[int | None, UetIssue]]) -> UetIssue | None:
    return next((issue for _, issue in details if not issue.is_warning), None)
