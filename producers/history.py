"""History lines framed as they came onto the history topic, for `hotspots backfill`.

The backfill checks every line by the contract, with the worker's reasons, and dead-letters
what it refuses; checking here too would cost the producer as much again (the Python
admission is most of a producer's CPU an event) for nothing the backfill does not do. So the
lines are only framed: many to a bulk record, the records' partitions in turn (the backfill
does not care which partition holds an event; what it forwards to the worker goes by cell).
Larger records than the live feed's: Kafka's cost, and the producer's, is mostly per record
(docs/bench.md, fourteenth pass).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from hotspots.contract import BULK_CONTENT_TYPE, CONTRACT_VERSION, MAX_RECORD_BYTES, bulks, dead_letter
from hotspots.settings import ProducerSettings
from producers.publisher import PublishError, kafka_producer, wait_for_acks

HISTORY_BULK = 2000  # lines a record
# Under Kafka's 1 MB default message limit and kafka-python's max_request_size, which count
# the record's headers and framing too: 64 KiB to spare.
HISTORY_BULK_BYTES = 1024 * 1024 - 4 * MAX_RECORD_BYTES


class HistoryFramer:
    """Frames lines into bulk records and counts the lines the broker acknowledged.

    A blank line is skipped, as the worker skips it. A line over the contract's size limit
    would be refused by the backfill as ``oversized`` anyway; it is dead-lettered here with
    that reason instead, so that no record can grow past the broker's limit."""

    def __init__(self, settings: ProducerSettings, source: str, bulk: int = HISTORY_BULK) -> None:
        self.topic = settings.history_topic
        self.dlq_topic = settings.dlq_topic
        self.source = source
        self.bulk = max(bulk, 1)
        self.acked = 0
        self.dead_lettered = 0
        self.failed: list[str] = []
        self.producer = kafka_producer(settings)
        found = self.producer.partitions_for(self.topic)  # blocks until metadata arrives
        if not found:
            raise PublishError(f"topic {self.topic} has no partitions")
        self._partitions = len(found)
        self._records = 0
        self._headers = [("contract", f"v{CONTRACT_VERSION}".encode()),
                         ("content-type", BULK_CONTENT_TYPE.encode()), ("source", source.encode())]

    def add(self, lines: Iterable[bytes], first: int = 1) -> None:
        """Frame ``lines`` (a file's, numbered from ``first`` for the dead letters' source)."""
        for run in bulks(self._kept(lines, first), self.bulk, HISTORY_BULK_BYTES):
            self._send(run)

    def _kept(self, lines: Iterable[bytes], first: int) -> Iterator[bytes]:
        """The lines without their line ends, blank ones skipped and oversized ones dead-lettered."""
        for number, line in enumerate(lines, start=first):
            line = line.rstrip(b"\r\n")
            if len(line) > MAX_RECORD_BYTES:
                self._dead_letter(line, number)
            elif line.strip():
                yield line

    def _send(self, run: list[bytes]) -> None:
        n = len(run)
        partition = self._records % self._partitions
        future = self.producer.send(self.topic, value=b"\n".join(run), partition=partition,
                                    headers=self._headers)
        future.add_callback(self._ok, n).add_errback(self._err(f"{n} lines for partition {partition}"))
        self._records += 1

    def _ok(self, n: int, _meta: Any) -> None:
        self.acked += n

    def _err(self, what: str) -> Any:
        return lambda exc: self.failed.append(f"{what}: {exc}")

    def _dead_letter(self, line: bytes, number: int) -> None:
        origin = f"{self.source}:{number}"
        record = dead_letter(line, "oversized", f"{len(line)} bytes > {MAX_RECORD_BYTES}", origin)
        future = self.producer.send(self.dlq_topic, key=b"oversized", value=orjson.dumps(record),
                                    headers=[("source", self.source.encode())])
        future.add_errback(self._err(f"dead letter {origin}"))
        self.dead_lettered += 1

    def flush(self, timeout: float = 600.0) -> None:
        """Wait for every acknowledgement; raises if any send failed."""
        wait_for_acks(self, timeout, "lines")

    def close(self) -> None:
        self.producer.close(timeout=10)

    def __enter__(self) -> HistoryFramer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
