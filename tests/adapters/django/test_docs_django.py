"""README's Django quick start and docs/django.md stay true to the code."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import path
from django.utils.module_loading import import_string

from msclkid_middleware.django import get_tracker
from msclkid_middleware.djangoapp import checks as msclkid_checks

ROOT = Path(__file__).resolve().parents[3]
CLICK = "f894f652ea334e739002f7167ab8f8e3"


def _readme_lines() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Django quick start\s+```python\n(.*?)```", readme, re.S)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_django_quick_start_names_real_things_and_records() -> None:
    apps_line, middleware_line, import_line, record_line = _readme_lines()
    assert "msclkid_middleware.djangoapp" in apps_line
    dotted = re.search(r'"(msclkid_middleware\.django\.\w+)"', middleware_line)
    assert dotted is not None
    assert import_string(dotted.group(1)).async_capable

    def checkout(request: HttpRequest) -> HttpResponse:
        scope = {"request": request, "order": SimpleNamespace(id="ord_readme", total=42.0), "now": datetime.now(UTC)}
        exec(compile(import_line + "\n" + record_line, "README.md", "exec"), scope)  # noqa: S102 - our own docs
        return HttpResponse("ok")

    class Urls:  # a URLconf is any hashable object with urlpatterns
        urlpatterns = [path("checkout", checkout)]

    with override_settings(ROOT_URLCONF=Urls):
        assert Client().post(f"/checkout?msclkid={CLICK}").status_code == 200
    row = get_tracker().store.find("ord_readme")[0]
    assert row.payload["MicrosoftClickId"] == CLICK
    assert row.payload["ConversionValue"] == 42.0


def test_docs_name_every_check_and_setting_the_adapter_reads() -> None:
    doc = (ROOT / "docs" / "django.md").read_text()
    source = Path(msclkid_checks.__file__).read_text()
    for check_id in set(re.findall(r'"(msclkid\.[EW]\d{3})"', source)):
        assert f"`{check_id}`" in doc
    for name in ("MSCLKID_MIDDLEWARE_OPTIONS", "MSCLKID_TRACKER_OPTIONS", "SECRET_KEY_FALLBACKS", "BASE_DIR"):
        assert name in doc
    assert "msclkid_middleware.django.MsclkidMiddleware" in doc
    for linked in re.findall(r"\]\(([a-z_]+\.md)\)", doc):
        assert (ROOT / "docs" / linked).exists(), linked
