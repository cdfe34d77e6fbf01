"""Fold every source offset, in order: a record that never reached the agent is read again.

faust (0.15.3) drops a message that reaches a stream while the app's flow control is
suspended (during a rebalance or a recovery) and *acknowledges* it, so its offset can be
committed without the message ever being folded: the event is lost (found by
tests/faults/test_rebalance.py). Offsets of the events topic have no gaps (its producers
are not transactional and it is not compacted), so the worker keeps, per source partition,
the next offset it must fold, in the changelogged ``progress`` table, written once each
fold's other writes have landed (a worker killed mid-fold leaves some of them on the
broker and not others, and a record below the stored progress is taken for folded, so
faust may drop it unnoticed). A record past that offset reveals a hole: it is not folded, and the
partition is sought back to the hole, again after every fold that skipped a record past it
(records fetched before a seek move faust's read offset past the hole, and faust then drops
the records read again from it). Records before the hole are folded as usual (redeliveries
are idempotent). Should the log really have no record at the hole, the record that
revealed it comes back after the seek and is then accepted.
"""

from __future__ import annotations


class SourceGuard:
    """Decides, record by record, whether the agent may fold it; collects writes and seeks."""

    def __init__(self) -> None:
        self.next: dict[int, int] = {}  # partition -> next offset to fold, advanced this fold
        self.holes: dict[int, tuple[int, int]] = {}  # partition -> (missing offset, revealed by)
        self.seeks: dict[int, int] = {}  # partition -> offset to seek to after this fold

    def admit(self, partition: int, offset: int, stored: int | None) -> bool:
        """May the record at ``offset`` be folded? ``stored``: the table's next offset."""
        expected = self.next.get(partition, stored)
        if expected is not None and offset > expected:
            hole = self.holes.get(partition)
            if hole is None or hole[0] != expected:
                self.holes[partition] = (expected, offset)
            elif hole[1] == offset:  # read again from the hole, and still first: nothing there
                return self._fold(partition, expected, offset)
            # Seek (again): a record fetched before the last seek moves faust's read offset
            # past the hole, and faust then drops the records read again from it.
            self.seeks[partition] = expected
            return False
        return self._fold(partition, expected, offset)

    def _fold(self, partition: int, expected: int | None, offset: int) -> bool:
        # At or past the hole: it is read (or really empty), so no seek back over it. A
        # redelivery from before the hole leaves it open.
        if (expected is None or offset >= expected) and partition in self.holes:
            del self.holes[partition]
            self.seeks.pop(partition, None)
        self.next[partition] = max(expected or 0, offset + 1)
        return True

    def advanced(self) -> dict[int, int]:
        """The next offsets this fold reached (to write), and forget them."""
        out, self.next = self.next, {}
        return out

    def take_seeks(self) -> dict[int, int]:
        out, self.seeks = self.seeks, {}
        return out

    def forget(self) -> None:
        """On a rebalance: faust seeks to committed offsets, so holes are found afresh."""
        self.next.clear()
        self.holes.clear()
        self.seeks.clear()
