"""The Python examples in docs/wsgi.md run as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from werkzeug.test import Client

DOC = Path(__file__).resolve().parents[2] / "docs" / "wsgi.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_wsgi_doc_examples_run(tmp_path: Path) -> None:
    blocks = python_blocks()
    assert len(blocks) >= 2
    namespace: dict[str, Any] = {}
    exec(compile(blocks[0], str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    client = Client(namespace["application"])
    response = client.get("/?msclkid=Example-123", base_url="https://shop.example")
    # The documented policy is opt-in (default="denied"): nothing stored until the consent cookie says so.
    assert response.get_data(as_text=True) == "no click (denied)"
    assert "Set-Cookie" not in response.headers
    client.set_cookie("site_consent", "granted", domain="shop.example")
    response = client.get("/?msclkid=Example-123", base_url="https://shop.example")
    assert response.get_data(as_text=True) == "Example-123 (granted)"
    assert response.headers["Set-Cookie"].startswith("__Host-msclkid=1.Example-123.")

    profile_block = blocks[1].replace("/var/lib/shop/msclkid-profiles.sqlite3", str(tmp_path / "p.sqlite3"))
    exec(compile(profile_block, str(DOC), "exec"), namespace)  # noqa: S102
    client = Client(namespace["application"])
    response = client.get(
        "/?msclkid=Example-123", base_url="https://shop.example", environ_overrides={"REMOTE_USER": "u1"}
    )
    assert response.get_data(as_text=True) == "Example-123 (granted)"
    other_device = Client(namespace["application"])
    response = other_device.get("/", base_url="https://shop.example", environ_overrides={"REMOTE_USER": "u1"})
    assert response.get_data(as_text=True) == "Example-123 (granted)"
