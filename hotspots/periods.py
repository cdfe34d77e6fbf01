"""Event time to reporting period. Weeks are ISO weeks (Monday start) in Europe/London.

faust's tumbling 7-day windows are aligned to the Unix epoch and so start on a
Thursday; rollups are keyed by these explicit period starts instead.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")
PERIODS: tuple[str, ...] = ("day", "week", "month")


def local_date(at: datetime) -> date:
    if at.tzinfo is None:
        raise ValueError("naive datetime: the period of an event needs its UTC offset")
    return at.astimezone(LONDON).date()


def week_start(at: datetime) -> date:
    """Monday of the ISO week, in Europe/London, that contains ``at``."""
    day = local_date(at)
    return day - timedelta(days=day.weekday())


def month_start(at: datetime) -> date:
    """First day of the calendar month, in Europe/London, that contains ``at``."""
    return local_date(at).replace(day=1)


def start_of(day: date, period: str) -> date:
    """The start of the period that contains a London-local date."""
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    raise ValueError(f"unknown period {period!r}; expected one of {PERIODS}")


def first_starts(cutover: date) -> dict[str, date]:
    """For each period kind, the first period that starts on or after ``cutover``: the live
    worker folds the periods from there on, and ``hotspots backfill`` builds those before
    from the raw events. Per kind, so that no week or month has two writers."""
    week = cutover + timedelta(days=(7 - cutover.weekday()) % 7)
    month = cutover if cutover.day == 1 else (cutover.replace(day=28) + timedelta(days=4)).replace(day=1)
    return {"day": cutover, "week": week, "month": month}


def period_start(at: datetime, period: str) -> date:
    return start_of(local_date(at), period)


def iso_week_label(monday: date) -> str:
    year, week, _ = monday.isocalendar()
    return f"{year}-W{week:02d}"


_WEEK = re.compile(r"(\d{4})-W(\d{2})", re.ASCII)  # used with fullmatch: no trailing "\n"


def parse_iso_week(label: str) -> date:
    """'2023-W05' -> the Monday that starts it."""
    match = _WEEK.fullmatch(label)
    if not match:
        raise ValueError(f"not an ISO week: {label!r} (expected YYYY-Www)")
    year, week = int(match[1]), int(match[2])
    try:
        return date.fromisocalendar(year, week, 1)
    except ValueError as exc:
        raise ValueError(f"not an ISO week: {label!r} ({exc})") from None
