"""What every command shares (cli/common.py): read-only commands never create an outbox, ``-v`` names the one used,
and store files open to group or others are warned about."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from msclkid_middleware.cli import cli, main
from msclkid_middleware.outbox import open_store
from msclkid_middleware.outbox.sqlite import SqliteOutbox
from tests.csv_helpers import crm_file

READ_ONLY = [["status"], ["report"], ["reconcile"], ["export-csv"]]


@pytest.fixture
def nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No MSCLKID_STORE_URL, and a working directory without an outbox."""
    monkeypatch.delenv("MSCLKID_STORE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("args", READ_ONLY, ids=lambda a: a[0])
def test_read_only_commands_say_where_they_looked_and_create_nothing(
    nowhere: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"looked for the default file {nowhere / 'msclkid-outbox.sqlite3'}" in err
    assert "--store URL or MSCLKID_STORE_URL" in err
    assert list(nowhere.iterdir()) == []


def test_a_wrong_store_url_is_named_and_not_created(
    nowhere: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = nowhere / "typo.sqlite3"
    monkeypatch.setenv("MSCLKID_STORE_URL", f"sqlite:///{missing}")
    assert main(["report"]) == 1
    assert f"no outbox at {missing} (from MSCLKID_STORE_URL); nothing was created" in capsys.readouterr().err
    assert main(["status", "--store", f"sqlite:///{nowhere / 'other.db'}"]) == 1
    assert "(from --store)" in capsys.readouterr().err
    assert list(nowhere.iterdir()) == []


def test_validate_needs_no_outbox_and_creates_none(nowhere: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = crm_file(nowhere / "crm.csv", [["V1", "Purchase", "2026-01-01T00:00:00Z", "", "", "", "", ""]])
    assert main(["validate", str(source), "--rejected", str(nowhere / "rej.csv")]) == 1
    assert "1 row(s): 0 valid, 1 invalid" in capsys.readouterr().out
    assert sorted(p.name for p in nowhere.iterdir()) == ["crm.csv", "rej.csv"]


def test_verbose_names_the_store_and_where_its_url_came_from(
    nowhere: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{nowhere / 'outbox.db'}"
    open_store(url).close()
    monkeypatch.setenv("MSCLKID_STORE_URL", url)
    assert main(["status", "-v"]) == 0
    assert f"store: {url} (from MSCLKID_STORE_URL)" in capsys.readouterr().err
    assert main(["report", "--verbose", "--store", url]) == 0
    assert f"store: {url} (from --store)" in capsys.readouterr().err
    assert main(["status"]) == 0
    assert "store:" not in capsys.readouterr().err


def test_a_writing_command_still_creates_the_default_outbox(nowhere: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["retry-dead", "-v"]) == 0
    assert "the default: MSCLKID_STORE_URL is not set" in capsys.readouterr().err
    assert (nowhere / "msclkid-outbox.sqlite3").exists()


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
        SqliteOutbox(store).close()  # created 0600 whatever the umask
        code, _, err = run_status(store)
    finally:
        os.umask(old)
    assert code == 0
    assert "warning" not in err
    assert store.stat().st_mode & 0o777 == 0o600
