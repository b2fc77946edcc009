"""The examples in docs/microsoft.md run (against the emulator)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "microsoft.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block-{n}" for n in range(len(BLOCKS))])
def test_doc_example_runs(code: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = code.replace("/tmp/msads-token.json", str(tmp_path / "token.json"))
    exec(compile(code, str(DOC), "exec"), {})  # noqa: S102 - our own documentation
    out = capsys.readouterr().out
    if "apply_offline_conversions" in code:
        assert "[(True, None, None)]" in out
    if "send_events" in code:
        assert "status='delivered'" in out


def test_doc_has_examples() -> None:
    assert len(BLOCKS) >= 2
