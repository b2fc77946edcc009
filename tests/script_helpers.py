"""Running a test's Python script in a fresh interpreter: for what may crash the interpreter, or needs a clean one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_script_ok(script: str, *args: str, timeout: float) -> None:
    """Run ``script`` with ``args`` (``sys.argv[1:]``); it must exit 0 having printed exactly ``ok``."""
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
