"""Views of the adapter tests: sync and async, HTML pages, redirects, errors, streams and a JSON probe."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.template import engines
from django.urls import path

from msclkid_middleware import get_click, get_consent
from msclkid_middleware.capture.context import request_consent


def _click_text(request: HttpRequest) -> str:
    click = request.msclkid  # type: ignore[attr-defined]
    return "none" if click is None else f"{click.msclkid}/{click.source}"


def page(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"<html><body>click={_click_text(request)}</body></html>")


async def async_page(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"<html><body>async click={_click_text(request)}</body></html>")


def probe(request: HttpRequest) -> JsonResponse:
    click = get_click(request)
    consent = get_consent(request)
    during = request_consent()
    return JsonResponse(
        {
            "click": click.msclkid if click else None,
            "same": click == request.msclkid,  # type: ignore[attr-defined]
            "meta_click": (c.msclkid if (c := get_click(request.META)) else None),
            "consent": consent.state if consent else None,
            "basis": consent.basis if consent else None,
            "request_consent": during.state if during else None,
        }
    )


async def async_probe(request: HttpRequest) -> JsonResponse:
    click = get_click(request)
    during = request_consent()
    return JsonResponse(
        {"click": click.msclkid if click else None, "request_consent": during.state if during else None}
    )


def redirect(request: HttpRequest) -> HttpResponseRedirect:
    return HttpResponseRedirect("/page")


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("the view failed")


def stream(request: HttpRequest) -> StreamingHttpResponse:
    def chunks() -> Iterator[bytes]:
        yield b"<html><body>"
        yield b"streamed"
        yield b"</body></html>"

    return StreamingHttpResponse(chunks(), content_type="text/html; charset=utf-8")


async def async_stream(request: HttpRequest) -> StreamingHttpResponse:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"<html><body>"
        yield b"async streamed"
        yield b"</body></html>"

    return StreamingHttpResponse(chunks(), content_type="text/html; charset=utf-8")


_TEMPLATE = (
    "{% load msclkid %}<html><head>{% msclkid_page_tags 'Tagged page' %}{% msclkid_snippet %}"
    "{% msclkid_snippet 'pending' queue=True nonce='n0nce' %}</head><body>tagged</body></html>"
)


def tagged(request: HttpRequest) -> HttpResponse:
    return HttpResponse(engines["django"].from_string(_TEMPLATE).render({}, request))


urlpatterns = [
    path("page", page),
    path("async-page", async_page),
    path("probe", probe),
    path("async-probe", async_probe),
    path("redirect", redirect),
    path("boom", boom),
    path("stream", stream),
    path("async-stream", async_stream),
    path("tagged", tagged),
]
