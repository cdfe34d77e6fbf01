"""The tasking pack: warrant priorities as CSV, or as one printable, self-contained HTML page.

The HTML has inline CSS and inline SVG only: no scripts, fonts, images or links, so it prints
and opens offline. Maps are H3 hexagons projected equirectangularly (x = lon·cos(mid-lat),
y = −lat) and scaled to their bounding box. Colours are viridis samples (colour-blind safe).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import date
from html import escape
from typing import Any

from h3.api import basic_str as h3s

from sinks.priorities import COLUMNS, TERMS, WEIGHTS

COLOURS = dict(zip((t for t, _ in TERMS),
                   ("#440154", "#414487", "#2a788e", "#22a884", "#7ad151", "#fde725"), strict=True))
RANKED, CURRENT, EDGE, GRID = "#35b779", "#fde725", "#440154", "#c8c8c8"

CSS = """
body { font: 11pt/1.35 system-ui, sans-serif; color: #111; margin: 1.5em; }
h1 { font-size: 16pt; margin: 0 0 .2em; } h2 { font-size: 12pt; margin: 0 0 .3em; }
.note { color: #444; font-size: 9pt; }
section.cell { display: grid; grid-template-columns: 170px 1fr; gap: 1em; padding: .7em 0;
  border-top: 1px solid #999; }
table { border-collapse: collapse; font-size: 9pt; } td { padding: 1px 6px 1px 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.reason { margin: .3em 0 0; } .flag { font-weight: bold; color: #440154; }
.key span { display: inline-block; width: .9em; height: .9em; margin: 0 .3em 0 1em;
  vertical-align: middle; border: 1px solid #555; }
@page { size: A4; margin: 12mm; }
@media print { body { margin: 0; } section.cell { break-inside: avoid; }
  * { print-color-adjust: exact; -webkit-print-color-adjust: exact; } }
"""


# The pack ranks cells for warrant execution and its terms are linear in small counts, so no
# disclosure-controlled version is safe to release: it is analyst tier only (sinks.privacy),
# and every file says so.
TIER = "analyst"
TIER_NOTE = ("Tier: analyst. Exact counts, no disclosure control: for tasking inside the force, "
             "not for release to partners or the public.")


def priorities_csv(rows: Iterable[dict[str, Any]]) -> str:
    """The ranked rows, one CSV line each; the last column states the privacy tier."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=(*COLUMNS, "tier"), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows({**r, "tier": TIER} for r in rows)
    return buf.getvalue()


def _boundary(cell: str) -> list[tuple[float, float]]:
    return [(float(lat), float(lon)) for lat, lon in h3s.cell_to_boundary(cell)]


class _Frame:
    """Equirectangular projection of a lat/lon box into a width × height viewBox."""

    def __init__(self, points: Sequence[tuple[float, float]], width: int, height: int, pad: int = 6):
        lats, lons = [p[0] for p in points], [p[1] for p in points]
        self.k = math.cos(math.radians((min(lats) + max(lats)) / 2))
        self.x0, self.y0 = min(lons) * self.k, -max(lats)
        w, h = (max(lons) - min(lons)) * self.k, max(lats) - min(lats)
        self.scale = min((width - 2 * pad) / max(w, 1e-9), (height - 2 * pad) / max(h, 1e-9))
        self.dx, self.dy = (width - w * self.scale) / 2, (height - h * self.scale) / 2  # centred

    def xy(self, lat: float, lon: float) -> tuple[float, float]:
        return (self.dx + (lon * self.k - self.x0) * self.scale,
                self.dy + (-lat - self.y0) * self.scale)

    def polygon(self, cell: str, fill: str, stroke: str, width: float = 0.6) -> str:
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in (self.xy(*p) for p in _boundary(cell)))
        return (f'<polygon points="{pts}" fill="{fill}" stroke="{stroke}" '
                f'stroke-width="{width}"/>')


def _svg(width: int, height: int, body: str, label: str) -> str:
    return (f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="{escape(label)}">{body}</svg>')


def _thumbnail(cell: str, ranked: dict[str, int], size: int = 160) -> str:
    """The cell's k=3 neighbourhood: the grid in grey, other ranked cells green, this one yellow."""
    area = list(h3s.grid_disk(cell, 3))
    frame = _Frame([p for c in area for p in _boundary(c)], size, size)
    parts = [frame.polygon(c, RANKED if c in ranked else "none", GRID) for c in area if c != cell]
    parts.append(frame.polygon(cell, CURRENT, EDGE, 2.0))
    return _svg(size, size, "".join(parts),
                f"Map: cell {cell} (yellow) and nearby ranked cells (green)")


def _overview(rows: Sequence[dict[str, Any]], width: int = 640, height: int = 420) -> str:
    """Every ranked cell: its hexagon and a numbered marker (cells are tiny at county scale)."""
    frame = _Frame([p for r in rows for p in _boundary(r["cell"])], width, height, pad=16)
    parts = []
    for r in sorted(rows, key=lambda r: -r["rank"]):  # rank 1 drawn last, on top
        lat, lon = h3s.cell_to_latlng(r["cell"])
        x, y = frame.xy(lat, lon)
        parts.append(frame.polygon(r["cell"], RANKED, EDGE, 0.8))
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="8" fill="{EDGE}" fill-opacity="0.85"/>'
                     f'<text x="{x:.1f}" y="{y + 3:.1f}" font-size="8" text-anchor="middle" '
                     f'fill="#fff">{int(r["rank"])}</text>')
    return _svg(width, height, "".join(parts), "Overview map of the ranked cells")


def _bar(value: float, colour: str, full: float, width: int = 120) -> str:
    w = 0 if full <= 0 else min(width, abs(value) / full * width)
    return _svg(width, 10, f'<rect x="0" y="1" width="{width}" height="8" fill="#eee"/>'
                           f'<rect x="0" y="1" width="{w:.1f}" height="8" fill="{colour}" '
                           f'stroke="#333" stroke-width="0.5"/>', f"{value:+.2f} points")


def _section(row: dict[str, Any], ranked: dict[str, int]) -> str:
    weights = asdict(WEIGHTS)
    lines = "".join(
        f'<tr><td>{escape(name)}</td><td class="num">{float(row[t]):+.2f}</td>'
        f'<td>{_bar(float(row[t]), COLOURS[t], weights[t])}</td></tr>' for t, name in TERMS)
    flag = '<p class="flag">Cuckooing flagged</p>' if row.get("cuckooing_flagged") else ""
    return (f'<section class="cell"><div>{_thumbnail(row["cell"], ranked)}</div><div>'
            f'<h2>#{int(row["rank"])} &middot; cell {escape(str(row["cell"]))} &middot; '
            f'score {float(row["score"]):.2f}</h2>'
            f'<table>{lines}<tr><td><b>score (the sum)</b></td><td class="num"><b>'
            f'{float(row["score"]):.2f}</b></td><td></td></tr></table>'
            f'<p class="reason">{escape(str(row["reason"]))}</p>{flag}'
            f'</div></section>')


def priorities_html(rows: Sequence[dict[str, Any]], as_of: date | str) -> str:
    when = escape(str(as_of))
    ranked = {r["cell"]: int(r["rank"]) for r in rows}
    key = "".join(f'<span style="background:{COLOURS[t]}"></span>{escape(n)} (≤ {w:g})'
                  for (t, n), w in zip(TERMS, asdict(WEIGHTS).values(), strict=True))
    body = (_overview(rows) + "".join(_section(r, ranked) for r in rows) if rows
            else "<p>No cells have any signal in these windows.</p>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="hotspots-tier" content="{TIER}">'
            f'<title>Warrant priorities, as of {when}</title><style>{CSS}</style></head><body>'
            f'<h1>Warrant priorities &middot; as of {when}</h1>'
            f'<p class="note tier"><b>{escape(TIER_NOTE)}</b></p>'
            f'<p class="note">Res-8 H3 cells ranked '
            f'by an additive score: each line is one term\'s points; they add up to the score. '
            f'Harm weights are category-level approximations of the Cambridge Crime Harm Index.</p>'
            f'<p class="note key">{key}</p>{body}</body></html>\n')
