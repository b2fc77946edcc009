"""The shop's Django settings: everything the toolkit needs is here or in the environment.

``MSADS_*`` and ``UET_*`` come from the environment (the demo launcher points them at the emulator); the
outbox is a SQLite file in ``MSCLKID_DJANGO_SHOP_DIR`` (default: a folder in the system's temporary directory).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
DATA_DIR = Path(os.environ.get("MSCLKID_DJANGO_SHOP_DIR") or Path(tempfile.gettempdir()) / "msclkid-django-shop")
DATA_DIR.mkdir(parents=True, exist_ok=True)  # the outbox's SQLite file goes here

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-shop-demo-secret-do-not-deploy")
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "msclkid_middleware.djangoapp",  # checks, `manage.py msclkid ...`, {% load msclkid %}
    "examples.django_shop",  # this shop's templates
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "msclkid_middleware.django.MsclkidMiddleware",  # early: the click is read before any view or redirect
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "examples.django_shop.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
WSGI_APPLICATION = None
ASGI_APPLICATION = None

# -- msclkid-middleware ---------------------------------------------------------------------------------------
# The click cookie is signed with SECRET_KEY (its own salt).  Visitors may refuse in the banner (the cookie
# below) or with Global Privacy Control; the default is UET's own outside the EEA/UK/CH.
MSCLKID_CONSENT_DEFAULT = os.environ.get("MSCLKID_CONSENT_DEFAULT", "granted")
MSCLKID_CONSENT_COOKIE = "shop_consent"
MSCLKID_STORE_URL = os.environ.get("MSCLKID_STORE_URL") or f"sqlite:///{DATA_DIR / 'outbox.sqlite3'}"
MSCLKID_WORKER = os.environ.get("MSCLKID_WORKER", "off")  # the demo launcher turns the delivery thread on
MSADS_CONVERSION_GOALS = ["Purchase"]
# The demo is plain http on 127.0.0.1: the development-only cookie without Secure (a real shop removes these).
MSCLKID_COOKIE_SECURE = os.environ.get("MSCLKID_COOKIE_SECURE", "false")
MSCLKID_MIDDLEWARE_OPTIONS = {"allow_insecure_cookie": True}

# Microsoft Advertising credentials and endpoints (the emulator's, under the demo launcher).
globals().update({k: v for k, v in os.environ.items() if k.startswith(("MSADS_", "UET_")) and v})
