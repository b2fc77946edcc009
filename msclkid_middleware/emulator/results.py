"""Result files behind ``GetOfflineConversionReports``' ``FileUrl``: one per account and upload day (issue 20).

Microsoft documents the *records* of the offline conversion report (the pilot elements of its ``DailySummary``
page: ``RecordId, ChannelName, IdIdentifier, MSClickId, ConversionName, TimeZone, ConversionTime,
ConversionOrAdjustmentValue, ConversionOrAdjustmentCurrency, HashedEmailAddress, HashedPhoneNumber,
AdjustmentType, Status``) but not the container: the emulator serves a UTF-8 CSV with exactly those columns, one
row per offline conversion or adjustment it received that day (docs/emulator.md, "Where Microsoft is silent").

The link is signed and expires like a storage download link: ``/_results/<account>/<day>.csv?se=<unix expiry>
&sig=<HMAC>``; after ``FileUrlExpiryTimeUtc`` (or with a wrong signature) it answers 403, as blob storage does.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from msclkid_middleware.emulator.state import ReceivedItem
from msclkid_middleware.emulator.world import World

__all__ = ["RESULT_COLUMNS", "file_link", "result_rows", "serve_file"]

# Microsoft's column list again on purpose (also in microsoft/result_files.py): the emulator must not share code
# with the client it checks, or a wrong column would pass both.
RESULT_COLUMNS = (
    "RecordId",
    "ChannelName",
    "IdIdentifier",
    "MSClickId",
    "ConversionName",
    "TimeZone",
    "ConversionTime",
    "ConversionOrAdjustmentValue",
    "ConversionOrAdjustmentCurrency",
    "HashedEmailAddress",
    "HashedPhoneNumber",
    "AdjustmentType",
    "Status",
)
#: Where the documented ``Status`` name differs from the Apply call's ``ErrorCode`` for the same failure.
_STATUS_BY_CODE = {
    5601: "OfflineConversionBatchSizeExceedsLimit",
    5603: "OfflineConversionMSClickIdNullOrEmpty",
    5604: "OfflineConversionMSClickIdInvalid",
    5615: "OfflineConversionGoalTooRecent",
    8004: "ConversionEmailAddressIsNotHashed",
}


def _signature(world: World, account: str, day: str, expires: int) -> str:
    message = f"{account}|{day}|{expires}".encode()
    return hmac.new(world.file_secret, message, hashlib.sha256).hexdigest()


def file_link(world: World, base_url: str, account: str, day: str, expires: datetime) -> str:
    """The signed ``FileUrl`` of ``account``'s results of upload day ``day`` (``YYYY-MM-DD``)."""
    stamp = int(expires.timestamp())
    return (
        f"{base_url.rstrip('/')}/_results/{account}/{day}.csv?se={stamp}&sig={_signature(world, account, day, stamp)}"
    )


def _status(item: ReceivedItem) -> str:
    if item.outcome != "rejected":
        # Duplicates were accepted by the upload too; Microsoft then counts only the first.
        return "Success"
    code = item.code if isinstance(item.code, int) else None
    return _STATUS_BY_CODE.get(code or 0) or item.error_code or "OfflineConversionsApplyFailed"


def _value(payload: dict[str, Any], *names: str) -> str:
    for name in names:
        value = payload.get(name)
        if value is not None:
            return str(value)
    return ""


def result_rows(world: World, account: str, day: str) -> list[list[str]]:
    """One row per offline conversion or adjustment ``account`` uploaded on ``day`` (UTC)."""
    rows = []
    for item in world.received(account=account):
        if item.kind not in ("offline", "offline_adjustments") or item.received_at.date().isoformat() != day:
            continue
        payload = item.payload if isinstance(item.payload, dict) else {}
        adjustment = _value(payload, "AdjustmentType").upper() if item.kind == "offline_adjustments" else ""
        rows.append(
            [
                str(item.seq),
                "SOAP",  # Microsoft's channel names are WebUI, SOAP and Bulk: the API is "SOAP" there.
                item.tracking_id,
                _value(payload, "MicrosoftClickId"),
                _value(payload, "ConversionName"),
                "+0000",
                _value(payload, "ConversionTime"),
                _value(payload, "AdjustmentValue", "ConversionValue"),
                _value(payload, "AdjustmentCurrencyCode", "ConversionCurrencyCode"),
                _value(payload, "HashedEmailAddress"),
                _value(payload, "HashedPhoneNumber"),
                adjustment,
                _status(item),
            ]
        )
    return rows


def _denied(reason: str) -> Response:
    body = f"<?xml version='1.0' encoding='utf-8'?><Error><Code>AuthenticationFailed</Code><Message>{reason}</Message>"
    body += "</Error>"
    return Response(body, status=403, content_type="application/xml")


def serve_file(world: World, request: Request, account: str, day: str) -> Response:
    """``GET /_results/<account>/<day>.csv?se=...&sig=...``: the CSV, or 403 when unsigned or expired."""
    try:
        expires = int(request.args.get("se", ""))
    except ValueError:
        return _denied("Signed expiry time is missing.")
    expected = _signature(world, account, day, expires)
    if not hmac.compare_digest(expected, request.args.get("sig", "")):
        return _denied("Signature did not match.")
    if world.clock() >= datetime.fromtimestamp(expires, UTC):
        return _denied("Signed expiry time has passed.")
    with world.lock:
        rows = result_rows(world, account, day)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(RESULT_COLUMNS)
    writer.writerows(rows)
    response = Response(out.getvalue().encode("utf-8"), status=200, content_type="text/csv; charset=utf-8")
    response.headers["Content-Disposition"] = f'attachment; filename="offline-conversions-{account}-{day}.csv"'
    return response
