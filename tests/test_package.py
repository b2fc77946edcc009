from __future__ import annotations

import subprocess
import sys

import pytest

import msclkid_middleware
from msclkid_middleware.cli import main


def test_import_has_no_heavy_side_effects() -> None:
    code = (
        "import sys, msclkid_middleware;"
        "bad = [m for m in ('requests', 'sqlite3', 'flask', 'psycopg', 'django') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_unknown_attribute_raises() -> None:
    with pytest.raises(AttributeError, match="DoesNotExist"):
        msclkid_middleware.DoesNotExist  # noqa: B018


def test_cli_help_and_version() -> None:
    assert main(["--help"]) == 0
    assert main(["no-such-command"]) == 2
