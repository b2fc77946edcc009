"""The app config: registers the system checks and forgets the shared tracker when its settings change."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.core.signals import setting_changed

from msclkid_middleware.django import close_tracker
from msclkid_middleware.djangoapp.checks import check_settings

__all__ = ["MsclkidConfig"]

_PREFIXES = ("MSCLKID_", "MSADS_", "UET_", "SECRET_KEY", "BASE_DIR")


def _settings_changed(*, setting: str, **_: Any) -> None:
    # override_settings in tests (and any runtime change): the next get_tracker() reads the new settings.
    if setting.startswith(_PREFIXES):
        close_tracker()


class MsclkidConfig(AppConfig):
    name = "msclkid_middleware.djangoapp"
    label = "msclkid"
    verbose_name = "Microsoft Advertising click tracking"

    def ready(self) -> None:
        # The registry keeps a set: a second ready() (tests re-populating the apps) registers nothing twice.
        checks.register(check_settings, "msclkid")
        setting_changed.connect(_settings_changed, dispatch_uid="msclkid_middleware.settings_changed")
