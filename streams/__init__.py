"""Stream stage: the Faust worker that aggregates events into rollups."""
