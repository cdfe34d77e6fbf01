"""The weekly EHSA update that runs in the sink's process."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sinks.schedule import last_closed_week, update_closed_week


def test_last_closed_week_is_the_previous_london_iso_week() -> None:
    # Monday 2023-07-10 00:30 in London (23:30 UTC on Sunday): the week of 3 July has closed.
    assert last_closed_week(datetime(2023, 7, 9, 23, 30, tzinfo=UTC)) == date(2023, 7, 3)
    # Sunday 22:30 UTC is still Sunday in London: the week of 3 July is still open.
    assert last_closed_week(datetime(2023, 7, 9, 22, 30, tzinfo=UTC)) == date(2023, 6, 26)
    # In winter London is UTC.
    assert last_closed_week(datetime(2024, 1, 1, 0, 0, tzinfo=UTC)) == date(2023, 12, 25)


def test_a_week_with_no_events_changes_nothing(store) -> None:
    published: list[dict] = []
    assert update_closed_week(store, published.append, now=datetime(2099, 3, 3, tzinfo=UTC)) == 0
    assert published == []


def test_the_closed_week_is_classified_for_each_kind_with_events(store, sink_settings) -> None:
    from tests.unit.test_store import arrest, at, worker_output, write

    # A cluster of arrests in the week of Monday 2069-03-04 (unique to this test).
    events = [arrest(i, at(2069, 3, 5 + i % 3)) for i in range(12)]
    write(store, sink_settings, *worker_output(events))
    published: list[dict] = []
    now = datetime(2069, 3, 12, 9, tzinfo=UTC)  # the following Tuesday
    update_closed_week(store, published.append, now=now)
    rows = store.query("""SELECT kind, count() AS n FROM {db}.ehsa_classes FINAL
                          WHERE week_start = '2069-03-04' GROUP BY kind""")
    assert [r["kind"] for r in rows] == ["arrest"] and rows[0]["n"] > 0
    again: list[dict] = []
    update_closed_week(store, again.append, now=now)
    assert again == []  # the same closed week again publishes nothing new
