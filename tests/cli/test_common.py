"""What every command shares (cli/common.py): here, the warning about store files open to group or others."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from msclkid_middleware.cli import cli
from msclkid_middleware.outbox.sqlite import SqliteOutbox


def run_status(store: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["status", "--store", f"sqlite:///{store}"], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_an_open_store_is_warned_about_with_the_fix(tmp_path: Path) -> None:
    store = tmp_path / "outbox.sqlite3"
    SqliteOutbox(store).close()
    store.chmod(0o644)
    code, out, err = run_status(store)
    assert code == 0
    assert f"warning: {store} is open to group or others (mode 644)" in err
    assert f"chmod 600 {store}" in err
    assert "warning" not in out  # stdout stays the command's own output (scripts parse it)


def test_a_private_store_is_not_warned_about(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = tmp_path / "outbox.sqlite3"
        code, _, err = run_status(store)  # created by the command itself: 0600
    finally:
        os.umask(old)
    assert code == 0
    assert "warning" not in err
    assert store.stat().st_mode & 0o777 == 0o600
