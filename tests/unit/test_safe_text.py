"""Log lines carry attacker text: each stays one bounded line whatever the text holds."""

from __future__ import annotations

import io
import logging

from stream_processor.safe_text import MAX_LOG_CHARS, install_log_filter, one_line


def test_a_log_line_with_event_text_stays_one_bounded_line() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    install_log_filter(handler)
    logger = logging.getLogger("test.safe_text")
    logger.addHandler(handler)
    try:
        forged = "x\n2026-12-02 07:00:00 INFO stream_processor: all good\r\u202e" + "A" * 20_000
        logger.warning("rule failed: %s", forged)
    finally:
        logger.removeHandler(handler)

    [line] = stream.getvalue().splitlines()
    assert "\\n2026-12-02" in line and "[U+202E]" in line
    assert len(line) < MAX_LOG_CHARS + 200
    assert "more characters]" in line


def test_one_line_keeps_ordinary_text_as_it_is() -> None:
    assert one_line("CreateAccessKey by arn:aws:iam::1:user/ü") == "CreateAccessKey by arn:aws:iam::1:user/ü"
