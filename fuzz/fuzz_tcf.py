"""Coverage-guided fuzzing of the TCF decoder and the consent policy with Atheris.

    make fuzz                                  # both harnesses, FUZZ_TIME seconds each
    python fuzz/fuzz_tcf.py fuzz/corpus_tcf -max_total_time=1800
    python fuzz/fuzz_tcf.py --replay 10000     # no Atheris: the corpus plus seeded random inputs

Invariants checked on every input: ``tcf.decode`` returns a ``TCString`` or raises
``TcfDecodeError`` (never anything else); ``microsoft_allowed`` returns a bool and agrees with the
decoded value, and never grants for a global-scope or future-dated string; ``ConsentPolicy.decide`` /
``decide_reported`` return a granted/denied ``Consent``, never raise, and the snippet's report never
widens a refusal the server saw (GPC, the consent cookie, the TC string).  ``check_one`` has no Atheris
dependency, so the test suite runs it too.
"""

from __future__ import annotations

import random
import sys
from datetime import UTC, datetime
from pathlib import Path

# Run from a checkout without installing: make the package next to this directory importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz._harness import run
from msclkid_middleware.capture.consent import ConsentPolicy
from msclkid_middleware.capture.tcf import CREATED_SKEW, TCString, decode, microsoft_allowed
from msclkid_middleware.errors import TcfDecodeError

_POLICIES = (
    ConsentPolicy(),
    ConsentPolicy(default="denied", cookie_name="cc", honor_gpc=False),
)


def check_one(data: bytes) -> None:
    """One fuzz input: the first byte picks what to feed, the rest is the payload."""
    if not data:
        return
    mode, payload = data[0] % 4, data[1:]
    if mode == 0:
        _check_decode(payload)
    elif mode == 1:
        _check_decode(payload.decode("utf-8", "surrogateescape"))
    elif mode == 2:
        _check_decode(payload.decode("latin-1"))
    else:
        text = payload.decode("latin-1")
        environ = {"HTTP_COOKIE": f"cc={text[:8]}; euconsent-v2={text}", "HTTP_SEC_GPC": text[:1]}
        for index, policy in enumerate(_POLICIES):
            server = policy.decide(environ)
            for state in (text[:7], "granted"):
                reported = policy.decide_reported(environ, state=state, tc_string=text)
                for decision in (server, reported):
                    if decision.state not in ("granted", "denied"):
                        raise AssertionError(f"undecided consent {decision!r}")
                # Issue 19: the snippet narrows, never widens a refusal the server saw.
                if not server.granted and server.basis in ("gpc", "cookie", "tcf") and reported.granted:
                    raise AssertionError(f"the snippet's report widened a refusal ({server.basis})")
            if index == 0 and text[:1] == "1" and server.granted:
                raise AssertionError("granted despite Sec-GPC: 1")


def _check_decode(value: str | bytes) -> None:
    try:
        tc = decode(value)
    except TcfDecodeError:
        if microsoft_allowed(value) is not False:
            raise AssertionError("an undecodable TC string allowed Microsoft") from None
        return
    if not isinstance(tc, TCString) or tc.version != 2:
        raise AssertionError("decode returned something other than a version 2 TCString")
    if microsoft_allowed(value) is not tc.vendor_allowed():
        raise AssertionError("microsoft_allowed disagrees with the decoded string")
    if tc.vendor_allowed() and not tc.is_service_specific:
        raise AssertionError("a global-scope string granted (TCF v2.2 has no global scope)")
    if tc.vendor_allowed() and tc.created > datetime.now(UTC) + CREATED_SKEW:
        raise AssertionError("a string created in the future granted")


CORPUS = Path(__file__).resolve().parent / "corpus_tcf"
_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."


def replay(count: int, seed: int = 0) -> int:
    """Without Atheris: every corpus file, its truncations and bit flips, then ``count`` random inputs."""
    inputs = []
    rng = random.Random(seed)  # noqa: S311 - test input, not security
    for path in sorted(CORPUS.iterdir()) if CORPUS.is_dir() else []:
        data = path.read_bytes()
        inputs.append(data)
        inputs.extend(data[:cut] for cut in range(1, len(data), 7))
        for _ in range(8):
            flipped = bytearray(data)
            i = rng.randrange(1, len(flipped)) if len(flipped) > 1 else 0
            flipped[i] = rng.choice(_B64)
            inputs.append(bytes(flipped))
    for _ in range(count):
        size = rng.choice((2, 10, 40, 80, 300))
        alphabet = _B64 if rng.random() < 0.7 else bytes(range(256))
        inputs.append(bytes([rng.randrange(256)]) + bytes(rng.choice(alphabet) for _ in range(size)))
    for data in inputs:
        check_one(data)
    return len(inputs)


def main(argv: list[str]) -> None:
    run("fuzz_tcf", argv, check_one, replay, ("msclkid_middleware",))


if __name__ == "__main__":
    main(sys.argv)
