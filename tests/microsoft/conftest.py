from __future__ import annotations

from collections.abc import Iterator

import pytest

from msclkid_middleware.microsoft import CampaignManagementClient, RefreshTokenProvider, UetClient
from msclkid_middleware.testing import EmulatorHandle, run_emulator
from msclkid_middleware.tokens import MemoryTokenStore


@pytest.fixture
def ms() -> Iterator[EmulatorHandle]:
    with run_emulator() as handle:
        yield handle


def make_provider(ms: EmulatorHandle, **options: object) -> RefreshTokenProvider:
    env = ms.env
    kwargs: dict[str, object] = {
        "refresh_token": env["MSADS_REFRESH_TOKEN"],
        "token_url": env["MSADS_TOKEN_URL"],
        "token_store": MemoryTokenStore(),
    }
    kwargs.update(options)
    return RefreshTokenProvider(env["MSADS_CLIENT_ID"], env["MSADS_CLIENT_SECRET"], **kwargs)  # type: ignore[arg-type]


def make_campaign(
    ms: EmulatorHandle, provider: RefreshTokenProvider | None = None, **options: object
) -> CampaignManagementClient:
    env = ms.env
    kwargs: dict[str, object] = {
        "api_url": env["MSADS_API_URL"],
        "developer_token": env["MSADS_DEVELOPER_TOKEN"],
        "customer_id": env["MSADS_CUSTOMER_ID"],
        "account_id": env["MSADS_ACCOUNT_ID"],
        "token_provider": provider or make_provider(ms),
        "timeout": (2.0, 10.0),
    }
    kwargs.update(options)
    return CampaignManagementClient(**kwargs)  # type: ignore[arg-type]


def make_uet(ms: EmulatorHandle, **options: object) -> UetClient:
    kwargs: dict[str, object] = {
        "api_url": ms.env["UET_API_URL"],
        "api_token": ms.env["UET_API_TOKEN"],
        "timeout": (2.0, 10.0),
    }
    kwargs.update(options)
    return UetClient(**kwargs)  # type: ignore[arg-type]


@pytest.fixture
def provider(ms: EmulatorHandle) -> RefreshTokenProvider:
    return make_provider(ms)


@pytest.fixture
def campaign(ms: EmulatorHandle, provider: RefreshTokenProvider) -> Iterator[CampaignManagementClient]:
    with make_campaign(ms, provider) as client:
        yield client


@pytest.fixture
def uet(ms: EmulatorHandle) -> Iterator[UetClient]:
    with make_uet(ms) as client:
        yield client
