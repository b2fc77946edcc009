"""The README's Flask quick start runs as written; the README keeps exactly its two set-up commands."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

from flask import Flask
from flask_helpers import CLICK

from msclkid_middleware.flask import Msclkid

ROOT = Path(__file__).resolve().parents[3]


def test_readme_flask_quick_start_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme.index("## WSGI quick start") < readme.index("## Flask quick start")
    block = re.search(r"## Flask quick start\s+```python\n(.*?)```", readme, re.S)
    assert block is not None
    code = block.group(1)
    assert len([line for line in code.splitlines() if line.strip()]) == 3
    app = Flask("readme", instance_path=str(tmp_path))
    app.config["SECRET_KEY"] = "readme-secret"
    import_line, init_line, record_line = [line for line in code.splitlines() if line.strip()]
    namespace: dict[str, object] = {"app": app}
    exec(compile(import_line + "\n" + init_line, "README.md", "exec"), namespace)  # noqa: S102 - our own docs

    @app.post("/checkout")
    def checkout() -> str:
        # The third line is what a checkout view does.
        scope = {**namespace, "order": SimpleNamespace(id="ord_readme", total=42.0), "now": datetime.now(UTC)}
        exec(compile(record_line, "README.md", "exec"), scope)  # noqa: S102 - our own documentation
        return "ok"

    try:
        assert app.test_client().post(f"/checkout?msclkid={CLICK}").status_code == 200
        row = Msclkid.state(app).tracker.store.find("ord_readme")[0]
        assert row.state == "pending"
        assert row.payload["MicrosoftClickId"] == CLICK
        assert row.payload["ConversionName"] == "Purchase"
        assert row.payload["ConversionValue"] == 42.0
    finally:
        Msclkid.state(app).close()


def test_readme_keeps_exactly_the_two_set_up_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Set-up\s+```sh\n(.*?)```", readme, re.S)
    assert block is not None
    assert [line.split()[:2] for line in block.group(1).splitlines() if line.strip()] == [
        ["make", "demo"],
        ["make", "test"],
    ]
