"""Compare what the store holds after a fault run with the ground truth, and run `reconcile`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from hotspots import stack
from tests.faults.replay import MEASURES, Key, Replay, Truth

ROOT = Path(__file__).resolve().parents[2]  # where `python -m tests...` finds the tests package
SHOWN = 20  # differences listed in a failure message


@dataclass
class Verdict:
    keys_expected: int
    keys_stored: int
    events_expected: int
    events_stored: int  # rows of the raw table after FINAL
    wrong: list[str] = field(default_factory=list)  # the first SHOWN differences
    wrong_keys: int = 0
    duplicate_ids: list[str] = field(default_factory=list)
    missing_ids: list[str] = field(default_factory=list)
    unexpected_ids: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.wrong_keys == 0 and not self.duplicate_ids and not self.missing_ids
                and not self.unexpected_ids and self.events_stored == self.events_expected)

    def __str__(self) -> str:
        lines = [f"rollup keys: {self.keys_stored} stored, {self.keys_expected} expected, "
                 f"{self.wrong_keys} wrong",
                 f"raw events: {self.events_stored} rows after FINAL, {self.events_expected} expected; "
                 f"{len(self.duplicate_ids)} ids held twice, {len(self.missing_ids)} missing, "
                 f"{len(self.unexpected_ids)} unexpected", *self.wrong[:SHOWN]]
        for name, ids in (("held twice", self.duplicate_ids), ("missing", self.missing_ids),
                          ("unexpected", self.unexpected_ids)):
            if ids:
                lines.append(f"ids {name} (first {min(len(ids), SHOWN)}): {sorted(ids)[:SHOWN]}")
        return "\n".join(lines)


def compare(truth: Truth, rollups: dict[Key, tuple[int, ...]], event_ids: list[str]) -> Verdict:
    """Every (period, res, cell, start, kind) key and every measure; every event id once."""
    verdict = Verdict(keys_expected=len(truth.rollups), keys_stored=len(rollups),
                      events_expected=len(truth.event_ids), events_stored=len(event_ids))
    for key in sorted(truth.rollups.keys() | rollups.keys()):
        want = tuple(truth.rollups.get(key, ()))
        have = rollups.get(key, ())
        if want != have:
            verdict.wrong_keys += 1
            if len(verdict.wrong) < SHOWN:
                diff = {m: (w, h) for m, w, h in zip(MEASURES, want or (0,) * 8, have or (0,) * 8,
                                                     strict=True) if w != h}
                verdict.wrong.append(f"  {'|'.join(map(str, key))}: (expected, stored) {diff}"
                                     + ("" if want else " [not expected]") + ("" if have else " [missing]"))
    counts = Counter(event_ids)
    verdict.duplicate_ids = [i for i, n in counts.items() if n > 1]
    verdict.missing_ids = list(truth.event_ids - counts.keys())
    verdict.unexpected_ids = list(counts.keys() - truth.event_ids)
    return verdict


def read_store(config: stack.StackConfig, replay: Replay, work: Path) -> tuple[dict[Key, tuple[int, ...]],
                                                                            list[str]]:
    """The store's rollups in the replay's span and its raw events with the replay's tag.

    The sink must be stopped: chDB lets one process open the store at a time."""
    out = work / f"dump-{replay.tag}.jsonl"
    start, end = replay.span
    proc = subprocess.run([sys.executable, "-m", "tests.faults.dump", config.data_dir, start.isoformat(),
                           end.isoformat(), f"{replay.tag}-", str(out)],
                          capture_output=True, text=True, timeout=1800, check=False, cwd=ROOT)
    assert proc.returncode == 0, f"dump failed:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    rollups: dict[Key, tuple[int, ...]] = {}
    event_ids: list[str] = []
    with open(out, "rb") as fh:
        for line in fh:
            row = orjson.loads(line)
            if row[0] == "rollup":
                key: Key = (row[1], row[2], row[3], row[4], row[5])
                assert key not in rollups, f"two rows for {key} after FINAL"
                rollups[key] = tuple(row[6:])
            else:
                event_ids.append(row[1])
    out.unlink()
    return rollups, event_ids


def reconcile(config: stack.StackConfig, replay: Replay) -> dict[str, object]:
    """`hotspots reconcile` over the replay's years (it exits 4 on drift); ``ok`` false on any error."""
    proc = subprocess.run([sys.executable, "-m", "hotspots.cli", "reconcile", "--data-dir", config.data_dir,
                           "--from", f"{replay.years[0]}-01-01", "--to", f"{replay.years[1]}-12-31",
                           "--format", "json", "--justification", "fault suite: drift after faults"],
                          capture_output=True, text=True, timeout=1800, check=False)
    try:
        result: dict[str, object] = json.loads(proc.stdout)
    except ValueError:
        result = {"ok": False, "error": f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"}
    result["exit_code"] = proc.returncode
    return result


def check_store(config: stack.StackConfig, replay: Replay, truth: Truth, work: Path) -> tuple[Verdict,
                                                                                          dict[str, object]]:
    """Stop the sink (it flushes and commits), compare the store with the truth, and reconcile.

    The sink is left stopped: the store is read by other processes."""
    stack.stop_service(config, "sink")
    rollups, event_ids = read_store(config, replay, work)
    return compare(truth, rollups, event_ids), reconcile(config, replay)
