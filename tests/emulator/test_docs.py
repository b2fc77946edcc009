"""The runnable example in docs/emulator.md runs."""

from __future__ import annotations

import re
from pathlib import Path

from msclkid_middleware.emulator import load_config_file

DOC = Path(__file__).resolve().parents[2] / "docs" / "emulator.md"


def test_plain_http_example_runs() -> None:
    text = DOC.read_text()
    marker = text.index("runnable as it stands")
    block = re.search(r"```python\n(.*?)```", text[marker:], re.S)
    assert block is not None
    exec(compile(block.group(1), str(DOC), "exec"), {"__name__": "docs_example"})  # noqa: S102 - our own docs


def test_configuration_example_is_a_valid_config(tmp_path: Path) -> None:
    text = DOC.read_text()
    block = re.search(r"```toml\n(.*?)```", text, re.S)
    assert block is not None
    path = tmp_path / "emulator.toml"
    path.write_text(block.group(1))
    config = load_config_file(path)
    assert config.goals[0]["name"] == "Purchase"
    assert config.faults[0]["kind"] == "throttle"
    assert config.clicks[0]["account_id"] == "2000001"
