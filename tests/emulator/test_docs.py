"""The runnable example in docs/emulator.md runs."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "emulator.md"


def test_plain_http_example_runs() -> None:
    text = DOC.read_text()
    marker = text.index("runnable as it stands")
    block = re.search(r"```python\n(.*?)```", text[marker:], re.S)
    assert block is not None
    exec(compile(block.group(1), str(DOC), "exec"), {"__name__": "docs_example"})  # noqa: S102 - our own docs
