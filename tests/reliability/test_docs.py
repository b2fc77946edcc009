"""docs/reliability.md stays true to the code: every fault point and the durability modes are documented."""

from __future__ import annotations

import pytest

from msclkid_middleware import faultpoints

from .conftest import REPO

pytestmark = pytest.mark.reliability

DOC = (REPO / "docs" / "reliability.md").read_text(encoding="utf-8")


def test_every_fault_point_is_documented() -> None:
    for point in faultpoints.POINTS:
        assert f"`{point}`" in DOC


def test_durability_modes_and_reproduction_are_documented() -> None:
    for text in ('durability="crash"', 'durability="power_loss"', "synchronous=FULL", "make soak", "make fuzz"):
        assert text in DOC
    assert "FIGURES_PLACEHOLDER" not in DOC  # the figures were measured and written in
