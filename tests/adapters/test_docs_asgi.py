"""The Python examples in docs/asgi.md run as written (under FastAPI and Starlette's TestClient)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from starlette.testclient import TestClient

from msclkid_middleware import ConversionTracker
from msclkid_middleware.capture.cookie import ClickCookie

DOC = Path(__file__).resolve().parents[2] / "docs" / "asgi.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_asgi_doc_quick_start_runs() -> None:
    namespace: dict[str, Any] = {}
    exec(compile(python_blocks()[0], str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    client = TestClient(namespace["app"], base_url="https://shop.example")
    # The documented policy is opt-in (default="denied"): nothing stored, no click for the handler.
    response = client.get("/product?msclkid=Example-123")
    assert response.json() == {"click": None, "consent": "denied"}
    assert "set-cookie" not in response.headers


def test_asgi_doc_settings_example_configures_the_middleware(monkeypatch: Any) -> None:
    monkeypatch.setenv("MSCLKID_SECRET_KEYS", "doc-example-key")
    monkeypatch.setenv("MSCLKID_CONSENT_DEFAULT", "granted")
    namespace: dict[str, Any] = {}
    blocks = python_blocks()
    exec(compile(blocks[0], str(DOC), "exec"), namespace)  # noqa: S102
    namespace["app"].user_middleware.clear()  # the quick start's own middleware: replaced by the settings one
    exec(compile(blocks[1].split("# or:")[0], str(DOC), "exec"), namespace)  # noqa: S102
    response = TestClient(namespace["app"], base_url="https://shop.example").get("/product?msclkid=Example-123")
    assert response.json() == {"click": "Example-123", "consent": "granted"}
    assert response.headers["set-cookie"].startswith("__Host-msclkid=1.Example-123.")


def test_readme_asgi_quick_start_runs(tmp_path: Path) -> None:
    readme = (DOC.parents[1] / "README.md").read_text()
    block = re.search(r"## ASGI quick start[^\n]*\s+```python\n(.*?)```", readme, re.S)
    assert block is not None
    tracker = ConversionTracker(store_url=f"sqlite:///{tmp_path / 'o.sqlite3'}", microsoft=False, uet=False)

    async def place_order(request: Any) -> SimpleNamespace:
        return SimpleNamespace(id="ord_readme_asgi", total=42.0)

    namespace: dict[str, Any] = {"tracker": tracker, "place_order": place_order, "now": datetime.now(UTC)}
    try:
        exec(compile(block.group(1), "README.md", "exec"), namespace)  # noqa: S102 - our own documentation
        client = TestClient(namespace["app"], base_url="https://shop.example")
        client.cookies.set("__Host-msclkid", ClickCookie(["change-me"]).encode("Example-123", time.time()))
        assert client.post("/checkout").status_code == 200
        (row,) = tracker.store.find("ord_readme_asgi", kind="offline")
        assert row.payload["MicrosoftClickId"] == "Example-123"
    finally:
        tracker.close()
