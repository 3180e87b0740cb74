"""Times, durations and ETags in the forms Azure Batch puts on the wire."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime

UNLIMITED_DURATION = "P10675199DT2H48M5.4775807S"
"""How the service shows an unlimited duration (.NET TimeSpan.MaxValue)."""

_DOTNET_EPOCH_TICKS = 621355968000000000
_DURATION = re.compile(
    r"^P(?:(?P<days>\d+(?:\.\d+)?)D)?(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def now() -> datetime:
    """The current UTC time."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with microseconds and a `Z`, as bodies carry it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    """Parse a stored ISO-8601 timestamp."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def http_date(moment: datetime) -> str:
    """RFC-1123, as headers carry it."""
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def parse_http_date(text: str) -> datetime | None:
    """Parse an RFC-1123 header date; None when malformed."""
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def new_etag() -> str:
    """A fresh ETag in the service's `0x8D...` form (hex of .NET ticks)."""
    return f"0x{time.time_ns() // 100 + _DOTNET_EPOCH_TICKS:X}"


def parse_duration(text: str) -> timedelta | None:
    """Parse an ISO-8601 duration (days, hours, minutes, seconds); None when malformed."""
    match = _DURATION.match(text.strip()) if text else None
    if match is None or text.strip() in ("P", "PT"):
        return None
    parts = {name: float(value) for name, value in match.groupdict().items() if value}
    try:
        return timedelta(**parts)
    except OverflowError:
        return timedelta.max


def deadline_ms(start: datetime, limit: str | None) -> float | None:
    """Epoch milliseconds of `start` plus the ISO-8601 duration `limit`; None without a limit or past year 9999.

    The service shows an unlimited duration as .NET's largest TimeSpan, which clients send back as is.
    """
    duration = parse_duration(limit) if limit else None
    if duration is None:
        return None
    try:
        return (start + duration).timestamp() * 1000
    except OverflowError:
        return None


def format_duration(delta: timedelta) -> str:
    """An ISO-8601 duration such as `PT1H30M` or `P7D`."""
    if delta >= timedelta(days=10675199):
        return UNLIMITED_DURATION
    days, rest = delta.days, delta.seconds + delta.microseconds / 1e6
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    text = "P" + (f"{days}D" if days else "")
    clock = (f"{int(hours)}H" if hours else "") + (f"{int(minutes)}M" if minutes else "")
    clock += f"{seconds:g}S" if seconds else ""
    if clock:
        text += "T" + clock
    return text if text != "P" else "PT0S"
