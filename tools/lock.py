"""Write ``requirements.lock``: the runtime dependencies and the extras named in ``EXTRAS``, hashed.

Resolution is pip's own (``pip install --dry-run --report``), so the lock is what ``pip install`` would
install today on this platform.  ``make lock`` runs it; ``make audit`` checks the lock with pip-audit.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = ("postgres", "phone", "django", "asgi", "celery")


def requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in EXTRAS:
        wanted += project["optional-dependencies"][extra]
    return wanted


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed"]
        # Our own interpreter and the requirement strings of our own pyproject.toml.
        subprocess.run([*command, "--report", str(report), *requirements()], check=True)  # noqa: S603
        installs = json.loads(report.read_text())["install"]
    lines = [
        "# Runtime dependencies and the postgres/phone/django/asgi/celery extras, pinned with hashes (S9).",
        "# Regenerate with `make lock`; check with `make audit`.",
    ]
    for item in sorted(installs, key=lambda i: i["metadata"]["name"].lower()):
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        archive = item["download_info"].get("archive_info", {})
        digest = archive.get("hashes", {}).get("sha256") or archive.get("hash", "").partition("=")[2]
        if not digest:
            raise SystemExit(f"no sha256 for {name} {version}")
        lines.append(f"{name.lower()}=={version} \\\n    --hash=sha256:{digest}")
    (ROOT / "requirements.lock").write_text("\n".join(lines) + "\n")
    print(f"requirements.lock: {len(installs)} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
