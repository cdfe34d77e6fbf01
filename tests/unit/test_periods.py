"""Event time to London-local reporting periods, across clock changes and ISO-year edges."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotspots.periods import (
    LONDON,
    first_starts,
    iso_week_label,
    local_date,
    parse_iso_week,
    period_start,
    start_of,
    week_start,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("at", "local", "monday"),
    [
        # BST -> GMT on Sunday 2023-10-29: 01:00Z is when the clocks go back.
        (utc(2023, 10, 28, 23, 30), date(2023, 10, 29), date(2023, 10, 23)),  # 00:30 BST Sun
        (utc(2023, 10, 29, 0, 30), date(2023, 10, 29), date(2023, 10, 23)),  # 01:30 BST
        (utc(2023, 10, 29, 1, 30), date(2023, 10, 29), date(2023, 10, 23)),  # 01:30 GMT
        (utc(2023, 10, 29, 23, 30), date(2023, 10, 29), date(2023, 10, 23)),  # GMT: still Sun
        (utc(2023, 10, 30, 0, 0), date(2023, 10, 30), date(2023, 10, 30)),  # Monday 00:00 GMT
        # GMT -> BST on Sunday 2023-03-26: 01:00Z is when the clocks go forward.
        (utc(2023, 3, 26, 0, 30), date(2023, 3, 26), date(2023, 3, 20)),  # 00:30 GMT
        (utc(2023, 3, 26, 1, 30), date(2023, 3, 26), date(2023, 3, 20)),  # 02:30 BST
        (utc(2023, 3, 26, 23, 30), date(2023, 3, 27), date(2023, 3, 27)),  # Mon 00:30 BST
    ],
)
def test_clock_changes(at, local, monday):
    assert local_date(at) == local
    assert week_start(at) == monday
    assert week_start(at).weekday() == 0


def test_sunday_late_evening_utc_in_summer_is_next_week():
    sunday_2330z = utc(2023, 7, 16, 23, 30)  # Monday 00:30 in London
    assert local_date(sunday_2330z) == date(2023, 7, 17)
    assert week_start(sunday_2330z) == date(2023, 7, 17)
    assert iso_week_label(week_start(sunday_2330z)) == "2023-W29"
    # A minute before London midnight stays in the week that ends that Sunday.
    assert week_start(utc(2023, 7, 16, 22, 59)) == date(2023, 7, 10)
    # The same UTC instant in winter is still Sunday in London.
    assert week_start(utc(2023, 1, 15, 23, 30)) == date(2023, 1, 9)


def test_offsets_other_than_utc_are_honoured():
    # 2023-07-17 01:30 at +02:00 is 2023-07-16 23:30Z, i.e. Monday 00:30 in London.
    at = datetime(2023, 7, 17, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    assert local_date(at) == date(2023, 7, 17)
    at = datetime(2023, 7, 17, 0, 30, tzinfo=timezone(timedelta(hours=2)))  # Sun 23:30 London
    assert local_date(at) == date(2023, 7, 16)
    assert local_date(datetime(2023, 7, 16, 23, 59, tzinfo=LONDON)) == date(2023, 7, 16)


@pytest.mark.parametrize(
    ("at", "monday", "label"),
    [
        (utc(2020, 12, 31, 12), date(2020, 12, 28), "2020-W53"),
        (utc(2021, 1, 1, 12), date(2020, 12, 28), "2020-W53"),
        (utc(2021, 1, 3, 23, 59), date(2020, 12, 28), "2020-W53"),
        (utc(2021, 1, 4, 0, 0), date(2021, 1, 4), "2021-W01"),
        (utc(2024, 12, 30, 12), date(2024, 12, 30), "2025-W01"),
        (utc(2025, 1, 1, 12), date(2024, 12, 30), "2025-W01"),
    ],
)
def test_iso_year_boundaries(at, monday, label):
    assert week_start(at) == monday
    assert iso_week_label(monday) == label
    assert parse_iso_week(label) == monday


@pytest.mark.parametrize("label", ["2020-W53", "2023-W01", "2023-W05", "2023-W52", "2026-W53"])
def test_parse_iso_week_round_trip(label):
    monday = parse_iso_week(label)
    assert monday.weekday() == 0
    assert iso_week_label(monday) == label


@pytest.mark.parametrize(
    "label", ["2023-W54", "2023-W00", "2023W01", "2021-W53", "2023-W1", "23-W01", "", "2023-w01",
              " 2023-W01", "2023-W01\n", "\uff12\uff10\uff12\uff13-W01"])
def test_parse_iso_week_rejects_bad_labels(label):
    with pytest.raises(ValueError, match="not an ISO week"):
        parse_iso_week(label)


def test_naive_datetime_raises():
    naive = datetime(2023, 7, 16, 23, 30)  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="naive"):
        local_date(naive)
    with pytest.raises(ValueError, match="naive"):
        week_start(naive)
    with pytest.raises(ValueError, match="naive"):
        period_start(naive, "day")


def test_period_start():
    at = utc(2023, 7, 16, 23, 30)
    assert period_start(at, "day") == date(2023, 7, 17)
    assert period_start(at, "week") == date(2023, 7, 17)
    assert period_start(utc(2023, 7, 19, 12), "week") == date(2023, 7, 17)
    assert period_start(at, "month") == date(2023, 7, 1)
    # 23:30 UTC on 31 July is 00:30 on 1 August in London.
    assert period_start(utc(2023, 7, 31, 23, 30), "month") == date(2023, 8, 1)
    with pytest.raises(ValueError, match="unknown period"):
        period_start(at, "quarter")


@pytest.mark.parametrize(("cutover", "week", "month"), [
    (date(2026, 6, 1), date(2026, 6, 1), date(2026, 6, 1)),      # a Monday and a 1st
    (date(2026, 6, 2), date(2026, 6, 8), date(2026, 7, 1)),
    (date(2026, 12, 31), date(2027, 1, 4), date(2027, 1, 1)),    # across the year
    (date(2024, 2, 29), date(2024, 3, 4), date(2024, 3, 1)),
])
def test_first_starts_are_the_first_periods_on_or_after_the_cutover(cutover, week, month):
    assert first_starts(cutover) == {"day": cutover, "week": week, "month": month}


@given(st.dates(min_value=date(1971, 1, 1), max_value=date(2100, 1, 1)))
def test_first_starts_begin_their_period_and_none_is_skipped(cutover):
    for period, first in first_starts(cutover).items():
        assert start_of(first, period) == first and first >= cutover
        # the period before it starts before the cutover: nothing between has no writer
        assert start_of(first - timedelta(days=1), period) < cutover


def test_the_cutover_setting_reads_a_date_and_compose_s_empty_value_as_none(monkeypatch):
    from hotspots.settings import WorkerSettings

    monkeypatch.setenv("HOTSPOTS_CUTOVER", "")  # docker-compose's ${HOTSPOTS_CUTOVER:-}
    assert WorkerSettings().cutover is None
    monkeypatch.setenv("HOTSPOTS_CUTOVER", "2026-12-01")
    assert WorkerSettings().cutover == date(2026, 12, 1)
    monkeypatch.setenv("HOTSPOTS_CUTOVER", "next week")
    with pytest.raises(ValueError, match="cutover"):
        WorkerSettings()
