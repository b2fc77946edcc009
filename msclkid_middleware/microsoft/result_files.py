"""Microsoft's offline conversion result files: download before ``FileUrlExpiryTimeUtc``, keep, parse (issue 20).

``GetOfflineConversionReports`` gives, per upload day, a ``FileUrl`` (a signed download link) and its
``FileUrlExpiryTimeUtc``.  Microsoft documents the *records* of that report (the pilot elements of its
``DailySummary`` page: ``RecordId, ChannelName, IdIdentifier, MSClickId, ConversionName, TimeZone, ConversionTime,
ConversionOrAdjustmentValue, ConversionOrAdjustmentCurrency, HashedEmailAddress, HashedPhoneNumber, AdjustmentType,
Status``) but not the file's container format.  So every file is kept byte for byte (mode 0600: it holds click
IDs and hashed identifiers), then read as CSV (or a JSON list) with those column names; a file that does not have
them is reported as "kept, format not recognised" instead of being guessed at.

The link is a bearer credential: it is never logged or printed, and no ``Authorization`` header is sent with it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import requests

from msclkid_middleware.errors import TransientError
from msclkid_middleware.microsoft.http import DEFAULT_TIMEOUT, SessionClient, Timeout, network_error

__all__ = [
    "MAX_FILE_BYTES",
    "RESULT_COLUMNS",
    "ResultFile",
    "ResultFileDownloader",
    "ResultRecord",
    "parse_result_file",
    "parse_utc",
]

#: Microsoft's documented record elements, in its order.
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
#: The DailySummary page's anchor spells one column ``...ValueCurrency``; accept both spellings.
_ALIASES = {"conversionoradjustmentvaluecurrency": "ConversionOrAdjustmentCurrency"}
#: A day's file of a 100,000-row upload is a few tens of MB; anything far larger is not a result file.
MAX_FILE_BYTES = 256 * 1024 * 1024
#: Do not start a download this close to the link's expiry (it could expire mid-transfer).
EXPIRY_MARGIN = timedelta(seconds=30)
_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})")
_TIME_FORMATS = ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S")
DownloadStatus = Literal["downloaded", "expired", "failed", "no_file"]


def parse_utc(value: Any) -> datetime | None:
    """An ``xs:dateTime`` as an aware UTC datetime (no zone: UTC, as Microsoft's ``...Utc`` fields are)."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.utcoffset() is None else parsed.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class ResultRecord:
    """One row of a result file: what Microsoft did with one uploaded conversion or adjustment."""

    status: str
    conversion_name: str | None
    conversion_time: datetime | None
    click_id: str | None = None
    record_id: str | None = None
    channel: str | None = None
    upload_id: str | None = None
    value: str | None = None
    currency: str | None = None
    hashed_email: str | None = field(default=None, repr=False)
    hashed_phone: str | None = field(default=None, repr=False)
    adjustment_type: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status.strip().lower() == "success"


@dataclass(frozen=True, slots=True)
class ResultFile:
    """One day's result file: where it was kept and what it held (``records`` is ``None`` when not parsed)."""

    upload_date: date | None
    status: DownloadStatus
    path: Path | None = None
    size: int = 0
    sha256: str | None = None
    records: tuple[ResultRecord, ...] | None = None
    note: str | None = None


def _time(text: str, zone_text: str) -> datetime | None:
    raw = text.strip()
    if not raw:
        return None
    parsed: datetime | None = None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        for fmt in _TIME_FORMATS:
            try:
                parsed = datetime.strptime(raw, fmt)
                break
            except ValueError:
                continue
    if parsed is None:
        return None
    if parsed.utcoffset() is None:
        match = _OFFSET.fullmatch(zone_text.strip())
        offset = timedelta(hours=int(match.group(2)), minutes=int(match.group(3))) if match else timedelta()
        parsed = parsed.replace(tzinfo=timezone(-offset if match and match.group(1) == "-" else offset))
    return parsed.astimezone(UTC)


def _record(row: Mapping[str, str]) -> ResultRecord:
    def get(name: str) -> str | None:
        value = row.get(name)
        return value.strip() or None if isinstance(value, str) else None

    return ResultRecord(
        status=get("Status") or "",
        conversion_name=get("ConversionName"),
        conversion_time=_time(get("ConversionTime") or "", get("TimeZone") or ""),
        click_id=get("MSClickId"),
        record_id=get("RecordId"),
        channel=get("ChannelName"),
        upload_id=get("IdIdentifier"),
        value=get("ConversionOrAdjustmentValue"),
        currency=get("ConversionOrAdjustmentCurrency"),
        hashed_email=get("HashedEmailAddress"),
        hashed_phone=get("HashedPhoneNumber"),
        adjustment_type=get("AdjustmentType"),
    )


def _canonical(name: str) -> str:
    key = name.strip().lower()
    return _ALIASES.get(key) or next((c for c in RESULT_COLUMNS if c.lower() == key), name.strip())


def _rows(text: str) -> Iterator[dict[str, str]] | None:
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        try:
            data = json.loads(stripped)
        except ValueError:
            return None
        items = data if isinstance(data, list) else data.get("Records") if isinstance(data, dict) else None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            return None
        return ({_canonical(str(k)): "" if v is None else str(v) for k, v in i.items()} for i in items)
    lines = list(csv.reader(io.StringIO(text)))
    for index, header in enumerate(lines[:20]):  # tolerate a short preamble before the header row
        names = [_canonical(h) for h in header]
        if "Status" in names and "ConversionName" in names:
            return (dict(zip(names, cells, strict=False)) for cells in lines[index + 1 :] if any(cells))
    return None


def parse_result_file(data: bytes) -> tuple[ResultRecord, ...] | None:
    """The records of a result file, or ``None`` when it does not carry Microsoft's documented columns."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("utf-16")
        except UnicodeError:
            return None
    rows = _rows(text)
    return None if rows is None else tuple(_record(row) for row in rows)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` readable by its owner only (click IDs and hashed identifiers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)  # an existing file keeps its old mode under O_CREAT


class ResultFileDownloader(SessionClient):
    """Downloads result files into ``directory`` (one file per account and upload day)."""

    def __init__(
        self,
        directory: Path,
        *,
        timeout: Timeout = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
        max_bytes: int = MAX_FILE_BYTES,
    ) -> None:
        super().__init__(timeout=timeout, session=session)
        self.directory = Path(directory)
        self.max_bytes = max_bytes

    def fetch(
        self,
        url: str | None,
        *,
        upload_date: date | None,
        expires_at: datetime | None,
        account: str,
        now: datetime,
    ) -> ResultFile:
        """Download, keep and parse one day's file; never raises for one bad day (the outcome says what happened)."""
        if not url:
            return ResultFile(upload_date, "no_file", note="Microsoft offers no result file for this day")
        if expires_at is not None and now >= expires_at - EXPIRY_MARGIN:
            return ResultFile(upload_date, "expired", note="the link expired (FileUrlExpiryTimeUtc); ask again")
        try:
            data = self._get(url)
        except TransientError as exc:
            return ResultFile(upload_date, "failed", note=str(exc))
        day = upload_date.isoformat() if upload_date else "unknown-day"
        path = self.directory / f"offline-results-{account}-{day}.csv"
        _write_private(path, data)
        records = parse_result_file(data)
        note = None
        if records is None:
            note = "kept unparsed: Microsoft does not document the file format and this file lacks its columns"
        return ResultFile(upload_date, "downloaded", path, len(data), hashlib.sha256(data).hexdigest(), records, note)

    def _get(self, url: str) -> bytes:
        what = "result file download"
        try:
            # The signed link is the credential: no bearer token goes to the storage host.
            with self.session.get(url, stream=True, timeout=self.timeout, allow_redirects=False) as response:
                if response.status_code != 200:
                    raise TransientError(f"{what}: HTTP {response.status_code}", status=response.status_code)
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_content(1 << 16):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise TransientError(f"{what}: larger than {self.max_bytes} bytes; not kept")
                    chunks.append(chunk)
                return b"".join(chunks)
        except requests.RequestException as exc:
            raise network_error(what, exc) from None
