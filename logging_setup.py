"""Log hygiene: tokens travel in `?token=` query strings, and uvicorn's access log prints full paths."""

from __future__ import annotations

import logging
import re

_TOKEN = re.compile(r"([?&](?:token|cursor)=)[^&\s\"]+")


class RedactTokens(logging.Filter):
    """Replace the value of `token=` (and `cursor=`) query parameters in a log record with `***`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(_TOKEN.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str) and "=" in record.msg:
            record.msg = _TOKEN.sub(r"\1***", record.msg)
        return True


def install() -> None:
    """Idempotent: attach the filter to the loggers that print request paths."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
