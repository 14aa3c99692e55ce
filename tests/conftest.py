"""Session-wide test set-up: hypothesis profiles and the real servers the tests use."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Machines here are noisy: no per-example deadline; CI runs more examples.
settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "ci", deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
