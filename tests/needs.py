"""Optional test components: a missing one skips locally and fails under ``CI=true`` (CI must run every test)."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

IN_CI = os.environ.get("CI") == "true"


def require_module(name: str, *, why: str) -> ModuleType:
    """Import ``name`` or stop this test module: a failure under ``CI=true``, a skip elsewhere."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        message = f"{name} is not installed ({why}): {exc}"
        if IN_CI:
            pytest.fail(f"{message}; CI=true requires it (pip install -e '.[test]')", pytrace=False)
        pytest.skip(message, allow_module_level=True)
