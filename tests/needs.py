"""Optional test components: a missing one skips locally and fails under ``CI=true`` (CI must run every test)."""

from __future__ import annotations

import importlib
import os
import warnings
from types import ModuleType

import pytest

IN_CI = os.environ.get("CI") == "true"


def require_module(name: str, *, why: str) -> ModuleType:
    """Import ``name`` or stop this test module: a failure under ``CI=true``, a skip elsewhere."""
    try:
        # As pytest.importorskip does: a third-party import's own deprecation noise is not this suite's concern.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    except ImportError as exc:
        message = f"{name} is not installed ({why}): {exc}"
        if IN_CI:
            pytest.fail(f"{message}; CI=true requires it (pip install -e '.[test]')", pytrace=False)
        pytest.skip(message, allow_module_level=True)
