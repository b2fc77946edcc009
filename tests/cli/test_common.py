"""What every command shares: read-only commands never create an outbox, and ``-v`` names the one used."""

from __future__ import annotations

from pathlib import Path

import pytest

from msclkid_middleware.cli import main
from msclkid_middleware.outbox import open_store
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
