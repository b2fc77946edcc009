"""What both Atheris harnesses share: the command line (``--replay N`` or Atheris) and focused instrumentation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _instrument(atheris: Any, prefixes: tuple[str, ...]) -> None:
    """Coverage for the code under test only: ``instrument_all`` would patch every loaded function
    (the standard library included), which takes minutes on a small machine."""
    import gc
    import types

    for obj in gc.get_objects():
        if isinstance(obj, types.FunctionType) and (obj.__module__ or "").startswith(prefixes):
            try:
                atheris.instrument_func(obj)
            except Exception:  # noqa: S112 - an odd function stays uninstrumented; the run goes on
                continue


def run(
    name: str,
    argv: list[str],
    check_one: Callable[[bytes], None],
    replay: Callable[[int], int],
    prefixes: tuple[str, ...],
) -> None:
    """``--replay [N]``: corpus plus N seeded inputs without Atheris; otherwise Atheris with libFuzzer's arguments."""
    if len(argv) > 1 and argv[1] == "--replay":
        ran = replay(int(argv[2]) if len(argv) > 2 else 10_000)
        print(f"{name}: replayed {ran} inputs, 0 failures")
        return
    import atheris  # type: ignore[import-not-found, import-untyped, unused-ignore]

    _instrument(atheris, prefixes)
    atheris.Setup(argv, check_one)
    atheris.Fuzz()
