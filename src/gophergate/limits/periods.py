"""Calendar budget periods in a timezone: the day, the week starting Monday, the month; ``total`` never ends.

Boundaries are local midnights converted to UTC instants, so a day across a DST change is 23 or 25 hours long
and still starts at local midnight. A local midnight that does not exist (a zone whose clocks jump at 00:00)
starts at the instant the clocks jump.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from gophergate.limits.types import Period

NEVER = float("inf")
ALWAYS = float("-inf")


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def period_bounds(period: Period, wall: float, tz: ZoneInfo) -> tuple[float, float]:
    """The ``[start, end)`` of the period holding ``wall`` (epoch seconds), as epoch seconds."""
    if period == "total":
        return ALWAYS, NEVER
    today = datetime.fromtimestamp(wall, tz).date()
    if period == "day":
        first, after = today, today + timedelta(days=1)
    elif period == "week":
        first = today - timedelta(days=today.weekday())
        after = first + timedelta(days=7)
    else:
        first = today.replace(day=1)
        after = date(first.year + 1, 1, 1) if first.month == 12 else date(first.year, first.month + 1, 1)
    return _midnight(first, tz).timestamp(), _midnight(after, tz).timestamp()


def as_datetime(ts: float) -> datetime | None:
    return None if ts in (ALWAYS, NEVER) else datetime.fromtimestamp(ts, UTC)
