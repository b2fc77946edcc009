from __future__ import annotations

import pytest

from msclkid_middleware.config import Settings
from msclkid_middleware.errors import ConfigError


def test_defaults_are_secure_and_documented() -> None:
    s = Settings()
    assert s.cookie_name == "__Host-msclkid"
    assert s.cookie_secure is True
    assert s.cookie_max_age == 90 * 24 * 3600
    assert s.effective_api_url == "https://campaign.api.bingads.microsoft.com"
    assert s.effective_token_url == "https://login.microsoftonline.com/common/oauth2/v2.0/token"
    assert s.uet_api_url == "https://capi.uet.microsoft.com"
    assert s.effective_store_url.startswith("sqlite:///")


def test_from_env_parses_lists_bools_and_overrides() -> None:
    env = {
        "MSCLKID_SECRET_KEYS": "old, new",
        "MSADS_CONVERSION_GOALS": "Purchase,Lead",
        "MSCLKID_COOKIE_SECURE": "false",
        "MSADS_ENVIRONMENT": "sandbox",
        "MSADS_API_URL": "http://127.0.0.1:9/",
        "MSCLKID_COOKIE_DOMAIN": "",
    }
    s = Settings.from_env(env, account_id="42")
    assert s.secret_keys == ("old", "new")
    assert s.conversion_goals == ("Purchase", "Lead")
    assert s.cookie_secure is False
    assert s.cookie_domain is None
    assert s.effective_api_url == "http://127.0.0.1:9"
    assert s.oauth_scope.startswith("https://si.ads.microsoft.com/")
    assert s.account_id == "42"


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        pytest.param({"MSADS_ENVIRONMENT": "staging"}, "MSADS_ENVIRONMENT", id="environment"),
        pytest.param({"MSCLKID_CONSENT_DEFAULT": "maybe"}, "MSCLKID_CONSENT_DEFAULT", id="consent-default"),
        pytest.param({"MSCLKID_COOKIE_SECURE": "perhaps"}, "MSCLKID_COOKIE_SECURE", id="bool"),
        pytest.param({"MSCLKID_COOKIE_MAX_AGE": "ninety"}, "MSCLKID_COOKIE_MAX_AGE", id="max-age-text"),
        pytest.param({"MSCLKID_COOKIE_MAX_AGE": str(500 * 86400)}, "MSCLKID_COOKIE_MAX_AGE", id="max-age-400d"),
        pytest.param({"MSCLKID_WORKER": "process"}, "MSCLKID_WORKER", id="worker"),
    ],
)
def test_bad_values_fail_with_the_setting_named(env: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert info.value.setting == setting
    assert setting in str(info.value)


def test_repr_never_shows_secrets() -> None:
    s = Settings(
        secret_keys=("cookie-key-1",),
        client_secret="cs-abcdef",
        refresh_token="rt-abcdef",
        developer_token="dt-abcdef",
        uet_api_token="uet-abcdef",
        client_id="client-visible",
    )
    text = repr(s)
    for secret in ("cookie-key-1", "cs-abcdef", "rt-abcdef", "dt-abcdef", "uet-abcdef"):
        assert secret not in text
    assert "client-visible" in text
    assert set(s.secrets()) == {"cookie-key-1", "cs-abcdef", "rt-abcdef", "dt-abcdef", "uet-abcdef"}
