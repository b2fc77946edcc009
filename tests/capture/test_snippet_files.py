"""The snippet files: size budget, the minified copy in sync with the source, CSP-safe code, shipped in the wheel.

Behaviour is proven in real Chromium by ``tests/browser/test_snippet.py``, which runs every case against both
the minified file and the readable source.
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "msclkid_middleware" / "static"
SOURCE = STATIC / "msclkid.js"
MINIFIED = STATIC / "msclkid.min.js"
BUDGET = 1024  # bytes, minified and gzipped (issue 3)
# The exact minifier and options that produced msclkid.min.js (also in the header of msclkid.js).
TERSER = "terser@5.51.4"
TERSER_ARGS = ["--ecma", "2017", "-c", "passes=3,unsafe", "-m"]


def tokens(js: str) -> tuple[list[str], list[str], list[str]]:
    """A small JavaScript lexer, enough for our snippet: string literals, regex literals and ``.property``
    names, with comments skipped and regex/division told apart by the previous significant character."""
    strings: list[str] = []
    regexes: list[str] = []
    properties: list[str] = []
    i, n, previous = 0, len(js), "("
    while i < n:
        char = js[i]
        if js.startswith("//", i):
            i = js.index("\n", i)
        elif js.startswith("/*", i):
            i = js.index("*/", i) + 2
        elif char in "'\"`":
            end = i + 1
            while js[end] != char:
                end += 2 if js[end] == "\\" else 1
            strings.append(js[i + 1 : end])
            i, previous = end + 1, "a"
        elif char == "/" and previous in "(,=:[!&|?{};>":
            end, in_class = i + 1, False
            while in_class or js[end] != "/":
                in_class = (in_class or js[end] == "[") and js[end] != "]"
                end += 2 if js[end] == "\\" else 1
            flags = re.match(r"[a-z]*", js[end + 1 :])
            assert flags is not None
            regexes.append(js[i : end + 1 + flags.end()])
            i, previous = end + 1 + flags.end(), "a"
        elif js.startswith("...", i):  # spread: an expression follows
            i, previous = i + 3, ","
        elif char == "." and (match := re.match(r"\.([A-Za-z_$][\w$]*)", js[i:])):
            properties.append(match.group(1))
            i += match.end()
            previous = "a"
        else:
            if not char.isspace():
                previous = char
            i += 1
    return strings, regexes, properties


def test_minified_snippet_fits_the_budget() -> None:
    size = len(gzip.compress(MINIFIED.read_bytes(), compresslevel=9))
    assert size <= BUDGET, f"msclkid.min.js is {size} bytes gzipped, over the {BUDGET}-byte budget"


def test_minified_snippet_is_generated_from_the_source() -> None:
    """Every literal, regex and property name of the source is in the minified file (a missed regeneration
    after editing a string, pattern or API name fails here); when the pinned terser is in the local npx cache
    the file is regenerated and compared byte for byte."""
    source, minified = SOURCE.read_text(), MINIFIED.read_text()
    strings, regexes, properties = tokens(source)
    assert {"msclkid_js=", "/_msclkid", "meta[name=msclkid-page-load-id]"} <= set(strings)
    assert "/[?&#]msclkid=([^&#]*)/gi" in regexes
    assert {"pageLoadId", "eventId", "clickId"} <= set(properties)
    missing = [s for s in strings if s not in minified] + [r for r in regexes if r not in minified]
    missing += [p for p in properties if f".{p}" not in minified]
    assert missing == [], f"msclkid.min.js is stale (regenerate it, see the header of msclkid.js): {missing}"

    npx = shutil.which("npx")
    if npx is None:
        return
    # --no: never download here; use the pinned terser only when it is already in the npx cache.
    result = subprocess.run(
        [npx, "--no", f"--package={TERSER}", "--", "terser", str(SOURCE), *TERSER_ARGS],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode == 0:
        assert result.stdout.rstrip("\n") == minified.rstrip("\n"), (
            "msclkid.min.js differs from a fresh terser run: regenerate it"
        )


def test_lexer_tells_regex_from_division_and_skips_comments() -> None:
    strings, regexes, properties = tokens("/* 'no' */ var a = b / c / d; // 'nor'\nx = /'[/]'/g.test('s\\'q', ...r);")
    assert strings == ["s\\'q"]
    assert regexes == ["/'[/]'/g"]
    assert properties == ["test"]


@pytest.mark.parametrize("path", [SOURCE, MINIFIED], ids=["source", "min"])
def test_snippet_needs_no_unsafe_csp_source(path: Path) -> None:
    """No eval-like code and no markup injection: the snippet runs under script-src 'nonce-...' alone."""
    code = path.read_text()
    for forbidden in (
        "eval(",
        "new Function",
        "Function(",
        "setTimeout('",
        'setTimeout("',
        "innerHTML",
        "document.write",
    ):
        assert forbidden not in code, forbidden


def test_snippet_is_a_package_resource() -> None:
    """Found by importlib.resources from the checkout (editable installs), where the middleware loads it."""
    files = resources.files("msclkid_middleware") / "static"
    assert (files / "msclkid.min.js").read_bytes() == MINIFIED.read_bytes()
    assert (files / "msclkid.js").read_bytes() == SOURCE.read_bytes()
    top_level = ROOT / "static"
    assert top_level.is_symlink()
    assert top_level.resolve() == STATIC.resolve()


def test_wheel_ships_both_snippet_files(tmp_path: Path) -> None:
    # --no-isolation: build with the hatchling already installed (no download); the checkout stays untouched.
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    [wheel] = tmp_path.glob("msclkid_middleware-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("msclkid_middleware/static/msclkid.min.js") == MINIFIED.read_bytes()
        assert archive.read("msclkid_middleware/static/msclkid.js") == SOURCE.read_bytes()
        # The UET ID-sync script (issue 13) ships beside the snippet.
        assert archive.read("msclkid_middleware/static/msclkid-sync.js") == (STATIC / "msclkid-sync.js").read_bytes()
