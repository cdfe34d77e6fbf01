"""Grafana as code: the hotspots dashboards, their provider and the alert rules.

    python -m dashboards.build      # rewrite dashboards/provisioning/{dashboards,alerting}

One function per panel. Every query reads the rollups (or the small tables beside them:
dead_letters, ehsa_classes, ehsa_transitions, alerts), never the raw events table, through the
ClickHouse data source provisioned with uid ``hotspots-clickhouse`` (datasources/clickhouse.yml).
SQL is ClickHouse's, with the plugin's macros ($__fromTime, $__toTime, $__timeFilter(col))
and the dashboard variables ${kind} and ${res}. Rollups' period_start is a Date: panels
keep the weeks that overlap the picked range, as sinks/queries.py does. The committed files
must equal what this module writes (tests/unit/test_dashboards.py checks it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from hotspots.contract import KINDS
from hotspots.geo import RESOLUTIONS

Json = dict[str, Any]

ROOT = Path(__file__).resolve().parent / "provisioning"
JSON_DIR = ROOT / "dashboards" / "json"
PROVIDER = ROOT / "dashboards" / "hotspots.yml"
RULES = ROOT / "alerting" / "rules.yml"
# Where docker-compose.yml mounts ./dashboards/provisioning in the grafana container.
CONTAINER_JSON_DIR = "/etc/grafana/provisioning/dashboards/json"
FOLDER = "hotspots"

DATASOURCE: Json = {"type": "grafana-clickhouse-datasource", "uid": "hotspots-clickhouse"}
PLUGIN_VERSION = "4.8.2"
# The plugin's query formats (src/types: Format.TIMESERIES = 0, Format.TABLE = 1).
TIMESERIES, TABLE = 0, 1

# Weekly rollups overlapping the dashboard's range (a week starts on a Monday).
WEEKS = "period_start BETWEEN toMonday(toDate($__fromTime)) AND toDate($__toTime)"
SELECTED = f"period = 'week' AND res = ${{res}} AND kind = '${{kind}}' AND {WEEKS}"
# h3ToGeo gives a (latitude, longitude) tuple on the ClickHouse versions we run (25.8, chDB);
# elements by position work whether or not the tuple is named. Checked against h3-py in tests.
LAT = "tupleElement(h3ToGeo(cell), 1)"
LON = "tupleElement(h3ToGeo(cell), 2)"


def target(sql: str, fmt: int = TABLE, ref: str = "A") -> Json:
    return {
        "datasource": dict(DATASOURCE),
        "editorType": "sql",
        "format": fmt,
        "pluginVersion": PLUGIN_VERSION,
        "queryType": "timeseries" if fmt == TIMESERIES else "table",
        "rawSql": " ".join(sql.split()),
        "refId": ref,
    }


def panel(kind: str, title: str, sql: str, grid: tuple[int, int, int, int], *, fmt: int = TABLE,
          description: str = "", unit: str | None = None, options: Json | None = None) -> Json:
    x, y, w, h = grid
    defaults: Json = {"unit": unit} if unit else {}
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": dict(DATASOURCE),
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [target(sql, fmt)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options or {},
    }


# --- (a) live heat map -----------------------------------------------------------------------

def heat_map() -> Json:
    sql = f"""
        SELECT h3ToString(cell) AS cell_id, {LAT} AS latitude, {LON} AS longitude,
               sum(count) AS count
        FROM hotspots.rollups FINAL
        WHERE {SELECTED}
        GROUP BY cell HAVING count > 0
        ORDER BY count DESC, cell_id LIMIT 5000"""
    options = {
        "view": {"id": "coords", "lat": 51.5, "lon": -0.12, "zoom": 8},
        "controls": {"showZoom": True, "mouseWheelZoom": True, "showAttribution": True},
        "basemap": {"type": "default", "name": "Basemap"},
        "layers": [{
            "type": "markers",
            "name": "cells",
            "location": {"mode": "coords", "latitude": "latitude", "longitude": "longitude"},
            "config": {
                "showLegend": True,
                "style": {
                    "size": {"field": "count", "fixed": 5, "min": 3, "max": 20},
                    "color": {"field": "count", "fixed": "dark-green"},
                    "opacity": 0.6,
                    "symbol": {"mode": "fixed", "fixed": "img/icons/marker/circle.svg"},
                },
            },
            "tooltip": True,
        }],
        "tooltip": {"mode": "details"},
    }
    panel_ = panel("geomap", "Live heat map", sql, (0, 0, 16, 16), options=options,
                   description="Events per H3 cell centre for the selected kind and resolution, "
                               "summed over the weeks overlapping the time range.")
    panel_["fieldConfig"]["defaults"]["color"] = {"mode": "continuous-YlRd"}
    return panel_


# --- (b) top cells ---------------------------------------------------------------------------

def top_cells() -> Json:
    sql = f"""
        SELECT h3ToString(cell) AS cell, sum(count) AS count, sum(charged) AS charged,
               sum(executed) AS executed, sum(weapons) AS weapons,
               sum(drugs_mg) / 1000 AS drugs_grams, sum(cash_pence) / 100 AS cash_gbp,
               sum(sentence_months) AS sentence_months, sum(people) AS people
        FROM hotspots.rollups FINAL
        WHERE {SELECTED}
        GROUP BY cell HAVING count > 0
        ORDER BY count DESC, cell LIMIT 20"""
    return panel("table", "Top cells", sql, (16, 0, 8, 16),
                 description="The busiest cells for the selected kind and resolution.")


# --- (c) trends by kind ----------------------------------------------------------------------

def trends_by_kind() -> Json:
    sql = f"""
        SELECT toDateTime(period_start) AS time, kind, sum(count) AS count
        FROM hotspots.rollups FINAL
        WHERE period = 'week' AND res = 6 AND {WEEKS}
        GROUP BY time, kind
        ORDER BY time, kind"""
    return panel("timeseries", "Weekly events by kind", sql, (0, 0, 24, 12), fmt=TIMESERIES,
                 description="Weekly counts per kind from the resolution-6 rollups.")


# --- (d) alerts: class changes, dead letters and spike alerts --------------------------------

def class_changes() -> Json:
    sql = """
        SELECT toDateTime(week_start) AS time, kind, res, h3ToString(cell) AS cell,
               from_class, to_class, computed_at
        FROM hotspots.ehsa_transitions FINAL
        WHERE res = ${res} AND kind = '${kind}'
          AND week_start BETWEEN toMonday(toDate($__fromTime)) AND toDate($__toTime)
        ORDER BY week_start DESC, to_class, cell LIMIT 500"""
    return panel("table", "Hot spot class changes", sql, (0, 0, 24, 10),
                 description="Emerging hot spot class changes (ehsa_transitions) in the range.")


def class_changes_by_class() -> Json:
    sql = """
        SELECT toDateTime(week_start) AS time, to_class, count() AS cells
        FROM hotspots.ehsa_transitions FINAL
        WHERE res = ${res} AND kind = '${kind}'
          AND week_start BETWEEN toMonday(toDate($__fromTime)) AND toDate($__toTime)
        GROUP BY time, to_class
        ORDER BY time, to_class"""
    return panel("timeseries", "Class changes by new class", sql, (0, 10, 12, 10), fmt=TIMESERIES,
                 options={"legend": {"displayMode": "table", "placement": "right"}})


def dead_letters_by_reason() -> Json:
    sql = """
        SELECT reason, count() AS records, max(received_at) AS last_received
        FROM hotspots.dead_letters FINAL
        WHERE $__timeFilter(received_at)
        GROUP BY reason
        ORDER BY records DESC, reason"""
    return panel("table", "Dead letters by reason", sql, (12, 10, 12, 10),
                 description="Records the pipeline refused in the range, by reason.")


def spike_alerts() -> Json:
    sql = """
        SELECT first_seen AS time, area_type, area, res, kind, period, period_start, observed,
               round(expected, 2) AS expected, p_value, method, triggering_event_id
        FROM hotspots.alerts FINAL
        WHERE $__timeFilter(first_seen)
        ORDER BY first_seen DESC, alert_id LIMIT 500"""
    return panel("table", "Spike alerts", sql, (0, 20, 24, 10),
                 description="Places whose activity jumped above their own normal "
                             "(streams/alerts.py): one row per alert, newest first, every kind.")


def spike_alerts_per_day() -> Json:
    sql = """
        SELECT toDateTime(toStartOfDay(first_seen)) AS time, kind, count() AS alerts
        FROM hotspots.alerts FINAL
        WHERE $__timeFilter(first_seen)
        GROUP BY time, kind
        ORDER BY time, kind"""
    return panel("timeseries", "Spike alerts per day by kind", sql, (0, 30, 24, 8), fmt=TIMESERIES,
                 options={"legend": {"displayMode": "table", "placement": "right"}})


# --- (e) warrant priorities ------------------------------------------------------------------

def warrant_priorities() -> Json:
    sql = f"""
        SELECT h3ToString(cell) AS cell_id, {LAT} AS latitude, {LON} AS longitude,
               sumIf(count, kind = 'arrest') AS arrests,
               sumIf(count, kind = 'seizure') AS seizures,
               sumIf(people, kind = 'safeguarding') AS safeguarded,
               sumIf(executed, kind = 'warrant') AS warrants_executed,
               arrests + seizures + safeguarded AS signal
        FROM hotspots.rollups FINAL
        WHERE period = 'week' AND res = ${{res}}
          AND kind IN ('arrest', 'seizure', 'safeguarding', 'warrant') AND {WEEKS}
        GROUP BY cell HAVING signal > 0
        ORDER BY signal DESC, cell_id LIMIT 25"""
    return panel("table", "Warrant priorities (rollup proxy)", sql, (0, 0, 24, 14),
                 description="Recent arrests, seizures and people safeguarded per cell: a simple "
                             "proxy from the rollups. The full priority score is served by the "
                             "product API at /v1/priorities.")


# --- (f) pipeline health ---------------------------------------------------------------------

def sink_freshness() -> Json:
    sql = """
        SELECT dateDiff('second', max(updated_at), now64(3)) AS freshness_s
        FROM hotspots.rollups"""
    return panel("stat", "Sink freshness", sql, (0, 0, 6, 8), unit="s",
                 description="Seconds since the sink last wrote a rollup row.",
                 options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                          "colorMode": "background"})


def rows_per_table() -> Json:
    sql = """
        SELECT 'rollups' AS table_name, count() AS rows FROM hotspots.rollups
        UNION ALL SELECT 'dead_letters', count() FROM hotspots.dead_letters
        UNION ALL SELECT 'ehsa_classes', count() FROM hotspots.ehsa_classes
        UNION ALL SELECT 'ehsa_transitions', count() FROM hotspots.ehsa_transitions"""
    return panel("bargauge", "Rows per table", sql, (6, 0, 8, 8),
                 description="Stored rows (before background merges drop replaced versions).",
                 options={"displayMode": "basic", "orientation": "horizontal",
                          "reduceOptions": {"calcs": [], "fields": "/^rows$/", "values": True}})


def dead_letters_per_hour() -> Json:
    sql = """
        SELECT toDateTime(toStartOfHour(received_at)) AS time, count() AS dead_letters
        FROM hotspots.dead_letters
        WHERE $__timeFilter(received_at)
        GROUP BY time
        ORDER BY time"""
    return panel("timeseries", "Dead letters per hour", sql, (14, 0, 10, 8), fmt=TIMESERIES)


# --- dashboards ------------------------------------------------------------------------------

def variables(*names: str) -> Json:
    found: list[Json] = []
    choices = {"kind": [str(k) for k in KINDS], "res": [str(r) for r in RESOLUTIONS]}
    labels = {"kind": "Kind", "res": "H3 resolution"}
    for name in names:
        values = choices[name]
        found.append({
            "name": name, "label": labels[name], "type": "custom",
            "query": ",".join(values),
            "current": {"text": values[0], "value": values[0], "selected": True},
            "options": [{"text": v, "value": v, "selected": i == 0} for i, v in enumerate(values)],
            "multi": False, "includeAll": False,
        })
    return {"list": found}


def dashboard(uid: str, title: str, panels: list[Json], names: tuple[str, ...] = (),
              time_from: str = "now-90d", refresh: str = "1m") -> Json:
    for i, p in enumerate(panels, start=1):
        p["id"] = i
    return {
        "uid": uid,
        "title": title,
        "tags": ["hotspots"],
        "timezone": "utc",
        "editable": False,
        "graphTooltip": 1,
        "refresh": refresh,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": time_from, "to": "now"},
        "templating": variables(*names),
        "annotations": {"list": []},
        "panels": panels,
    }


def dashboards() -> dict[str, Json]:
    """File name -> dashboard."""
    return {
        "live-map.json": dashboard("hotspots-live-map", "Hotspots: live heat map",
                                   [heat_map(), top_cells()], ("kind", "res"), "now-28d"),
        "trends.json": dashboard("hotspots-trends", "Hotspots: trends by kind",
                                 [trends_by_kind()], time_from="now-1y", refresh="5m"),
        "alerts.json": dashboard("hotspots-alerts", "Hotspots: alerts",
                                 [class_changes(), class_changes_by_class(),
                                  dead_letters_by_reason(), spike_alerts(),
                                  spike_alerts_per_day()], ("kind", "res")),
        "priorities.json": dashboard("hotspots-priorities", "Hotspots: warrant priorities",
                                     [warrant_priorities()], ("res",), "now-28d"),
        "pipeline.json": dashboard("hotspots-pipeline", "Hotspots: pipeline health",
                                   [sink_freshness(), rows_per_table(), dead_letters_per_hour()],
                                   time_from="now-24h", refresh="30s"),
    }


def provider() -> Json:
    return {"apiVersion": 1, "providers": [{
        "name": "hotspots", "orgId": 1, "folder": FOLDER, "type": "file",
        "disableDeletion": True, "allowUiUpdates": False, "updateIntervalSeconds": 60,
        "options": {"path": CONTAINER_JSON_DIR, "foldersFromFilesStructure": False},
    }]}


# --- alert rules -----------------------------------------------------------------------------

def alert_rule(uid: str, title: str, sql: str, seconds: int, above: float, summary: str,
               pending: str) -> Json:
    """A Grafana-managed rule: the query's one value (A), reduced (B), over a threshold (C)."""
    query = target(sql)
    return {
        "uid": uid,
        "title": title,
        "condition": "C",
        "data": [
            {"refId": "A", "relativeTimeRange": {"from": seconds, "to": 0},
             "datasourceUid": DATASOURCE["uid"], "model": query},
            {"refId": "B", "datasourceUid": "__expr__",
             "model": {"refId": "B", "type": "reduce", "expression": "A", "reducer": "last",
                       "settings": {"mode": "replaceNN", "replaceWithValue": 0}}},
            {"refId": "C", "datasourceUid": "__expr__",
             "model": {"refId": "C", "type": "threshold", "expression": "B",
                       "conditions": [{"evaluator": {"type": "gt", "params": [above]}}]}},
        ],
        "noDataState": "OK",
        "execErrState": "Error",
        "for": pending,
        "annotations": {"summary": summary},
        "labels": {"service": "hotspots", "severity": "warning"},
        "isPaused": False,
    }


def dead_letters_surging() -> Json:
    sql = """
        SELECT count() AS value FROM hotspots.dead_letters
        WHERE $__timeFilter(received_at)"""
    return alert_rule("hotspots-dead-letters-surging", "Dead letters surging", sql, 900, 100,
                      "More than 100 records dead-lettered in the last 15 minutes.", "5m")


def new_hot_spots() -> Json:
    sql = """
        SELECT count() AS value FROM hotspots.ehsa_transitions FINAL
        WHERE $__timeFilter(computed_at)
          AND to_class IN ('new_hot_spot', 'intensifying_hot_spot')"""
    return alert_rule("hotspots-new-hot-spot", "Class change to new/intensifying hot spot", sql,
                      3600, 0, "Cells became new or intensifying hot spots in the last hour.", "0s")


def spike_alert_raised() -> Json:
    sql = """
        SELECT count() AS value FROM hotspots.alerts FINAL
        WHERE $__timeFilter(first_seen)"""
    return alert_rule("hotspots-spike-alert", "Spike alert raised", sql, 300, 0,
                      "A place's enforcement or harm activity jumped above its own normal in the "
                      "last 5 minutes: see the Spike alerts panel or `hotspots alerts list`.", "0s")


def rules() -> Json:
    return {"apiVersion": 1, "groups": [{
        "orgId": 1, "name": "hotspots", "folder": FOLDER, "interval": "1m",
        "rules": [dead_letters_surging(), new_hot_spots(), spike_alert_raised()],
    }]}


def _yaml(doc: Json, header: str) -> str:
    return header + yaml.safe_dump(doc, sort_keys=False, width=100)


def render() -> dict[Path, str]:
    """Every generated file and its text."""
    files = {JSON_DIR / name: json.dumps(doc, indent=2) + "\n"
             for name, doc in dashboards().items()}
    files[PROVIDER] = _yaml(provider(), "# Generated by `python -m dashboards.build`; do not edit.\n"
                                        "# Grafana loads the dashboards under json/ into folder "
                                        f"{FOLDER!r}.\n")
    files[RULES] = _yaml(rules(), "# Generated by `python -m dashboards.build`; do not edit.\n"
                                  "# Grafana-managed alert rules on the ClickHouse data source.\n")
    return files


def main() -> None:
    JSON_DIR.mkdir(parents=True, exist_ok=True)
    RULES.parent.mkdir(parents=True, exist_ok=True)
    for stale in set(JSON_DIR.glob("*.json")) - set(render()):
        stale.unlink()
    for path, text in render().items():
        path.write_text(text)
        print(path.relative_to(ROOT.parent.parent))


if __name__ == "__main__":
    main()
