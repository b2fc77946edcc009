"""Coverage-guided fuzzing of the TCF decoder and the consent policy with Atheris.

    pip install atheris
    python fuzz/fuzz_tcf.py fuzz/corpus_tcf -max_total_time=1800

Invariants checked on every input: ``tcf.decode`` returns a ``TCString`` or raises
``TcfDecodeError`` (never anything else); ``microsoft_allowed`` returns a bool and agrees with the
decoded value; ``ConsentPolicy.decide`` / ``decide_reported`` return a granted/denied ``Consent``
and never raise.  ``check_one`` has no Atheris dependency, so the test suite runs it too.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run from a checkout without installing: make the package next to this directory importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from msclkid_middleware.consent import ConsentPolicy
from msclkid_middleware.errors import TcfDecodeError
from msclkid_middleware.tcf import TCString, decode, microsoft_allowed

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
        for policy in _POLICIES:
            for decision in (policy.decide(environ), policy.decide_reported(environ, state=text[:7], tc_string=text)):
                if decision.state not in ("granted", "denied"):
                    raise AssertionError(f"undecided consent {decision!r}")


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


def main(argv: list[str]) -> None:
    import atheris  # type: ignore[import-not-found, import-untyped, unused-ignore]

    atheris.instrument_all()
    atheris.Setup(argv, check_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
