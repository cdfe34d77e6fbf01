"""A fresh stack's KRaft cluster id never starts with "-", which StorageTool reads as an option.

Found by the fault suite, which starts many stacks: 1 in 64 failed to format its storage.
"""

from __future__ import annotations

import uuid

from hotspots import broker


def test_a_cluster_id_starting_with_a_dash_is_drawn_again(monkeypatch) -> None:
    drawn = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x04" + bytes(15))])
    monkeypatch.setattr(broker.uuid, "uuid4", lambda: next(drawn))
    assert broker.new_cluster_id() == "BAAAAAAAAAAAAAAAAAAAAA"


def test_cluster_ids_are_22_url_safe_characters() -> None:
    ids = {broker.new_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
