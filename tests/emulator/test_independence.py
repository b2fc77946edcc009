"""The emulator validates on its own: it must not load the toolkit's models, identity or Microsoft clients."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = (
    "msclkid_middleware.conversions",
    "msclkid_middleware.microsoft",
)


def test_importing_and_serving_loads_no_client_side_module() -> None:
    # What matters is what the emulator adds on top.
    code = (
        "import sys, requests, msclkid_middleware\n"
        "before = set(sys.modules)\n"
        "from msclkid_middleware.testing import run_emulator\n"
        "with run_emulator() as ms:\n"
        "    requests.get(ms.url + '/', timeout=5)\n"
        f"print(','.join(m for m in set(sys.modules) - before if m.startswith({FORBIDDEN!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert out.stdout.strip() == ""


def test_no_emulator_module_imports_them() -> None:
    for path in [*(REPO / "msclkid_middleware" / "emulator").glob("*.py"), REPO / "msclkid_middleware" / "testing.py"]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                names = [module, *(f"{module}.{a.name}" for a in node.names)]
                assert not any(
                    n.lstrip(".").split(".")[-1] in ("models", "identity", "microsoft")
                    and (node.level > 0 or n.startswith("msclkid_middleware"))
                    for n in names
                ), path
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith(FORBIDDEN) for a in node.names), path
