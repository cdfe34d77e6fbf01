"""data.police.uk monthly CSVs to contract events.

Mapping (documented in the README):
  * ``*-street.csv`` rows with coordinates -> ``recorded_crime``, month precision, crime type
    and last outcome kept;
  * ``*-stop-and-search.csv`` rows with coordinates -> ``arrest`` when Outcome is "Arrest"
    (charged unknown), else ``stop_search``; the Date's offset is kept, so the week is
    assigned in Europe/London;
  * rows without coordinates are counted and reported, never produced.

Event ids are deterministic: ``puk-<Crime ID>`` where police.uk gives one, otherwise a hash
of the file's name (without ``.gz``) and the row number and content, so replaying the same
files, compressed or not, changes no count.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from hotspots.contract import Admission, Event, InvalidEvent
from hotspots.periods import LONDON
from producers.publisher import Rejected

STREET_COLUMNS = ("Crime ID", "Month", "Reported by", "Falls within", "Longitude", "Latitude",
                  "Location", "LSOA code", "LSOA name", "Crime type", "Last outcome category",
                  "Context")
STOP_SEARCH_COLUMNS = ("Type", "Date", "Part of a policing operation", "Policing operation",
                       "Latitude", "Longitude", "Gender", "Age range", "Self-defined ethnicity",
                       "Officer-defined ethnicity", "Legislation", "Object of search", "Outcome",
                       "Outcome linked to object of search",
                       "Removal of more than just outer clothing")


# What a damaged file raises while being read: bad CSV, bad UTF-8, a truncated gzip (EOFError),
# a bad gzip header or CRC (OSError), a corrupt deflate stream (zlib.error).
_UNREADABLE = (csv.Error, UnicodeDecodeError, OSError, EOFError, zlib.error)


class ReplayError(ValueError):
    """A file that cannot be read as a police.uk CSV at all."""


@dataclass
class ReplayReport:
    read: int = 0
    produced: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"read": self.read, "produced": self.produced,
                "skipped": dict(sorted(self.skipped.items()))}


def _open(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def file_identity(path: Path) -> str:
    name = path.name
    return name[:-3] if name.endswith(".gz") else name


def _force(row: dict[str, str]) -> str:
    return (row.get("Falls within") or "").strip() or "unknown"


def _row_id(identity: str, number: int, row: list[str]) -> str:
    digest = hashlib.blake2b(f"{identity}|{number}|{'|'.join(row)}".encode(), digest_size=12)
    return f"puk-{digest.hexdigest()}"


def _street(row: dict[str, str], event_id: str) -> dict[str, Any]:
    month = datetime.strptime(row["Month"].strip(), "%Y-%m").replace(tzinfo=LONDON)
    record: dict[str, Any] = {
        "kind": "recorded_crime", "event_id": event_id, "occurred_at": month.isoformat(),
        "time_precision": "month", "lat": float(row["Latitude"]), "lon": float(row["Longitude"]),
        "force": _slug(_force(row)), "crime_type": row["Crime type"].strip(),
    }
    if row.get("Last outcome category", "").strip():
        record["outcome"] = row["Last outcome category"].strip()[:80]
    return record


def _stop_search(row: dict[str, str], event_id: str, force: str) -> dict[str, Any]:
    outcome = row["Outcome"].strip()
    common: dict[str, Any] = {
        "event_id": event_id, "occurred_at": row["Date"].strip(), "time_precision": "instant",
        "lat": float(row["Latitude"]), "lon": float(row["Longitude"]), "force": force,
    }
    operation = row.get("Policing operation", "").strip()
    if operation:
        common["operation"] = operation[:80]
    if outcome == "Arrest":
        return {"kind": "arrest", **common}
    record = {"kind": "stop_search", **common, "outcome": outcome[:80] or "unknown"}
    for column, key in (("Legislation", "legislation"), ("Object of search", "object_of_search")):
        if row.get(column, "").strip():
            record[key] = row[column].strip()[:80]
    return record


def _slug(text: str) -> str:
    return text.lower().removesuffix(" police").replace(" ", "-")


def _force_from_name(identity: str) -> str:
    # "2024-12-essex-stop-and-search.csv" -> "essex": stop-and-search rows name no force.
    parts = identity.removesuffix(".csv").split("-")
    return "-".join(parts[2:-3]) or "unknown"


def _reject(report: ReplayReport, values: list[str], source: str, reason: str,
            detail: str) -> Rejected:
    report.skipped[reason] += 1
    return Rejected(",".join(values).encode(), reason, detail, source)


def read_file(path: Path, report: ReplayReport,
              admission: Admission | None = None) -> Iterator[Event | Rejected]:
    """Yield the events (or rejects) of one police.uk CSV, counting every row in ``report``.

    Rows without coordinates are only counted: police.uk publishes them that way.
    """
    admission = admission or Admission()
    identity = file_identity(path)
    try:
        handle = _open(path)
    except OSError as exc:
        raise ReplayError(f"{path}: {exc}") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = tuple(h.strip() for h in next(reader))
        except StopIteration:
            raise ReplayError(f"{path}: empty file") from None
        except _UNREADABLE as exc:
            raise ReplayError(f"{path}: unreadable header ({exc})") from None
        if header == STREET_COLUMNS:
            street = True
        elif header == STOP_SEARCH_COLUMNS:
            street = False
        else:
            raise ReplayError(f"{path}: not a police.uk street or stop-and-search CSV "
                              f"(header starts {list(header[:3])})")
        force = _force_from_name(identity)
        number = 0
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except _UNREADABLE as exc:
                report.skipped["unreadable_tail"] += 1
                raise ReplayError(f"{path}: unreadable after row {number} ({exc})") from None
            number += 1
            report.read += 1
            source = f"{identity}:{number + 1}"  # the line number, counting the header
            if len(values) != len(header):
                yield _reject(report, values, source, "wrong_column_count",
                              f"{len(values)} columns, expected {len(header)}")
                continue
            row = dict(zip(header, values, strict=True))
            if not row["Latitude"].strip() or not row["Longitude"].strip():
                report.skipped["no_coordinates"] += 1
                continue
            crime_id = row.get("Crime ID", "").strip()
            event_id = f"puk-{crime_id}" if crime_id else _row_id(identity, number, values)
            try:
                record = _street(row, event_id) if street else _stop_search(row, event_id, force)
                event = admission.admit(record)
            except InvalidEvent as exc:
                yield _reject(report, values, source, exc.reason, exc.detail)
                continue
            except ValueError as exc:
                yield _reject(report, values, source, "bad_field", str(exc))
                continue
            report.produced += 1
            yield event
