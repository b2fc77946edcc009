"""Helpers shared by the CSV tests of ``ops/`` and ``cli/``."""

from __future__ import annotations

import csv
from pathlib import Path


def crm_file(path: Path, rows: list[list[str]], header: list[str] | None = None) -> Path:
    """A CRM export at ``path``: the header (default: the usual column names) and ``rows``."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            header or ["order_id", "goal", "converted_at", "amount", "currency", "msclkid", "email", "phone"]
        )
        writer.writerows(rows)
    return path
