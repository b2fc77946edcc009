"""RequestFacts: what capture reads from a request, and the one Cookie-header parser."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msclkid_middleware.capture.request import RequestFacts, cookie_values, parse_cookies, route_path
from tests.wsgi_helpers import make_environ


def test_facts_from_a_wsgi_environ() -> None:
    environ = make_environ(
        "/mug",
        query="msclkid=x",
        cookie="a=1",
        method="POST",
        headers={"Origin": "https://shop.test", "Sec-GPC": "1", "Sec-Purpose": "prefetch", "User-Agent": "UA"},
        content_type="application/json",
        body=b"{}",
    )
    environ["REMOTE_ADDR"] = "203.0.113.9"
    facts = RequestFacts.from_environ(environ)
    assert (facts.method, facts.path, facts.query, facts.cookie_header) == ("POST", "/mug", "msclkid=x", "a=1")
    assert (facts.scheme, facts.host, facts.client_address) == ("https", "shop.test", "203.0.113.9")
    assert (facts.origin, facts.sec_gpc, facts.purpose, facts.user_agent) == (
        "https://shop.test",
        "1",
        "prefetch",
        "UA",
    )
    assert facts.content_type == "application/json"
    assert facts.content_length == "2"
    assert not facts.cookie_unreadable


def test_host_falls_back_to_the_server_name_and_port() -> None:
    facts = RequestFacts.from_environ({"SERVER_NAME": "shop.test", "SERVER_PORT": "8080"})
    assert facts.host == "shop.test:8080"
    assert RequestFacts.from_environ({}) == RequestFacts()


@pytest.mark.parametrize("value", [b"x=1", ["x=1"], 3])
def test_non_text_values_are_absent_and_an_odd_cookie_header_is_flagged(value: object) -> None:
    facts = RequestFacts.from_environ({"QUERY_STRING": value, "HTTP_COOKIE": value, "HTTP_SEC_GPC": value})
    assert (facts.query, facts.cookie_header, facts.sec_gpc) == ("", "", None)
    assert facts.cookie_unreadable


def scope_of(environ: dict[str, object]) -> dict[str, object]:
    """The ASGI scope a server builds for the same request as ``environ``."""
    headers = [
        (key[5:].replace("_", "-").lower().encode(), str(value).encode("latin-1"))
        for key, value in environ.items()
        if key.startswith("HTTP_")
    ]
    for key, name in (("CONTENT_TYPE", b"content-type"), ("CONTENT_LENGTH", b"content-length")):
        if environ.get(key):
            headers.append((name, str(environ[key]).encode()))
    return {
        "type": "http",
        "method": environ["REQUEST_METHOD"],
        "path": environ["PATH_INFO"],
        "query_string": str(environ["QUERY_STRING"]).encode("latin-1"),
        "scheme": environ["wsgi.url_scheme"],
        "headers": headers,
        "client": (environ["REMOTE_ADDR"], 50000),
        "server": ("shop.test", 443),
    }


def test_facts_from_an_asgi_scope_equal_those_of_the_same_wsgi_request() -> None:
    environ = make_environ(
        "/mug",
        query="msclkid=x&q=caf%C3%A9",
        cookie="a=1; b=2",
        method="POST",
        headers={
            "Origin": "https://shop.test",
            "Sec-GPC": "1",
            "Purpose": "prefetch",
            "User-Agent": "UA",
            "Referer": "https://www.bing.com/",
            "Sec-Fetch-Site": "same-origin",
            "Sec-Fetch-Dest": "document",
            "HX-Request": "true",
            "If-None-Match": '"abc"',
        },
        content_type="application/json",
        body=b"{}",
    )
    environ["REMOTE_ADDR"] = "203.0.113.9"
    assert RequestFacts.from_scope(scope_of(environ)) == RequestFacts.from_environ(environ)


def test_scope_repeated_headers_are_joined_as_wsgi_servers_join_them() -> None:
    scope = {
        "headers": [
            (b"cookie", b"a=1"),
            (b"x-other", b"ignored"),
            (b"cookie", b"b=2"),
            (b"sec-gpc", b"1"),
            (b"sec-gpc", b"0"),
            (b"purpose", b"prefetch"),
            (b"sec-purpose", b"prerender"),
        ]
    }
    facts = RequestFacts.from_scope(scope)
    assert facts.cookie_header == "a=1; b=2"
    assert facts.sec_gpc == "1,0"
    assert facts.purpose == "prerender"  # Sec-Purpose first, as from an environ


def test_scope_defaults_and_server_fallback() -> None:
    assert RequestFacts.from_scope({}) == RequestFacts()
    assert RequestFacts.from_scope({"server": ("10.0.0.2", 8000)}).host == "10.0.0.2:8000"
    assert RequestFacts.from_scope({"server": ("/run/app.sock", None)}).host == "/run/app.sock"
    assert RequestFacts.from_scope({"headers": [(b"host", b"shop.test")], "server": ("x", 1)}).host == "shop.test"


def test_scope_with_text_header_values_raises_for_the_adapter_to_catch() -> None:
    with pytest.raises(AttributeError):
        RequestFacts.from_scope({"headers": [(b"cookie", "not bytes")]})


@pytest.mark.parametrize(
    ("path", "root", "expected"),
    [
        pytest.param("/shop/_msclkid", "/shop", "/_msclkid", id="path-holds-root"),
        pytest.param("/_msclkid", "/shop", "/_msclkid", id="path-without-root"),
        pytest.param("/shopping", "/shop", "/shopping", id="not-a-segment"),
        pytest.param("/shop", "/shop", "", id="the-root-itself"),
        pytest.param("/a", "", "/a", id="no-root"),
    ],
)
def test_route_path_is_the_path_below_the_root_path(path: str, root: str, expected: str) -> None:
    assert route_path({"path": path, "root_path": root}) == expected
    assert RequestFacts.from_scope({"path": path, "root_path": root}).path == (expected or "/")


def test_facts_are_frozen() -> None:
    with pytest.raises(AttributeError):
        RequestFacts().path = "/x"  # type: ignore[misc]


def test_parse_cookies_first_value_wins_and_ours_are_all_kept() -> None:
    cookies, ours = parse_cookies('a=1; b="two"; a=3; junk; ours=x; ours=y', "ours")
    assert cookies == {"a": "1", "b": "two", "ours": "x"}
    assert ours == ["x", "y"]
    assert parse_cookies("") == ({}, [])


@settings(max_examples=2000)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(list('ab;= "\tx\u3000\xa0\x85\x1c~\x7f')),
            st.sampled_from(["ns", "ns=", "; ns=", ' "v"', "  ", "x ns=1"]),
        ),
        max_size=30,
    ).map("".join),
    st.sampled_from(["ns", "n", "s", "a"]),
)
def test_cookie_values_finds_what_parse_cookies_finds(header: str, name: str) -> None:
    assert cookie_values(header, name) == parse_cookies(header, name)[1]
    assert cookie_values(header, name, first=True) == parse_cookies(header, name)[1][:1]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("a=1; ours=x; b=2", ["x"]),
        ("ours=x", ["x"]),
        (' ours="x"', ["x"]),
        ("a=1;ours=x", ["x"]),
        ("a=1; x ours=y", []),
        ("a=1;  ours=y", ["y"]),
        ("a=1; ours =y", ["y"]),
        ("xours=1; ours=2; ours=3", ["2", "3"]),
        ("a=ours=1", []),
        ("ours", []),
        # The two-partition fast path: the name inside our own value, before it, or again after it.
        ("a=1; ours=xoursy; b=2", ["xoursy"]),
        ("ours =a; ours=b", ["a", "b"]),
        ("a=ours; ours=b", ["b"]),
        (" ours=x", ["x"]),
        ("a=1; ours=x; ours=y", ["x", "y"]),
        ('a=1; ours= "q" ', ["q"]),
        ('ours="', ['"']),
        ("ours=", [""]),
    ],
)
def test_cookie_values_cases(header: str, expected: list[str]) -> None:
    assert cookie_values(header, "ours") == expected == parse_cookies(header, "ours")[1]


def test_the_fields_read_up_front_sit_where_the_hot_path_reads_them_by_index() -> None:
    # Capture.decide and ConsentPolicy.decide read these by position (no property call per request).
    facts = RequestFacts(query="q=1", cookie_header="a=1", sec_gpc="1", cookie_unreadable=True)
    assert (facts[0], facts[1], facts[2], facts[3]) == (facts.query, facts.cookie_header, facts.sec_gpc, True)
    assert facts.headers is facts[4]
