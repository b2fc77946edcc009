from __future__ import annotations

import logging

import pytest

from msclkid_middleware.redact import RedactingFilter, shorten


def test_secret_is_masked_raw_and_url_encoded(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("msclkid_middleware.test_redact")
    filt = RedactingFilter(["s3cr3t/+=value"])
    logger.addFilter(filt)
    try:
        with caplog.at_level(logging.DEBUG, logger=logger.name):
            logger.debug("raw %s", "s3cr3t/+=value")
            logger.debug("encoded s3cr3t%2F%2B%3Dvalue")
            try:
                raise RuntimeError("boom s3cr3t/+=value")
            except RuntimeError:
                logger.exception("failed")
    finally:
        logger.removeFilter(filt)
    text = caplog.text
    assert "s3cr3t" not in text
    assert text.count("<redacted>") >= 3


def test_shorten() -> None:
    assert shorten("f894f652ea334e739002f7167ab8f8e3") == "f894f6…"
    assert shorten(None) == "-"
    assert shorten("abc") == "abc"
