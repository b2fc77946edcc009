"""``manage.py check``: the msclkid system checks report configuration problems as Django errors."""

from __future__ import annotations

import io

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from tests.django_setup import BASE


def ids(**settings: object) -> list[str]:
    with override_settings(**settings):
        return [message.id for message in checks.run_checks(tags=["msclkid"])]


def test_the_check_is_registered_under_its_tag_and_passes_on_a_good_configuration() -> None:
    assert "msclkid" in checks.registry.registry.tags_available()
    assert ids() == []
    out = io.StringIO()
    call_command("check", stdout=out)
    assert "no issues" in out.getvalue()


def test_missing_secret_keys_are_an_error() -> None:
    with (
        override_settings(SECRET_KEY="", MSCLKID_SECRET_KEYS=None),
        pytest.raises(SystemCheckError, match=r"msclkid\.E001") as raised,
    ):
        call_command("check")
    assert "MSCLKID_SECRET_KEYS" in str(raised.value)


@pytest.mark.parametrize(
    "settings",
    [
        {"MSCLKID_CONSENT_DEFAULT": "maybe"},
        {"MSCLKID_CONSENT_GRANTED_VALUES": ["yes", "no"], "MSCLKID_CONSENT_DENIED_VALUES": ["no"]},
        {"MSCLKID_CONSENT_HONOR_GPC": "perhaps"},
    ],
    ids=["default", "overlapping values", "gpc"],
)
def test_misconfigured_consent_is_an_error(settings: dict[str, object]) -> None:
    assert ids(**settings) == ["msclkid.E002"]
    with override_settings(**settings), pytest.raises(SystemCheckError, match=r"msclkid\.E002"):
        call_command("check")


def test_both_problems_are_reported_in_one_run() -> None:
    assert ids(MSCLKID_SECRET_KEYS=None, SECRET_KEY="", MSCLKID_CONSENT_DEFAULT="maybe") == [
        "msclkid.E001",
        "msclkid.E002",
    ]


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"MSCLKID_COOKIE_MAX_AGE": 0}, "msclkid.E003"),
        ({"MSCLKID_UET_PAGE_LOADS": "landing"}, "msclkid.E003"),
        ({"MSCLKID_MIDDLEWARE_OPTIONS": {"no_such_option": 1}}, "msclkid.E003"),
        ({"MSCLKID_COOKIE_SECURE": False, "MSCLKID_MIDDLEWARE_OPTIONS": {}}, "msclkid.E003"),
    ],
    ids=["max age", "page loads without a tag", "unknown option", "insecure cookie not allowed"],
)
def test_other_settings_are_reported_with_their_name(settings: dict[str, object], expected: str) -> None:
    assert ids(**settings) == [expected]


def test_a_missing_middleware_is_a_warning() -> None:
    middleware = [m for m in BASE["MIDDLEWARE"] if "msclkid" not in m]
    assert ids(MIDDLEWARE=middleware) == ["msclkid.W001"]
