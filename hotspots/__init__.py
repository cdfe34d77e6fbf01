"""hotspots: the shared package every stage imports (event contract, settings, cells, periods, CLI)."""

__version__ = "0.1.0"
