"""data.police.uk CSVs to contract events: the mapping, deterministic ids, and hostile files.

Every fixture is a small CSV written to tmp_path in the real column layout; the real Essex
files are only read (never copied), and only by the test that checks the README's counts.
"""

from __future__ import annotations

import csv
import gzip
import re
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import pytest

from hotspots.contract import Admission, Arrest, RecordedCrime, StopSearch
from hotspots.periods import LONDON, month_start, week_start
from producers.policeuk import (
    STOP_SEARCH_COLUMNS,
    STREET_COLUMNS,
    ReplayError,
    ReplayReport,
    read_file,
)
from producers.publisher import Rejected
from tests.shared_data import POLICE_UK, needs

STREET_HEADER = ",".join(STREET_COLUMNS)
STOP_HEADER = ",".join(STOP_SEARCH_COLUMNS)
# Made-up rows in the real format (hex Crime IDs, "On or near" snap points, Essex LSOAs).
STREET_ROWS = [
    "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90,2025-07,Essex Police,"
    "Essex Police,0.469000,51.735000,On or near High Street,E01021600,Chelmsford 010A,"
    "Drugs,Under investigation,",
    "0f0e0d0c0b0a09080706050403020100ffeeddccbbaa99887766554433221100,2025-07,Essex Police,"
    "Essex Police,0.901000,51.889000,On or near Queen Street,E01021800,Colchester 012B,"
    "Violence and sexual offences,,",
    # Anti-social behaviour: no Crime ID, no outcome.
    ",2025-07,Essex Police,Essex Police,0.710000,51.540000,On or near Station Road,E01022000,"
    "Southend-on-Sea 005C,Anti-social behaviour,,",
    # No coordinates: counted, never produced.
    "1111111111111111111111111111111111111111111111111111111111111111,2025-07,Essex Police,"
    "Essex Police,,,No Location,,,Robbery,Under investigation,",
]
STOP_ROWS = [
    # 23:30 UTC on Sunday 7 July 2024 is 00:30 BST on Monday 8 July.
    "Person search,2024-07-07T23:30:00+00:00,False,,51.554521,0.722157,Male,18-24,"
    "White - English/Welsh/Scottish/Northern Irish/British,White,"
    "Misuse of Drugs Act 1971 (section 23),,A no further action disposal,,",
    "Person search,2024-07-03T14:07:00+00:00,True,Operation Made Up,51.889240,0.900117,Male,"
    "25-34,White - Any other White background,White,"
    "Police and Criminal Evidence Act 1984 (section 1),,Arrest,,",
    "Vehicle search,2024-07-05T09:07:00+00:00,False,,,,,,,,"
    "Misuse of Drugs Act 1971 (section 23),,Community resolution,,",
]


def write(path: Path, header: str, rows: list[str], *, bom: bool = False) -> Path:
    text = "\r\n".join([header, *rows]) + "\r\n"
    data = (("\ufeff" if bom else "") + text).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


def read_all(path: Path, admission: Admission | None = None) -> tuple[list, ReplayReport]:
    report = ReplayReport()
    return list(read_file(path, report, admission)), report


def assert_counts_add_up(report: ReplayReport) -> None:
    assert report.read == report.produced + sum(report.skipped.values()), report.as_dict()


def test_street_rows_become_month_precision_recorded_crime(tmp_path):
    out, report = read_all(write(tmp_path / "2025-07-essex-street.csv", STREET_HEADER, STREET_ROWS))
    assert all(isinstance(e, RecordedCrime) for e in out)
    assert len(out) == 3
    first = out[0]
    assert first.time_precision == "month"
    # The first of the month at 00:00 in London: in July that is 23:00 UTC on 30 June.
    assert first.occurred_at.astimezone(LONDON) == datetime(2025, 7, 1, tzinfo=LONDON)
    assert first.occurred_at.isoformat() == "2025-06-30T23:00:00+00:00"
    assert month_start(first.occurred_at) == date(2025, 7, 1)
    assert first.crime_type == "Drugs"
    assert first.outcome == "Under investigation"
    assert first.force == "essex"
    assert (first.lat, first.lon) == (51.735, 0.469)
    assert out[1].crime_type == "Violence and sexual offences"
    assert out[1].outcome is None  # an empty last outcome is not an outcome
    assert out[2].crime_type == "Anti-social behaviour"
    assert report.read == 4 and report.produced == 3
    assert report.skipped == Counter({"no_coordinates": 1})
    assert_counts_add_up(report)


def test_winter_month_starts_at_midnight_utc(tmp_path):
    row = STREET_ROWS[0].replace("2025-07", "2025-01")
    (event,), _ = read_all(write(tmp_path / "2025-01-essex-street.csv", STREET_HEADER, [row]))
    assert event.occurred_at.isoformat() == "2025-01-01T00:00:00+00:00"


def test_rows_without_coordinates_are_counted_not_yielded(tmp_path):
    half = STREET_ROWS[0].replace("0.469000,51.735000", "0.469000,")
    rows = [STREET_ROWS[3], half, STREET_ROWS[3].replace("1111", "2222")]
    out, report = read_all(write(tmp_path / "2025-07-essex-street.csv", STREET_HEADER, rows))
    assert out == []
    assert report.skipped["no_coordinates"] == 3
    assert report.read == 3 and report.produced == 0
    assert_counts_add_up(report)


def test_stop_and_search_rows(tmp_path):
    path = write(tmp_path / "2024-07-essex-stop-and-search.csv", STOP_HEADER, STOP_ROWS)
    out, report = read_all(path)
    assert len(out) == 2
    search, arrest = out
    assert isinstance(search, StopSearch)
    assert search.outcome == "A no further action disposal"
    assert search.legislation == "Misuse of Drugs Act 1971 (section 23)"
    assert search.object_of_search is None  # empty in the Essex files
    assert search.time_precision == "instant"
    assert search.force == "essex"  # from the file name: stop-and-search rows name no force
    assert isinstance(arrest, Arrest)
    assert arrest.charged is None  # not known from a stop and search
    assert arrest.operation == "Operation Made Up"
    assert arrest.force == "essex"
    assert report.skipped == Counter({"no_coordinates": 1})
    assert_counts_add_up(report)


def test_stop_and_search_date_is_assigned_to_the_london_week(tmp_path):
    path = write(tmp_path / "2024-07-essex-stop-and-search.csv", STOP_HEADER, STOP_ROWS[:1])
    (event,), _ = read_all(path)
    assert event.occurred_at == datetime.fromisoformat("2024-07-07T23:30:00+00:00")
    assert week_start(event.occurred_at) == date(2024, 7, 8)  # a Monday, in BST


def test_event_id_is_the_crime_id_when_present(tmp_path):
    out, _ = read_all(write(tmp_path / "2025-07-essex-street.csv", STREET_HEADER, STREET_ROWS))
    assert out[0].event_id == "puk-" + STREET_ROWS[0].split(",")[0]
    assert out[1].event_id == "puk-" + STREET_ROWS[1].split(",")[0]
    assert re.fullmatch(r"puk-[0-9a-f]{24}", out[2].event_id)  # ASB: a hash


def test_hash_ids_are_deterministic_across_reads_and_compression(tmp_path):
    asb = STREET_ROWS[2]
    rows = [asb, asb, STREET_ROWS[0], asb]  # identical ASB rows are distinct events
    plain = write(tmp_path / "plain" / "2025-07-essex-street.csv", STREET_HEADER, rows)
    packed = write(tmp_path / "packed" / "2025-07-essex-street.csv.gz", STREET_HEADER, rows)
    first = [e.event_id for e in read_all(plain)[0]]
    again = [e.event_id for e in read_all(plain)[0]]
    gz = [e.event_id for e in read_all(packed)[0]]
    assert first == again == gz
    asb_ids = [first[0], first[1], first[3]]
    assert len(set(asb_ids)) == 3, "identical rows on different lines must get different ids"
    # Another file name, same content: other events.
    other = write(tmp_path / "2025-08-essex-street.csv", STREET_HEADER, rows)
    assert {e.event_id for e in read_all(other)[0]} & set(asb_ids) == set()


def test_hash_id_depends_on_the_line_number(tmp_path):
    a = write(tmp_path / "a" / "2025-07-essex-street.csv", STREET_HEADER, [STREET_ROWS[2]])
    b = write(tmp_path / "b" / "2025-07-essex-street.csv", STREET_HEADER,
              [STREET_ROWS[0], STREET_ROWS[2]])
    (only,), _ = read_all(a)
    _, second = read_all(b)[0]
    assert only.event_id != second.event_id


@pytest.mark.parametrize("name", ["2025-07-essex-street.csv", "2025-07-essex-street.csv.gz"])
def test_wrong_header_is_a_replay_error(tmp_path, name):
    path = write(tmp_path / name, "Crime ID,Month,Something else", ["a,2025-07,b"])
    with pytest.raises(ReplayError, match=r"not a police\.uk street or stop-and-search CSV"):
        read_all(path)


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf"], ids=["empty", "bom-only"])
@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_empty_file_is_a_replay_error(tmp_path, data, suffix):
    path = tmp_path / f"2025-07-essex-street{suffix}"
    path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    with pytest.raises(ReplayError, match="empty file"):
        read_all(path)


def test_not_gzip_is_a_replay_error(tmp_path):
    path = tmp_path / "2025-07-essex-street.csv.gz"
    path.write_bytes((STREET_HEADER + "\n").encode())
    with pytest.raises(ReplayError):
        read_all(path)


def test_wrong_column_count_is_rejected(tmp_path):
    rows = [STREET_ROWS[0] + ",extra", STREET_ROWS[1], "just,three,cells"]
    out, report = read_all(write(tmp_path / "2025-07-essex-street.csv", STREET_HEADER, rows))
    assert [type(e) for e in out] == [Rejected, RecordedCrime, Rejected]
    assert {e.reason for e in out if isinstance(e, Rejected)} == {"wrong_column_count"}
    assert out[0].source == "2025-07-essex-street.csv:2"  # line 2, counting the header
    assert out[2].source == "2025-07-essex-street.csv:4"
    assert "13 columns, expected 12" in out[0].detail
    assert out[0].raw == (STREET_ROWS[0] + ",extra").encode()
    assert report.skipped == Counter({"wrong_column_count": 2})
    assert_counts_add_up(report)


def test_latitude_out_of_range_is_rejected(tmp_path):
    row = STREET_ROWS[0].replace("51.735000", "95")
    (rejected,), report = read_all(write(tmp_path / "2025-07-essex-street.csv", STREET_HEADER, [row]))
    assert isinstance(rejected, Rejected)
    assert rejected.reason == "bad_coordinates"
    assert report.skipped == Counter({"bad_coordinates": 1})
    assert_counts_add_up(report)


@pytest.mark.parametrize(("cell", "reason"), [
    ("not-a-number", "bad_field"), ("nan", "bad_coordinates"), ("inf", "bad_coordinates")])
def test_unparseable_coordinates_are_rejected(tmp_path, cell, reason):
    row = STREET_ROWS[0].replace("51.735000", cell)
    (rejected,), report = read_all(write(tmp_path / "2025-07-essex-street.csv", STREET_HEADER, [row]))
    assert isinstance(rejected, Rejected) and rejected.reason == reason
    assert_counts_add_up(report)


def test_bad_month_and_bad_date_are_rejected(tmp_path):
    street = STREET_ROWS[0].replace("2025-07", "2025-13")
    (bad_month,), _ = read_all(write(tmp_path / "2025-07-essex-street.csv", STREET_HEADER, [street]))
    assert isinstance(bad_month, Rejected) and bad_month.reason == "bad_field"
    naive = STOP_ROWS[0].replace("2024-07-07T23:30:00+00:00", "2024-07-07T23:30:00")
    far = STOP_ROWS[0].replace("2024-07-07T23:30:00+00:00", "9999-12-31T23:59:00-12:00")
    out, report = read_all(write(tmp_path / "2024-07-essex-stop-and-search.csv", STOP_HEADER,
                                 [naive, far]))
    assert [e.reason for e in out] == ["naive_timestamp", "bad_timestamp"]
    assert_counts_add_up(report)


def test_rows_outside_the_accepted_area_are_rejected(tmp_path):
    chelmsford_only = Admission(area=(0.4, 51.7, 0.5, 51.8))
    path = write(tmp_path / "2025-07-essex-street.csv", STREET_HEADER, STREET_ROWS)
    out, report = read_all(path, chelmsford_only)
    assert isinstance(out[0], RecordedCrime)
    assert [e.reason for e in out[1:]] == ["outside_area", "outside_area"]
    assert report.produced == 1
    assert report.skipped == Counter({"outside_area": 2, "no_coordinates": 1})
    assert_counts_add_up(report)


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_byte_order_mark_is_ignored(tmp_path, suffix):
    path = write(tmp_path / f"2025-07-essex-street{suffix}", STREET_HEADER, STREET_ROWS, bom=True)
    out, report = read_all(path)
    assert len(out) == 3 and report.produced == 3
    stop = write(tmp_path / f"2024-07-essex-stop-and-search{suffix}", STOP_HEADER, STOP_ROWS,
                 bom=True)
    assert len(read_all(stop)[0]) == 2


def test_invalid_utf8_is_a_replay_error(tmp_path):
    path = tmp_path / "2025-07-essex-street.csv"
    path.write_bytes((STREET_HEADER + "\r\n" + STREET_ROWS[0] + "\r\n").encode() + b"\xff\xfe,\r\n")
    report = ReplayReport()
    seen = []
    with pytest.raises(ReplayError, match="unreadable"):
        for item in read_file(path, report):
            seen.append(item)
    assert len(seen) <= 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("chop", [1, 4, 8, 9, 50, 500, 5000, "half"])
def test_truncated_gzip_yields_a_prefix_then_a_replay_error(tmp_path, chop):
    rows = [STREET_ROWS[i % 3].replace("a1b2", f"{i:04x}", 1) if i % 3 == 0 else STREET_ROWS[i % 3]
            for i in range(3000)]
    whole = write(tmp_path / "whole" / "2025-07-essex-street.csv.gz", STREET_HEADER, rows)
    complete = [e.event_id for e in read_all(whole)[0]]
    data = whole.read_bytes()
    cut = len(data) // 2 if chop == "half" else chop
    truncated = tmp_path / "2025-07-essex-street.csv.gz"
    truncated.write_bytes(data[:-cut])
    report = ReplayReport()
    seen = []
    with pytest.raises(ReplayError):
        for item in read_file(truncated, report):
            seen.append(item)
    # Whatever came out before the error is exactly what the whole file starts with.
    assert [e.event_id for e in seen] == complete[:len(seen)]
    assert report.read == report.produced + sum(
        n for reason, n in report.skipped.items() if reason != "unreadable_tail")


@pytest.mark.timeout(60)
def test_corrupt_gzip_is_a_replay_error(tmp_path):
    rows = [STREET_ROWS[2]] * 2000
    data = bytearray(gzip.compress(("\r\n".join([STREET_HEADER, *rows]) + "\r\n").encode(), mtime=0))
    for i in range(40, len(data) - 8, 97):
        data[i] ^= 0x5A
    path = tmp_path / "2025-07-essex-street.csv.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(ReplayError):
        read_all(path)


REAL = POLICE_UK
REAL_STOP = REAL / "essex" / "2024-12-essex-stop-and-search.csv.gz"


@needs(REAL_STOP)
def test_real_stop_and_search_file_matches_the_readme():
    readme = (REAL / "README.md").read_text()
    table = re.search(r"\|\s*essex/2024-12-essex-stop-and-search\.csv\.gz\s*\|[^|]*\|[^|]*\|"
                      r"\s*([\d,]+)\s*\|\s*([\d,]+)\s*\|", readme)
    assert table, "the README no longer lists the 2024-12 stop-and-search file"
    readme_rows, readme_no_coords = (int(g.replace(",", "")) for g in table.groups())
    readme_arrests = int(re.search(r"\bArrest ([\d,]+)", readme).group(1).replace(",", ""))

    # An independent count with the csv module only.
    with gzip.open(REAL_STOP, "rt", encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    located = [r for r in rows if r["Latitude"].strip() and r["Longitude"].strip()]
    assert len(rows) == readme_rows == 1156
    assert len(rows) - len(located) == readme_no_coords == 13
    assert sum(r["Outcome"] == "Arrest" for r in rows) == readme_arrests == 161
    located_arrests = sum(r["Outcome"] == "Arrest" for r in located)

    out, report = read_all(REAL_STOP)
    assert report.read == readme_rows
    assert report.skipped == Counter({"no_coordinates": readme_no_coords})
    assert report.produced == len(located) == len(out)
    kinds = Counter(type(e).__name__ for e in out)
    assert kinds["Arrest"] == located_arrests
    assert kinds["StopSearch"] == len(located) - located_arrests
    assert len({e.event_id for e in out}) == len(out)  # no Crime IDs: every hash id distinct
    assert {e.force for e in out} == {"essex"}
    assert all(e.occurred_at.astimezone(LONDON).strftime("%Y-%m") == "2024-12" for e in out)
    assert_counts_add_up(report)
