"""Page views: the value handed to ``MsclkidMiddleware(on_page_view=...)`` and the rules deciding what is one (pure).

A page view is a ``GET`` that the app answered with an HTML document: a ``2xx`` status other
than ``204``/``206`` and a ``Content-Type`` of ``text/html``.  Never a page view: the snippet, the
capture endpoint and the sync script (the middleware answers those itself); paths ending in an
asset extension (:data:`ASSET_EXTENSIONS`) or starting with a configured excluded prefix; requests
a browser marks as not loading a document (``Sec-Fetch-Dest`` other than ``document``/``iframe``,
``Sec-Purpose``/``Purpose: prefetch``, htmx's ``HX-Request``); and bots: a user agent matching
:data:`DEFAULT_BOT_PATTERN` (case-insensitive, compiled once at start-up) or no user agent at all.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from msclkid_middleware.capture.clickid import Click
from msclkid_middleware.capture.consent import Consent
from msclkid_middleware.capture.request import RequestFacts
from msclkid_middleware.errors import ConfigError

__all__ = [
    "ASSET_EXTENSIONS",
    "DEFAULT_BOT_PATTERN",
    "AnonymousIdSource",
    "PageView",
    "PageViewHook",
    "check_hosts",
    "check_prefixes",
    "compile_bot_pattern",
    "is_asset_path",
    "is_bot",
    "is_document_request",
    "is_html_document",
    "served_host",
    "web_referrer",
]

#: User agents that are not people: search and ad crawlers (``Googlebot``, ``bingbot``, ``AdsBot``,
#: ``Baiduspider``, ``YandexBot``, ``Slurp``, ...), link previewers (``facebookexternalhit``,
#: ``Slackbot``, ``Twitterbot``, ``BingPreview``, ``WhatsApp``), SEO tools, uptime monitors and HTTP
#: libraries.  ``(?<!cu)`` keeps the "Cubot" phone brand out.  Headless browsers are *not* in it:
#: many are real prerenderers or tests; add ``|headless`` to drop them.
DEFAULT_BOT_PATTERN = (
    r"(?<!cu)bot\b|bot[/-]|crawl|spider|slurp|scrap|archiver|facebookexternalhit|mediapartners-google"
    r"|preview|whatsapp|lighthouse|pingdom|uptime|statuscake|monitor|python-|curl/|wget/|go-http-client"
    r"|okhttp|java/|libwww|httpclient|axios/|node-fetch|aiohttp|guzzle|postman"
)

#: Path endings that are never documents, compared case-insensitively on the last path segment.
ASSET_EXTENSIONS = frozenset(
    [
        ".css",
        ".js",
        ".mjs",
        ".map",
        ".json",
        ".xml",
        ".txt",
        ".csv",
        ".png",
        ".jpg",
        ".jpeg",
        ".gif",
        ".webp",
        ".avif",
        ".svg",
        ".ico",
        ".bmp",
        ".woff",
        ".woff2",
        ".ttf",
        ".otf",
        ".eot",
        ".mp4",
        ".webm",
        ".mp3",
        ".ogg",
        ".wav",
        ".pdf",
        ".zip",
        ".gz",
        ".wasm",
        ".webmanifest",
    ]
)

AnonymousIdSource = Literal["uet", "cookie"]


@dataclass(frozen=True, slots=True)
class PageView:
    """One HTML page view, as the middleware saw it once the response was sent.

    ``url`` is the full request URL (scheme and host as the server, or the app's proxy set-up such
    as werkzeug's ``ProxyFix``, reports them).  ``click`` and ``anonymous_id`` are ``None`` when
    consent is denied.  ``landing`` is True when the URL itself carried a valid ``msclkid`` (an ad
    landing), whatever the consent.  ``client_ip`` is ``REMOTE_ADDR``.
    """

    # Alike in shape to outbox.base.Outcome (required fields, then optional ones): another concept, nothing to share.
    url: str
    page_load_id: str
    time: datetime
    consent: Consent
    referrer: str | None = None
    title: str | None = None
    click: Click | None = None
    anonymous_id: str | None = None
    anonymous_id_source: AnonymousIdSource | None = None
    client_ip: str | None = None
    user_agent: str | None = None
    landing: bool = False


PageViewHook = Callable[[PageView], object]


def compile_bot_pattern(pattern: str | re.Pattern[str] | None) -> re.Pattern[str] | None:
    """The bot filter as a compiled, case-insensitive pattern (``None``: no filter)."""
    if pattern is None:
        return None
    if isinstance(pattern, re.Pattern):
        return pattern
    if not isinstance(pattern, str) or not pattern:
        raise ConfigError("bot_user_agents must be a regular expression (a string) or None", setting="bot_user_agents")
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        message = f"bot_user_agents is not a valid regular expression: {exc}"
        raise ConfigError(message, setting="bot_user_agents") from None


def check_prefixes(prefixes: Iterable[str]) -> tuple[str, ...]:
    if isinstance(prefixes, str):
        prefixes = (prefixes,)
    result = tuple(prefixes)
    if any(not isinstance(p, str) or not p.startswith("/") for p in result):
        raise ConfigError(
            "page_view_exclude must be URL path prefixes starting with '/', e.g. ('/static/', '/admin/')",
            setting="page_view_exclude",
        )
    return result


def is_asset_path(path: str) -> bool:
    """True when the last path segment ends in one of :data:`ASSET_EXTENSIONS`."""
    segment = path.rpartition("/")[2]
    dot = segment.rfind(".")
    return dot >= 0 and segment[dot:].lower() in ASSET_EXTENSIONS


def is_html_document(status: str, headers: Iterable[tuple[str, str]]) -> bool:
    """A 2xx answer (not 204/206) whose ``Content-Type`` is ``text/html``."""
    if not status.startswith("2") or status.startswith(("204", "206")):
        return False
    for name, value in headers:
        if name.lower() == "content-type":
            return value.lstrip()[:9].lower() == "text/html"
    return False


def is_document_request(request: RequestFacts) -> bool:
    """False when the browser says this request does not load a page a person sees."""
    dest = request.sec_fetch_dest
    if dest is not None and dest not in ("document", "iframe", "frame"):
        return False
    purpose = request.purpose
    if purpose and "prefetch" in purpose.lower():
        return False
    return not request.hx_request


def is_bot(pattern: re.Pattern[str] | None, user_agent: str | None) -> bool:
    """True for a user agent the filter matches, or no user agent at all (browsers always send one);
    never with the filter turned off (``pattern`` ``None``)."""
    if pattern is None:
        return False
    return not user_agent or pattern.search(user_agent) is not None


# -- where a page view says it happened (issue 19 item 9) --------------------------------------------------

# A DNS name (letters, digits, hyphens; labels of 1-63, no leading or trailing hyphen) or an IPv4 address.
_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?", re.ASCII)
_PORT = re.compile(r"[0-9]{1,5}", re.ASCII)


def _split_host(value: str) -> tuple[str, str] | None:
    """``(name, port)`` of a valid ``Host`` value (name lowercased, port possibly ""), else ``None``."""
    if not value or len(value) > 260:
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[: end + 1], value[end + 1 :]
        try:
            ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            return None
    else:
        name, _, port = value.partition(":")
        rest = ":" + port if _ else ""
        if len(name) > 253 or not _HOST_NAME.fullmatch(name):
            return None
    if rest:
        port = rest[1:]
        if not rest.startswith(":") or not _PORT.fullmatch(port) or int(port) > 65535:
            return None
        return name.lower(), port
    return name.lower(), ""


def check_hosts(hosts: Iterable[str]) -> tuple[str, ...]:
    """The ``allowed_hosts`` option: host names (``shop.example``), ``.example.com`` for a domain and its
    subdomains, or ``*`` for any valid host name; compared without the port, case-insensitively."""
    if isinstance(hosts, str):
        hosts = hosts.split(",")
    result: list[str] = []
    for host in hosts:
        if not isinstance(host, str):
            raise ConfigError("allowed_hosts must be host names", setting="MSCLKID_ALLOWED_HOSTS")
        host = host.strip().lower()
        if not host:
            continue
        parts = _split_host(host[1:] if host.startswith(".") else host)
        if host != "*" and (parts is None or parts[1] or host.startswith(".[")):
            raise ConfigError(
                f"allowed_hosts: {host!r} is not a host name (give names such as 'shop.example' or '.example.com',"
                " without scheme or port)",
                setting="MSCLKID_ALLOWED_HOSTS",
            )
        result.append(host)
    return tuple(result)


def served_host(host: str | None, allowed: tuple[str, ...]) -> str | None:
    """``host`` (a ``Host`` header value, port included) when it is a valid host name the site serves, else
    ``None``.  Without ``allowed`` hosts any valid host name is served; anything else is never used in a URL."""
    if not host:
        return None
    parts = _split_host(host)
    if parts is None:
        return None
    name = parts[0].rstrip(".")
    if not allowed:
        return host
    for pattern in allowed:
        if pattern == "*" or name == pattern.rstrip("."):
            return host
        if pattern.startswith(".") and (name.endswith(pattern.rstrip(".")) or name == pattern[1:].rstrip(".")):
            return host
    return None


def web_referrer(value: str | None) -> str | None:
    """The referrer when it is an ``http``/``https`` URL with a host and no whitespace or control characters."""
    if not value or len(value) > 4096:
        return None
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest or rest[0] in "/?#":
        return None
    if any(ch <= " " or ch == "\x7f" for ch in value):
        return None
    return value
