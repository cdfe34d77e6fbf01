"""`python -m streams worker`: run the Faust worker with settings from HOTSPOTS_* variables."""

from __future__ import annotations

import sys

from faust import Worker

from hotspots.metrics import start_exporter
from hotspots.settings import WorkerSettings
from streams.app import build_app


def main(argv: list[str]) -> int:
    if argv[:1] != ["worker"]:
        print("usage: python -m streams worker", file=sys.stderr)
        return 2
    settings = WorkerSettings()
    app = build_app(settings)
    start_exporter("worker", settings.metrics_port, settings.metrics_host)  # 0: off
    Worker(app, loglevel="info").execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
