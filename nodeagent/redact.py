"""Removal of SAS signatures from any text that may reach a log, an error or a report."""

from __future__ import annotations

import logging
import re

_SIG = re.compile(r"(?i)(sig=)[^&\s\"'<>]*")


def redact(text: str) -> str:
    """Replace the value of every `sig=` query parameter with `REDACTED`."""
    return _SIG.sub(r"\1REDACTED", text)


class RedactingFormatter(logging.Formatter):
    """Log formatter that redacts SAS signatures from the message and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        """Format the record, then redact the whole text."""
        return redact(super().format(record))
