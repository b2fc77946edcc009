"""Which clients a tracker delivers with: a custom client is checked once against its protocol at construction;
built-in clients come from the settings (importing ``requests`` only then) and are closed with the tracker."""

from __future__ import annotations

from pathlib import Path

from msclkid_middleware.config import Settings
from msclkid_middleware.dispatch.clients import build_clients
from msclkid_middleware.dispatch.protocols import CampaignClient, UetSender
from msclkid_middleware.microsoft import CampaignManagementClient, UetClient
from msclkid_middleware.outbox import open_store
from msclkid_middleware.redact import RedactingFilter
from msclkid_middleware.testing import EmulatorHandle


def test_tracker_rejects_a_client_that_is_not_one_at_construction(tmp_path: object) -> None:
    """``microsoft=True`` used to fail at the first flush with an AttributeError and rows left in flight."""
    import pytest

    from msclkid_middleware.dispatch.tracker import ConversionTracker
    from msclkid_middleware.errors import ConfigError

    url = f"sqlite:///{tmp_path}/outbox.sqlite3"
    for options in ({"microsoft": True}, {"uet": "token"}, {"microsoft": object()}):
        with pytest.raises(ConfigError):
            ConversionTracker(store_url=url, **options)


def test_the_built_in_clients_satisfy_the_protocols_and_are_closed_with_the_tracker(
    ms: EmulatorHandle, tmp_path: Path
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'outbox.db'}")
    try:
        clients = build_clients(Settings.from_env(ms.env), store, RedactingFilter(()), microsoft=None, uet=None)
        assert isinstance(clients.campaign, CampaignManagementClient)
        assert isinstance(clients.campaign, CampaignClient)
        assert isinstance(clients.uet, UetClient)
        assert isinstance(clients.uet, UetSender)
        assert clients.owned == (clients.campaign, clients.uet)
        clients.close()
        custom = build_clients(
            Settings.from_env(ms.env), store, RedactingFilter(()), microsoft=clients.campaign, uet=False
        )
        assert custom.campaign is clients.campaign
        assert custom.uet is None
        assert custom.owned == ()  # the caller's client stays the caller's to close
    finally:
        store.close()


def test_no_credentials_means_no_clients(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'outbox.db'}")
    try:
        clients = build_clients(Settings(), store, RedactingFilter(()), microsoft=None, uet=None)
        assert (clients.campaign, clients.uet, clients.owned) == (None, None, ())
    finally:
        store.close()
