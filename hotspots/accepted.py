"""Envelopes of the accepted topic: the events the worker accepted, with their cells, periods
and measures, for the sink's raw table and the spike agents. Written by streams/app.py only.

v2 (the worker writes it): ``A2`` and a newline, then one line per event: the JSON array of
FIELDS, a tab, and the event's bytes as they came. The bytes are neither re-encoded nor
escaped into a JSON string, which was half of a row's cost in the worker. A record whose
bytes hold a newline (a pretty-printed single record) carries them as the array's last
element, a string, and no tab. A JSON array holds no raw tab, so the first tab of a line
ends its array.

v1 (written before v2, still read): a JSON array of objects with FIELDS and ``payload``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from hotspots.contract import MEASURES, bulks

MAGIC = b"A2\n"
FIELDS: tuple[str, ...] = (
    "event_id", "kind", "occurred_at", "time_precision", "week_start", "month_start",
    "lat", "lon", "force", "operation", "cell8", "cell7", "cell6", *MEASURES,
    "src",  # [source partition, position]: the same for every delivery of the event
)
AT = {name: i for i, name in enumerate(FIELDS)}  # a field's index in a row's values


def line(values: list[Any], raw: bytes) -> bytes:
    """One event's line: ``values`` in FIELDS order, and its original bytes."""
    if b"\n" in raw:
        return orjson.dumps([*values, raw.decode("utf-8", "replace")])
    return orjson.dumps(values) + b"\t" + raw


def envelope(lines: list[bytes]) -> bytes:
    return MAGIC + b"\n".join(lines)


def envelopes(lines: list[bytes], limit: int) -> Iterator[bytes]:
    """Envelopes of the lines, each at most ``limit`` bytes (or one oversized line)."""
    for run in bulks(lines, len(lines), limit - len(MAGIC)):
        yield envelope(run)


def decode(envelope: bytes) -> Iterator[tuple[list[Any], str]]:
    """(values in FIELDS order, the event's original text) of each event, v1 or v2."""
    if not envelope.startswith(MAGIC):
        for row in orjson.loads(envelope):
            yield [row.get(name) for name in FIELDS], row["payload"]  # "src" came later
        return
    for text in envelope[len(MAGIC):].split(b"\n"):
        head, tab, raw = text.partition(b"\t")
        values = orjson.loads(head)
        yield values, (raw.decode("utf-8", "replace") if tab else values.pop())


def rows(envelope: bytes) -> Iterator[dict[str, Any]]:
    """Each event as a dict of FIELDS and ``payload`` (tests and tools; not the hot paths)."""
    for values, payload in decode(envelope):
        yield {**dict(zip(FIELDS, values, strict=True)), "payload": payload}
