from __future__ import annotations

from collections.abc import Iterator

import pytest

from msclkid_middleware.testing import EmulatorHandle, run_emulator


@pytest.fixture
def ms() -> Iterator[EmulatorHandle]:
    with run_emulator() as handle:
        yield handle
