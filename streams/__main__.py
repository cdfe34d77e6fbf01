"""`python -m streams worker` (rollups) or `python -m streams spikes` (spike alerts): run one
of the two faust apps with settings from HOTSPOTS_* variables."""

from __future__ import annotations

import sys

from faust import Worker

from hotspots.metrics import start_exporter
from hotspots.settings import WorkerSettings
from streams.alerts import build_spikes_app
from streams.app import build_app


def main(argv: list[str]) -> int:
    if argv[:1] not in (["worker"], ["spikes"]):
        print("usage: python -m streams worker|spikes", file=sys.stderr)
        return 2
    settings = WorkerSettings()
    if argv[0] == "worker":
        app = build_app(settings)
        start_exporter("worker", settings.metrics_port, settings.metrics_host)  # 0: off
    else:
        app = build_spikes_app(settings)
        start_exporter("spikes", settings.spikes_metrics_port, settings.metrics_host)
    Worker(app, loglevel="info").execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
