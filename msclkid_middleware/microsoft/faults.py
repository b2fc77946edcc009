"""Campaign Management fault bodies -> typed errors.

The REST API answers a failed request with an ``ApplicationFault`` body: ``AdApiFaultDetail`` (``Errors``,
service-level: auth, throttling), ``ApiFaultDetail`` (``OperationErrors`` and ``BatchErrors``), usually
unwrapped but in one Microsoft guide wrapped as ``{"ApplicationFault": {...}}``.  Gateways answer with HTML.
Every shape becomes one of ``TransientError``, ``AuthenticationError`` or ``ApiFault``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from msclkid_middleware.errors import ApiFault, AuthenticationError, MicrosoftError, TransientError
from msclkid_middleware.microsoft.retry import REFRESH_CODES, TRANSIENT_CODES

__all__ = ["AUTH_CODES", "as_int", "batch_errors", "error_from_fault", "unwrap_fault"]

#: Codes meaning "these credentials cannot make this call" (wrong token, user, account, identity).
AUTH_CODES = frozenset({105, 106, 108, 109, *range(120, 126)})


def unwrap_fault(body: Any) -> Mapping[str, Any] | None:
    """The fault object of a response body (accepting the ``ApplicationFault`` wrapper), else ``None``."""
    if not isinstance(body, Mapping):
        return None
    fault: Mapping[str, Any] = body
    inner = fault.get("ApplicationFault")
    if isinstance(inner, Mapping):
        fault = inner
    if any(isinstance(fault.get(key), list) for key in ("Errors", "OperationErrors", "BatchErrors")):
        return fault
    return fault if "Type" in fault and "TrackingId" in fault else None


def as_int(value: Any) -> int | None:
    """An int32 field (``Code``, ``Index``) as an int, also when it arrives as a digit string; else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def batch_errors(fault: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    if fault is None:
        return []
    errors = fault.get("BatchErrors")
    return [e for e in errors if isinstance(e, Mapping)] if isinstance(errors, list) else []


def _first_error(fault: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for key in ("Errors", "OperationErrors", "BatchErrors"):
        errors = fault.get(key)
        if isinstance(errors, list):
            for error in errors:
                if isinstance(error, Mapping):
                    return error
    return None


def error_from_fault(
    status: int,
    body: Any,
    *,
    tracking_id: str | None,
    retry_after: float | None,
    what: str,
) -> MicrosoftError:
    """The typed error for a non-200 answer (or a 200 whose body is not an Apply response)."""
    fault = unwrap_fault(body)
    if fault is None:
        kind = "an HTML/non-JSON" if body is None else "an unrecognised"
        message = f"{what}: {kind} response"
        if status >= 500 or status in (408, 429) or status == 200:
            # A 200 we cannot read leaves the outcome unknown; resending is safe (idempotent payloads).
            return TransientError(message, status=status, tracking_id=tracking_id, retry_after=retry_after)
        if status in (401, 403):
            return AuthenticationError(message, status=status, tracking_id=tracking_id)
        return ApiFault(message, status=status, tracking_id=tracking_id)
    tracking_id = tracking_id or (str(fault["TrackingId"]) if fault.get("TrackingId") else None)
    first = _first_error(fault)
    code = as_int(first.get("Code")) if first else None
    error_code = str(first["ErrorCode"]) if first and first.get("ErrorCode") else None
    text = str(first["Message"]) if first and first.get("Message") else f"{fault.get('Type') or 'fault'}"
    detail = first.get("Detail") or first.get("Details") if first else None
    message = f"{what}: {text}" + (f" ({detail})" if detail else "")
    details: list[Mapping[str, Any]] = []
    for key in ("Errors", "OperationErrors", "BatchErrors"):
        errors = fault.get(key)
        if isinstance(errors, list):
            details.extend(dict(e) for e in errors if isinstance(e, Mapping))
    kwargs: dict[str, Any] = {
        "status": status,
        "code": code,
        "error_code": error_code,
        "tracking_id": tracking_id,
        "details": tuple(details),
    }
    if code in TRANSIENT_CODES or (code is None and (status >= 500 or status == 429)):
        return TransientError(message, retry_after=retry_after, **kwargs)
    if code in AUTH_CODES or code in REFRESH_CODES or (code is None and status in (401, 403)):
        return AuthenticationError(message, **kwargs)
    if code is not None and status >= 500 and code not in range(5600, 5700):
        # An unknown code on a server error: the status says "try again".
        return TransientError(message, retry_after=retry_after, **kwargs)
    return ApiFault(message, retry_after=retry_after, **kwargs)
