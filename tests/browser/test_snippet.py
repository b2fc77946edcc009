"""The snippet in headless Chromium against the real middleware and capture endpoint (issue 3, cases 1-6).

Pages live under ``/cached/`` and bypass the middleware (a cached landing page); the snippet, the capture
endpoint and ``/whoami`` (what ``get_click`` sees) go through it. No page has inline script: page behaviour
(router, consent banner, CMP stub) lives in small external files, as it must under a strict CSP.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from tests.tcf_encoder import TCSpec

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page, Request, Response

    from .conftest import Site, SiteFactory, SnippetSource

pytestmark = pytest.mark.browser

HTML = "text/html; charset=utf-8"
JS = "text/javascript; charset=utf-8"
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
READY = "() => window.msclkid && typeof window.msclkid.eventId === 'function'"

# The pre-load queue, exactly as docs/snippet.md tells sites to include it (as a file: no inline script).
QUEUE_JS = "window.msclkid = window.msclkid || function () { (msclkid.q = msclkid.q || []).push(arguments); };\n"
# A consent banner: the visitor's choice is reported with the UET-shaped call.
BANNER_JS = """
document.getElementById('accept').addEventListener('click', function () { msclkid('consent', 'granted'); });
document.getElementById('reject').addEventListener('click', function () { msclkid('consent', 'denied'); });
"""
LEAD_FORM = """
<form id="lead" action="https://crm.example/lead" method="post">
  <input name="email" value="">
  <input id="click" name="msclkid" type="hidden">
</form>
"""


def html(*, head: str = "", body: str = "") -> str:
    return f'<!doctype html><html><head><meta charset="utf-8"><title>t</title>{head}</head><body>{body}</body></html>'


def tag(src: str, **data: str) -> str:
    attributes = "".join(f' data-{name}="{value}"' for name, value in data.items())
    return f'<script src="{src}"{attributes} async></script>'


def is_capture(site: Site, method: str = "POST") -> Callable[[Response], bool]:
    return lambda response: response.url == site.url("/_msclkid") and response.request.method == method


def record_requests(page: Page) -> list[Request]:
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    return requests


def endpoint_bodies(requests: list[Request], site: Site) -> list[Any]:
    return [json.loads(r.post_data or "null") for r in requests if r.url == site.url("/_msclkid")]


def click_cookies(context: BrowserContext) -> list[dict[str, Any]]:
    return [dict(cookie) for cookie in context.cookies() if cookie["name"].startswith("msclkid")]


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:.0f} s")
        time.sleep(0.02)


# --- 1. A cached landing page ------------------------------------------------------------------------------


def test_cached_landing_page_is_captured_through_the_endpoint(
    context: BrowserContext, make_site: SiteFactory, snippet: SnippetSource
) -> None:
    site = make_site({"/cached/landing.html": (HTML, html(head=tag(snippet.src))), **snippet.files})
    page = context.new_page()
    with page.expect_response(is_capture(site)) as answer:
        landing = page.goto(site.url("/cached/landing.html?utm_source=bing&MSCLKID=Ab12-cD_34"))
    assert landing is not None
    assert "set-cookie" not in landing.headers, "the landing HTML must bypass the middleware in this case"
    assert answer.value.status == 204
    [post] = site.posts()
    assert post.json() == {"msclkid": "Ab12-cD_34"}  # no data-consent: the server's policy decides
    assert post.content_type == "application/json"
    assert post.fetch_site == "same-origin"
    assert post.set_cookies
    # The next request carries the signed cookie, and get_click sees the click with its case intact.
    assert site.click_seen(context) == {"msclkid": "Ab12-cD_34", "source": "cookie"}
    cookie = next(c for c in context.cookies() if c["name"] == "msclkid")
    assert cookie["httpOnly"] is True
    assert page.evaluate("msclkid.clickId") == "Ab12-cD_34"
    assert UUID4.match(page.evaluate("msclkid.pageLoadId"))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("?msclkid=0123456789abcdef0123456789ABCDEF", "0123456789abcdef0123456789ABCDEF", id="32-hex"),
        pytest.param("?a=1&MsClKiD=Example-123#top", "Example-123", id="name-case-insensitive"),
        pytest.param("?msclkid=Ex%61mple_1", "Example_1", id="percent-decoded"),
        pytest.param("?msclkid=bad%ZZ&msclkid=good-2", "good-2", id="malformed-escape-then-valid"),
        pytest.param("?msclkid=no%20spaces&msclkid=second", "second", id="first-valid-wins"),
        pytest.param("#/route?msclkid=hashed_1", "hashed_1", id="in-the-hash"),
        pytest.param("?msclkid=" + "a" * 65, None, id="too-long"),
        pytest.param("?msclkid=<script>", None, id="markup"),
        pytest.param("?msclkid=", None, id="empty"),
        pytest.param("?xmsclkid=abc", None, id="other-parameter"),
    ],
)
def test_click_id_is_read_and_validated_like_the_server(
    context: BrowserContext, make_site: SiteFactory, snippet: SnippetSource, query: str, expected: str | None
) -> None:
    # data-consent="pending": the snippet keeps the click in memory only, so nothing is posted here at all.
    site = make_site({"/cached/p.html": (HTML, html(head=tag(snippet.src, consent="pending"))), **snippet.files})
    page = context.new_page()
    requests = record_requests(page)
    page.goto(site.url("/cached/p.html" + query))
    page.wait_for_function(READY)
    assert page.evaluate("msclkid.clickId") == expected
    assert endpoint_bodies(requests, site) == []


def test_page_view_without_a_click_sends_nothing(
    context: BrowserContext, make_site: SiteFactory, snippet: SnippetSource
) -> None:
    site = make_site({"/cached/p.html": (HTML, html(head=tag(snippet.src) + LEAD_FORM)), **snippet.files})
    page = context.new_page()
    requests = record_requests(page)
    page.goto(site.url("/cached/p.html?utm_source=bing"), wait_until="load")
    assert page.evaluate("msclkid.clickId") is None
    assert UUID4.match(page.evaluate("msclkid.pageLoadId"))
    assert page.input_value("#click") == ""
    assert endpoint_bodies(requests, site) == []
    assert click_cookies(context) == []


def test_snippet_included_twice_runs_once(
    context: BrowserContext, make_site: SiteFactory, snippet: SnippetSource
) -> None:
    # A template and a tag manager both include it: the first copy stays in charge, one post, one pageLoadId.
    site = make_site({"/cached/p.html": (HTML, html(head=tag(snippet.src) + tag(snippet.src))), **snippet.files})
    page = context.new_page()
    requests = record_requests(page)
    page.goto(site.url("/cached/p.html?msclkid=Twice-1"), wait_until="load")  # both async copies have run
    page_load_id = page.evaluate("msclkid.pageLoadId")
    assert page.evaluate("msclkid.eventId('x')") == f"x-{page_load_id}-1"
    assert endpoint_bodies(requests, site) == [{"msclkid": "Twice-1"}]


# --- 2. A single-page app that strips the query before the snippet runs --------------------------------------

ROUTER_JS = """
// A client-side router: canonicalises the URL first, then its tag loader adds the snippet late (async).
var before = location.href;
history.replaceState(null, '', location.pathname + '#/home');
window.stripped = before !== location.href && !/msclkid/i.test(location.href);
var snippet = document.createElement('script');
snippet.src = document.currentScript.dataset.snippet;
snippet.async = true;
document.head.appendChild(snippet);
"""


@pytest.mark.parametrize(
    "landing", [pytest.param("?msclkid=SpaClick-1", id="query"), pytest.param("#/offer?msclkid=SpaClick-1", id="hash")]
)
def test_spa_router_stripping_the_url_first_does_not_lose_the_click(
    context: BrowserContext, make_site: SiteFactory, snippet: SnippetSource, landing: str
) -> None:
    router = f'<script src="/cached/router.js" data-snippet="{snippet.src}"></script>'
    site = make_site(
        {"/cached/spa.html": (HTML, html(head=router)), "/cached/router.js": (JS, ROUTER_JS), **snippet.files}
    )
    page = context.new_page()
    with page.expect_response(is_capture(site)) as answer:
        page.goto(site.url("/cached/spa.html" + landing))
    assert page.evaluate("window.stripped") is True
    assert "msclkid" not in page.url
    assert answer.value.status == 204
    assert site.click_seen(context) == {"msclkid": "SpaClick-1", "source": "cookie"}


# --- 3. Consent given (or refused) after the page loaded ---------------------------------------------------


def consent_site(make_site: SiteFactory, snippet: SnippetSource) -> Site:
    head = '<script src="/cached/queue.js"></script>' + tag(snippet.src, consent="pending")
    body = LEAD_FORM + '<button id="accept">Accept</button><button id="reject">Reject</button>'
    body += '<script src="/cached/banner.js" defer></script>'
    return make_site(
        {
            "/cached/landing.html": (HTML, html(head=head, body=body)),
            "/cached/queue.js": (JS, QUEUE_JS),
            "/cached/banner.js": (JS, BANNER_JS),
            **snippet.files,
        }
    )


def test_consent_granted_two_seconds_later_captures_the_landing_click(
    context: BrowserContext, make_site: SiteFactory, snippet: SnippetSource
) -> None:
    site = consent_site(make_site, snippet)
    page = context.new_page()
    requests = record_requests(page)
    page.goto(site.url("/cached/landing.html?msclkid=LateGrant-7"))
    page.wait_for_function(READY)
    page.wait_for_timeout(2000)  # the visitor reads the banner: the case itself is "granted 2 s later"
    # Pending: kept in memory only. Nothing posted, no cookie of any kind, the lead form left empty.
    assert endpoint_bodies(requests, site) == []
    assert site.captures == []
    assert click_cookies(context) == []
    assert page.input_value("#click") == ""
    assert page.evaluate("msclkid.clickId") == "LateGrant-7"

    with page.expect_response(is_capture(site)) as answer:
        page.click("#accept")
    assert answer.value.status == 204
    assert [post.json() for post in site.posts()] == [{"msclkid": "LateGrant-7", "consent": "granted"}]
    assert site.click_seen(context) == {"msclkid": "LateGrant-7", "source": "cookie"}
    assert page.input_value("#click") == "LateGrant-7"


def test_consent_denied_stores_nothing_and_removes_an_older_click(
    context: BrowserContext, make_site: SiteFactory, snippet: SnippetSource
) -> None:
    site = consent_site(make_site, snippet)
    page = context.new_page()
    # An earlier visit, captured server-side from the URL while consent allowed it.
    page.goto(site.url("/app?msclkid=OlderClick-1"))
    assert site.click_seen(context) == {"msclkid": "OlderClick-1", "source": "cookie"}

    requests = record_requests(page)
    page.goto(site.url("/cached/landing.html?msclkid=NewClick-2"))
    page.wait_for_function(READY)
    with page.expect_response(is_capture(site)) as answer:
        page.click("#reject")
    assert answer.value.status == 204
    # The refusal travels alone: the new click ID never leaves the page.
    assert endpoint_bodies(requests, site) == [{"consent": "denied"}]
    assert all(b"NewClick-2" not in capture.body for capture in site.captures)
    assert site.click_seen(context) is None
    assert click_cookies(context) == []
    assert page.evaluate("msclkid.clickId") is None
    assert page.input_value("#click") == ""


def test_consent_queued_before_the_snippet_loaded_is_replayed(
    context: BrowserContext, make_site: SiteFactory, snippet: SnippetSource
) -> None:
    # A CMP that answered before the snippet arrived: it records the choice in the site's consent cookie
    # (which the server's policy reads on every request) and reports it through the pre-load queue.
    early = "document.cookie = 'site_consent=granted; Path=/'; msclkid('consent', 'granted');\n"
    head = '<script src="/cached/queue.js"></script><script src="/cached/early.js"></script>'
    head += tag(snippet.src, consent="pending")
    site = make_site(
        {
            "/cached/landing.html": (HTML, html(head=head)),
            "/cached/queue.js": (JS, QUEUE_JS),
            "/cached/early.js": (JS, early),
            **snippet.files,
        },
        consent_default="denied",
        consent_cookie="site_consent",
    )
    page = context.new_page()
    with page.expect_response(is_capture(site)):
        page.goto(site.url("/cached/landing.html?msclkid=Queued-3"))
    assert [post.json() for post in site.posts()] == [{"msclkid": "Queued-3", "consent": "granted"}]
    assert site.click_seen(context) == {"msclkid": "Queued-3", "source": "cookie"}


# --- 4. A TCF v2.2 consent management platform ---------------------------------------------------------------

# A minimal CMP: stores the TC string in its euconsent-v2 cookie (so the server sees it on later requests, as
# with real CMPs) and answers addEventListener asynchronously, as real CMPs may.
TCF_STUB_JS = """
(function (tcString) {
  document.cookie = 'euconsent-v2=' + tcString + '; Path=/; SameSite=Lax';
  window.__tcfapi = function (command, version, callback) {
    if (command !== 'addEventListener') return;
    setTimeout(function () {
      var data = { tcString: tcString, eventStatus: 'tcloaded', cmpStatus: 'loaded', gdprApplies: true };
      callback(data, true);
    }, 0);
  };
})(document.currentScript.dataset.tc);
"""


@pytest.mark.parametrize(
    ("spec", "captured"),
    [
        pytest.param(TCSpec(), True, id="purpose1-and-vendor1126"),
        pytest.param(TCSpec(vendor_consents=(32, 755)), False, id="without-vendor1126"),
        pytest.param(TCSpec(purposes_consent=(2, 3, 4)), False, id="without-purpose1"),
    ],
)
def test_tcf_string_is_forwarded_and_decided_by_the_server(
    context: BrowserContext, make_site: SiteFactory, snippet: SnippetSource, spec: TCSpec, captured: bool
) -> None:
    tc_string = spec.encode()
    head = f'<script src="/cached/cmp.js" data-tc="{tc_string}"></script>' + tag(snippet.src, consent="pending")
    # An opt-in site: without a yes from the TC string nothing may be stored.
    site = make_site(
        {"/cached/landing.html": (HTML, html(head=head)), "/cached/cmp.js": (JS, TCF_STUB_JS), **snippet.files},
        consent_default="denied",
    )
    page = context.new_page()
    with page.expect_response(is_capture(site)) as answer:
        page.goto(site.url("/cached/landing.html?msclkid=TcfClick-5"))
    assert answer.value.status == 204
    assert [post.json() for post in site.posts()] == [{"msclkid": "TcfClick-5", "tcf": tc_string}]
    expected = {"msclkid": "TcfClick-5", "source": "cookie"} if captured else None
    assert site.click_seen(context) == expected
    assert bool(click_cookies(context)) is captured


# --- 5. Lead forms, page-load and event IDs, a strict Content-Security-Policy --------------------------------

NONCE = "bm9uY2UtZm9yLXRlc3Rz"
CSP = (
    f"default-src 'none'; script-src 'nonce-{NONCE}'; connect-src 'self'; form-action 'self' https://crm.example; "
    "base-uri 'none'; object-src 'none'; require-trusted-types-for 'script'; trusted-types 'none'"
)
VIOLATIONS_JS = """
window.violations = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.violations.push(e.effectiveDirective + ' ' + (e.blockedURI || 'inline'));
});
"""
PAGE_LOAD_ID = "6f0c2f5e-1b7a-4c3e-9d2a-5e8f1a2b3c4d"


def test_lead_form_ids_and_strict_csp(context: BrowserContext, make_site: SiteFactory) -> None:
    head = f'<meta name="msclkid-page-load-id" content="{PAGE_LOAD_ID}">'
    head += f'<script src="/cached/violations.js" nonce="{NONCE}"></script>'
    head += f'<script src="/_msclkid.js" data-consent="granted" async nonce="{NONCE}"></script>'
    body = LEAD_FORM + '<form id="other"><input id="kept" name="msclkid" value="typed-by-visitor"></form>'
    body += "<script>window.inlineRan = true</script>"  # planted: proves the policy is really enforced
    site = make_site(
        {
            "/cached/lead.html": (HTML, html(head=head, body=body), {"Content-Security-Policy": CSP}),
            "/cached/violations.js": (JS, VIOLATIONS_JS),
        }
    )
    page = context.new_page()
    with page.expect_response(is_capture(site)) as answer:
        page.goto(site.url("/cached/lead.html?msclkid=LeadClick-9"))
    assert answer.value.status == 204
    page.wait_for_function("document.getElementById('click').value !== ''")
    assert page.input_value("#click") == "LeadClick-9"
    assert page.input_value("#kept") == "typed-by-visitor"  # never overwritten
    assert page.evaluate("msclkid.pageLoadId") == PAGE_LOAD_ID
    first, second = page.evaluate("[msclkid.eventId('order'), msclkid.eventId('order')]")
    assert first == f"order-{PAGE_LOAD_ID}-1"
    assert second == f"order-{PAGE_LOAD_ID}-2"
    assert page.evaluate("window.inlineRan") is None
    assert page.evaluate("window.violations") == ["script-src-elem inline"]  # only the planted one
    assert site.click_seen(context) == {"msclkid": "LeadClick-9", "source": "cookie"}


def test_forms_rendered_later_are_filled_when_submitted(context: BrowserContext, make_site: SiteFactory) -> None:
    render = """
    document.getElementById('render').addEventListener('click', function () {
      var form = document.createElement('form');
      form.id = 'late'; form.action = '/cached/thanks.html'; form.method = 'get';
      form.innerHTML = '<input name="msclkid" id="late-click"><button id="send">Send</button>';
      document.body.appendChild(form);
    });
    """
    body = '<button id="render">Show form</button><script src="/cached/render.js" defer></script>'
    site = make_site(
        {
            "/cached/spa.html": (HTML, html(head=tag("/_msclkid.js", consent="granted"), body=body)),
            "/cached/render.js": (JS, render),
            "/cached/thanks.html": (HTML, html(body="thanks")),
        }
    )
    page = context.new_page()
    with page.expect_response(is_capture(site)):
        page.goto(site.url("/cached/spa.html?msclkid=LateForm-4"))
    page.click("#render")
    assert page.input_value("#late-click") == ""
    with page.expect_navigation():
        page.click("#send")
    assert page.url == site.url("/cached/thanks.html?msclkid=LateForm-4")


def test_unreachable_endpoint_falls_back_to_a_script_cookie_until_the_server_takes_the_click(
    context: BrowserContext, make_site: SiteFactory, snippet: SnippetSource
) -> None:
    outage = tag(snippet.src, consent="granted", endpoint="/_not_there")  # answers 404: no capture endpoint
    later = tag(snippet.src, consent="granted")
    site = make_site(
        {
            "/cached/landing.html": (HTML, html(head=outage)),
            "/cached/next.html": (HTML, html(head=later)),
            **snippet.files,
        }
    )
    page = context.new_page()
    page.goto(site.url("/cached/landing.html?msclkid=Outage-8"))
    wait_until(lambda: bool(click_cookies(context)))
    [fallback] = click_cookies(context)
    assert (fallback["name"], fallback["value"], fallback["httpOnly"]) == ("msclkid_js", "Outage-8", False)
    assert fallback["sameSite"] == "Lax"
    assert 89 * 86400 < fallback["expires"] - time.time() <= 90 * 86400
    assert site.click_seen(context) is None

    # The next page has no click in its URL: the snippet posts the fallback value, and once the server has
    # set its own cookie the script cookie is deleted.
    with page.expect_response(is_capture(site)):
        page.goto(site.url("/cached/next.html"))
    assert [post.json() for post in site.posts()] == [{"msclkid": "Outage-8", "consent": "granted"}]
    assert site.click_seen(context) == {"msclkid": "Outage-8", "source": "cookie"}
    wait_until(lambda: [c["name"] for c in click_cookies(context)] == ["msclkid"])


# --- 6. Cross-origin posts are refused ---------------------------------------------------------------------

EVIL_FORM_JS = """
// A classic cross-site form post (no CORS preflight), aimed at the victim's endpoint.
var frame = document.createElement('iframe');
frame.name = 'sink';
document.body.appendChild(frame);
var form = document.createElement('form');
form.method = 'post';
form.action = document.currentScript.dataset.endpoint;
form.target = 'sink';
var input = document.createElement('input');
input.name = 'msclkid';
input.value = 'Forged-6';
form.appendChild(input);
document.body.appendChild(form);
form.submit();
"""


def test_cross_origin_posts_are_refused_and_store_nothing(context: BrowserContext, make_site: SiteFactory) -> None:
    victim = make_site({})
    endpoint = victim.url("/_msclkid")
    # The attacker's page embeds the victim's own snippet pointed at the victim's endpoint (fetch, then the
    # sendBeacon fallback after the failed preflight), and also submits a plain cross-site form.
    head = f'<script src="{victim.url("/_msclkid.js")}" data-endpoint="{endpoint}" async></script>'
    body = f'<script src="/cached/evil.js" data-endpoint="{endpoint}"></script>'
    attacker = make_site(
        {"/cached/evil.html": (HTML, html(head=head, body=body)), "/cached/evil.js": (JS, EVIL_FORM_JS)},
        middleware=False,
    )
    page = context.new_page()
    page.goto(attacker.url("/cached/evil.html?msclkid=Forged-6"))
    wait_until(lambda: len(victim.posts()) >= 2)  # the beacon and the form; the snippet's fetch never gets past CORS
    posts = victim.posts()
    assert {post.status for post in posts} == {403}
    assert all(post.set_cookies == () for post in posts)
    assert {post.fetch_site for post in posts} == {"same-site"}
    assert {post.origin for post in posts} == {attacker.base_url}
    assert click_cookies(context) == []
    assert victim.click_seen(context) is None
