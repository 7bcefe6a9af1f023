"""The logfmt lines `eggpool serve` writes to stderr."""

from __future__ import annotations

import io
import logging
import re

import pytest

from eggpool.shells._logging import configure_logging


@pytest.fixture(autouse=True)
def restore_logger() -> object:
    logger = logging.getLogger("eggpool")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


def test_a_record_is_one_logfmt_line_with_its_fields_quoted_when_needed() -> None:
    out = io.StringIO()
    configure_logging("INFO", out)
    logger = logging.getLogger("eggpool")
    fields = (("request", "r-1"), ("error", 'said "no" = bad'), ("empty", ""))
    logger.info("request finalized", extra={"fields": fields})
    logger.debug("not shown at INFO")
    (line,) = out.getvalue().splitlines()
    assert re.fullmatch(
        r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=info msg="request finalized" '
        r'request=r-1 error="said \\"no\\" = bad" empty=""',
        line,
    )


def test_an_exception_stays_on_one_line() -> None:
    out = io.StringIO()
    configure_logging("ERROR", out)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("eggpool").exception("failed")
    (line,) = out.getvalue().splitlines()
    assert "level=error msg=failed error=" in line
    assert "ValueError: boom" in line
