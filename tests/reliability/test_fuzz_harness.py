"""The Atheris harnesses (``make fuzz``) run here without Atheris: corpus plus seeded random inputs.

Each harness's ``check_one`` holds the invariants (see ``fuzz/fuzz_cookie.py``, ``fuzz/fuzz_tcf.py``);
this runs ``MSCLKID_SOAK_EXAMPLES`` inputs through each in-process, and the command-line replay once,
so the harnesses cannot rot while nobody runs the fuzzer.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from types import ModuleType

import pytest

from .conftest import EXAMPLES, REPO

pytestmark = pytest.mark.reliability

HARNESSES = ("fuzz_cookie", "fuzz_tcf")


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"reliability_{name}", REPO / "fuzz" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", HARNESSES)
def test_harness_replays_corpus_and_random_inputs(name: str) -> None:
    harness = _load(name)
    assert harness.CORPUS.is_dir()
    assert any(harness.CORPUS.iterdir())
    assert harness.replay(EXAMPLES, seed=1) >= EXAMPLES


@pytest.mark.parametrize("name", HARNESSES)
def test_harness_command_line_replay(name: str) -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "fuzz" / f"{name}.py"), "--replay", "50"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "0 failures" in out.stdout


def test_cookie_harness_catches_a_forgery(monkeypatch: pytest.MonkeyPatch) -> None:
    # The invariant has teeth: a decoder that accepted an edited token would fail it.
    harness = _load("fuzz_cookie")
    genuine = harness.SEEDS[0]
    harness._check_decode(genuine)
    edited = genuine[:-1] + ("A" if genuine[-1] != "A" else "Q")
    assert harness._CODEC.decode(edited) is None
    real = harness._CODEC

    class Lenient:  # a decoder gone wrong: it accepts anything as the genuine token
        def decode(self, token: str) -> object:
            return real.decode(genuine)

        def encode(self, msclkid: str, captured_at: int) -> str:
            return str(real.encode(msclkid, captured_at))

    monkeypatch.setattr(harness, "_CODEC", Lenient())
    with pytest.raises(AssertionError, match="non-canonical"):
        harness._check_decode(edited)
