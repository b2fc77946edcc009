"""tokens.py's file rules (issue 19 item 6): token files are private, and an open one is said out loud."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from msclkid_middleware.tokens import FileTokenStore, StoredToken, create_private, exposed_files


def test_create_private_makes_a_0600_file_once(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "f"
        assert create_private(path) is True
        assert path.stat().st_mode & 0o777 == 0o600
        path.write_text("kept")
        assert create_private(path) is False
        assert path.read_text() == "kept"  # never truncated
    finally:
        os.umask(old)


@pytest.mark.parametrize(
    ("mode", "exposed"), [(0o600, False), (0o400, False), (0o640, True), (0o604, True), (0o620, True)]
)
def test_exposed_files(tmp_path: Path, mode: int, exposed: bool) -> None:
    path = tmp_path / "f"
    path.write_text("x")
    path.chmod(mode)
    assert exposed_files(path, tmp_path / "missing") == ([(str(path), mode)] if exposed else [])


def test_the_token_file_is_0600_and_an_open_one_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "token.json"
    store = FileTokenStore(path)
    assert store.save(StoredToken(refresh_token="rt-secret-value", issued_at=time.time(), serial=1))
    assert path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="msclkid_middleware.tokens"):
        reopened = FileTokenStore(path)
        assert reopened.load() is not None
        reopened.load()
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [f"token file {path} is open to group or others (mode 644): chmod 600 it"]  # once
    assert "rt-secret-value" not in caplog.text
