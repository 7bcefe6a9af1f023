"""Logs for people and for `grep`: one logfmt line per record on stderr.

    2026-11-27T18:01:02.345Z level=info msg="request finalized" request=r-1 outcome=completed

Fields come from the core's `Log` effects (`extra={"fields": ...}`). Values
are quoted when they hold spaces, quotes or `=`; nothing here ever sees a
request body or a credential, because the core never puts one in a `Log`.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from typing import TextIO

__all__ = ["LogfmtFormatter", "configure_logging"]


def _quote(value: str) -> str:
    if value and not any(c in value for c in ' "=\\\n\t'):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [
            f"{stamp}.{int(record.msecs):03d}Z",
            f"level={record.levelname.lower()}",
            f"msg={_quote(record.getMessage())}",
        ]
        fields: Iterable[tuple[str, str]] = getattr(record, "fields", ())
        parts.extend(f"{key}={_quote(str(value))}" for key, value in fields)
        if record.exc_info:
            parts.append(f"error={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


def configure_logging(level: str, stream: TextIO | None = None) -> None:
    """Send the `eggpool` logger's records at `level` and above to `stream` (stderr)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    logger = logging.getLogger("eggpool")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
