"""``{% load msclkid %}``: ``{% msclkid_snippet %}`` and ``{% msclkid_page_tags %}`` (the Jinja globals of the Flask
extension, for Django templates).

They need the request in the template context (``django.template.context_processors.request``, on in every
``startproject``) and follow the same settings as the middleware (``MSCLKID_SNIPPET_PATH``,
``MSCLKID_CAPTURE_PATH``, ``MSCLKID_MIDDLEWARE_OPTIONS``) and the script prefix of a project served below ``/``.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.conf import settings as django_settings
from django.urls import get_script_prefix
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from msclkid_middleware.django import MIDDLEWARE_OPTIONS, read_settings
from msclkid_middleware.errors import ConfigError
from msclkid_middleware.middleware import DEFAULT_SYNC_SCRIPT_SRC, render_page_tags

__all__ = ["msclkid_page_tags", "msclkid_snippet", "register"]

register = template.Library()

_QUEUE_STUB = "window.msclkid=window.msclkid||function(){(msclkid.q=msclkid.q||[]).push(arguments)};"


def _path(name: str, configured: str | None) -> str | None:
    own = getattr(django_settings, MIDDLEWARE_OPTIONS, None) or {}
    value = own.get(name, configured) if isinstance(own, dict) else configured
    return value if isinstance(value, str) and value else None


def _nonce(context: Any, explicit: str | None) -> str | None:
    if explicit is not None:
        return explicit or None
    # Django 6's CSP context processor (csp_nonce), else django-csp's request.csp_nonce.
    nonce = context.get("csp_nonce") or getattr(context.get("request"), "csp_nonce", None)
    return str(nonce) if nonce else None


@register.simple_tag(takes_context=True)
def msclkid_snippet(context: Any, consent: str | None = None, *, nonce: str | None = None, queue: bool = False) -> str:
    """``<script src="/_msclkid.js" async></script>``: ``consent`` becomes ``data-consent`` (``granted``, ``denied``,
    ``pending``), ``queue=True`` adds the inline pre-load queue; the CSP nonce is the page's unless given."""
    settings = read_settings()
    snippet = _path("snippet_path", settings.snippet_path)
    if snippet is None:
        return ""
    if consent is not None and consent not in ("granted", "denied", "pending"):
        raise ConfigError("msclkid_snippet consent must be 'granted', 'denied' or 'pending'", setting="consent")
    root = get_script_prefix().rstrip("/")
    capture = _path("capture_path", settings.capture_path)
    nonce = _nonce(context, nonce)
    nonce_attr = f' nonce="{escape(nonce)}"' if nonce else ""
    attrs = f' src="{escape(root + snippet)}"'
    if consent is not None:
        attrs += f' data-consent="{consent}"'
    if capture is not None and (root or capture != "/_msclkid"):
        attrs += f' data-endpoint="{escape(root + capture)}"'
    tag = f"<script{attrs} async{nonce_attr}></script>"
    if queue:
        tag = f"<script{nonce_attr}>{_QUEUE_STUB}</script>\n{tag}"
    safe: str = mark_safe(tag)  # noqa: S308 - built from escaped values and our own constants only
    return safe


@register.simple_tag(takes_context=True)
def msclkid_page_tags(
    context: Any,
    title: str | None = None,
    *,
    external_id: str | None = None,
    nonce: str | None = None,
    pixel_url: str | None = None,
) -> str:
    """The page-load ID ``<meta>`` and the consent-gated ID-sync script (server-side UET, docs/uet.md); empty
    without the request in the context."""
    request = context.get("request")
    if request is None or not hasattr(request, "META"):
        return ""
    settings = read_settings()
    sync = _path("sync_script_path", DEFAULT_SYNC_SCRIPT_SRC)
    options: dict[str, Any] = {"script_src": get_script_prefix().rstrip("/") + sync} if sync else {}
    tags = render_page_tags(
        request.META,
        customer_id=settings.customer_id,
        title=title,
        external_id=external_id,
        pixel_url=pixel_url,
        nonce=_nonce(context, nonce),
        **options,
    )
    safe: str = SafeString(tags)  # render_page_tags escapes every value it inserts
    return safe
