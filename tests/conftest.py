"""Settings for every property-based (hypothesis) suite under tests/.

``ci``, the default everywhere (CI, ``make test``): derandomized, so each run draws the same
examples and a failure in CI is the one you get locally; no example database (nothing is
read from or written to ``.hypothesis/examples``); no deadline, since a loaded 2-core runner
makes timings meaningless; 400 examples for a test that does not set its own count.
``dev`` (``HYPOTHESIS_PROFILE=dev``, or ``--hypothesis-profile=dev``): random seeds, with
the example database, to look for new failures. The suites set only their example counts
(and health checks), so the profile decides the rest.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

EXAMPLES = 400

settings.register_profile(
    "ci", max_examples=EXAMPLES, derandomize=True, database=None, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "dev", settings.get_profile("default"), max_examples=EXAMPLES, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
# Loaded here, before any test module builds its settings objects from the active profile.
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or "ci")
